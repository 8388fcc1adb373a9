"""zh-Hans is complete for the catalogues this app owns: no empty or fuzzy entries, and the
compiled .mo matches its .po."""

import subprocess
from pathlib import Path

import pytest
from django.conf import settings

CATALOGUES = [
    settings.BASE_DIR / "accounts/locale/zh_Hans/LC_MESSAGES/django.po",
    settings.BASE_DIR / "locale/zh_Hans/LC_MESSAGES/django.po",
]


@pytest.mark.parametrize("po", CATALOGUES, ids=lambda p: str(p.relative_to(settings.BASE_DIR)))
@pytest.mark.pure
def test_catalogue_is_complete_and_compiled(po: Path, tmp_path):
    result = subprocess.run(
        ["msgfmt", "--check", "--statistics", "-o", str(tmp_path / "django.mo"), str(po)],
        capture_output=True,
        text=True,
        check=True,
    )
    statistics = result.stderr.strip().splitlines()[-1]
    assert "untranslated" not in statistics and "fuzzy" not in statistics, statistics
    assert (tmp_path / "django.mo").read_bytes() == po.with_suffix(".mo").read_bytes(), "run compilemessages"
