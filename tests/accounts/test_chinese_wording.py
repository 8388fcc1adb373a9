"""The Chinese a customer reads follows one set of choices (docs/translations.md): 您, never 你;
"eSIM", never the operator's word 线路; Chinese punctuation after Chinese text; 更改 for
"change", 筛选 for "filter". Read from every compiled zh_Hans catalogue, so a new string that
slips is caught here."""

import gettext
import re
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.pure

CJK = "[\u3400-\u9fff\u3000-\u303f\uff00-\uffef]"
ASCII_STOP_AFTER_CJK = re.compile(CJK + r"[.:,;!?](?=\s|$|" + CJK + ")")
WORDS_WE_DO_NOT_USE = {
    "你": "您",
    "线路": "eSIM (or 号码 for the phone number)",
    "过滤器": "筛选",
    "我的默认": "默认付款方式 / the card's name",
}


def catalogues() -> list[Path]:
    base = Path(settings.BASE_DIR)
    found = sorted(base.glob("*/locale/zh_Hans/LC_MESSAGES/django.mo")) + [
        base / "locale/zh_Hans/LC_MESSAGES/django.mo"
    ]
    return [mo for mo in found if ".venv" not in mo.parts]


def translations(mo: Path) -> list[tuple[str, str]]:
    with mo.open("rb") as file:
        catalog = gettext.GNUTranslations(file)._catalog  # type: ignore[attr-defined]
    return [
        (msgid[0] if isinstance(msgid, tuple) else msgid, msgstr)
        for msgid, msgstr in catalog.items()
        if msgid and msgstr
    ]


def test_every_app_catalogue_is_found():
    names = {mo.relative_to(settings.BASE_DIR).parts[0] for mo in catalogues()}
    assert {"accounts", "payments", "renewals", "locale"} <= names


@pytest.mark.parametrize("mo", catalogues(), ids=lambda p: str(p.relative_to(settings.BASE_DIR)))
def test_chinese_catalogue_keeps_our_wording(mo: Path):
    problems = []
    for msgid, msgstr in translations(mo):
        for word, instead in WORDS_WE_DO_NOT_USE.items():
            if word in msgstr:
                problems.append(f"{word!r} (use {instead}) in {msgstr!r}")
        if ASCII_STOP_AFTER_CJK.search(msgstr):
            problems.append(f"English punctuation after Chinese (use 。，：；！？) in {msgstr!r}")
        if msgid.strip().lower() == "change" and "切换" in msgstr:
            problems.append(f"'Change' is 更改, not 切换: {msgstr!r}")
    assert problems == []


def test_the_scan_catches_what_it_is_for():
    assert ASCII_STOP_AFTER_CJK.search("付款失败.")
    assert ASCII_STOP_AFTER_CJK.search("请注意: 立即生效")
    assert not ASCII_STOP_AFTER_CJK.search("付款失败。请访问 example.com。")
    assert not ASCII_STOP_AFTER_CJK.search("ICCID 为 18 到 20 位数字。")
