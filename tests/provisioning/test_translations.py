"""zh-Hans is complete for provisioning's catalogue (its pages, emails, and its admin and
operations-page strings): no empty or fuzzy entries, and the compiled .mo matches its .po."""

import subprocess

import pytest
from django.conf import settings


@pytest.mark.pure
def test_provisioning_catalogue_is_complete_and_compiled(tmp_path):
    po = settings.BASE_DIR / "provisioning/locale/zh_Hans/LC_MESSAGES/django.po"
    result = subprocess.run(
        ["msgfmt", "--check", "--statistics", "-o", str(tmp_path / "django.mo"), str(po)],
        capture_output=True,
        text=True,
        check=True,
    )
    statistics = result.stderr.strip().splitlines()[-1]
    assert "untranslated" not in statistics and "fuzzy" not in statistics, statistics
    assert (tmp_path / "django.mo").read_bytes() == po.with_suffix(".mo").read_bytes(), "run compilemessages"
