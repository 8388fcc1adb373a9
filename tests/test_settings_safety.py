"""The settings modules: the shared base is safe when deployed by mistake (DEBUG off), only the
development module (`make run`, manage.py and Celery's default) turns DEBUG on, and no settings
module lets dj-stripe take a webhook secret from a request header."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.security.test_cookies import PRODUCTION_ENV

ROOT = Path(__file__).resolve().parent.parent
PRINT = "from django.conf import settings; print(settings.SETTINGS_MODULE, settings.DEBUG, settings.DJSTRIPE_WEBHOOK_VALIDATION)"


def run_python(code: str, *, module: str | None, extra_env: dict | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG"}}
    if module:
        env["DJANGO_SETTINGS_MODULE"] = module
    env.update(extra_env or {})
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(("module", "debug", "extra_env"), [
    ("esimsite.settings.base", "False", {}),
    ("esimsite.settings.test", "False", {}),
    ("esimsite.settings.production", "False", PRODUCTION_ENV),
    ("esimsite.settings.local", "True", {}),
])
def test_only_the_development_settings_turn_debug_on_and_every_one_checks_webhook_signatures(module, debug, extra_env):
    out = run_python(f"import django; django.setup(); {PRINT}", module=module, extra_env=extra_env)
    assert out == f"{module} {debug} verify_signature"


def test_manage_py_and_celery_default_to_the_development_settings():
    out = run_python("import runpy, sys; sys.argv = ['manage.py', 'shell', '-v', '0', '-c', " + repr(PRINT) + "]; "
                     "runpy.run_path('manage.py', run_name='__main__')", module=None)
    assert out == "esimsite.settings.local True verify_signature"
    out = run_python("import os, esimsite.celery; print(os.environ['DJANGO_SETTINGS_MODULE'])", module=None)
    assert out == "esimsite.settings.local"


def test_check_passes_under_the_base_settings_without_any_secret_in_the_environment():
    env = {k: v for k, v in os.environ.items() if not any(s in k for s in ("SECRET", "KEY", "DJANGO_"))}
    env["DJANGO_SETTINGS_MODULE"] = "esimsite.settings.base"
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
