"""The settings modules: the shared base is safe when deployed by mistake (DEBUG off, no secret or
database of its own), only the development module (`make run`, manage.py and Celery's default)
turns DEBUG on, and no settings module lets dj-stripe take a webhook secret from a request
header."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from esimsite.settings.development import DEVELOPMENT_ENVIRONMENT
from tests.security.test_cookies import PRODUCTION_ENV

# Subprocesses reading the settings modules: no service needed.
pytestmark = pytest.mark.pure

ROOT = Path(__file__).resolve().parent.parent
PRINT = "from django.conf import settings; print(settings.SETTINGS_MODULE, settings.DEBUG, settings.DJSTRIPE_WEBHOOK_VALIDATION)"


def environment_without_development_values() -> dict[str, str]:
    """This process's environment without what `test` settings filled in (nor the module)."""
    dropped = {"DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG", "DATABASE_URL", *DEVELOPMENT_ENVIRONMENT}
    return {k: v for k, v in os.environ.items() if k not in dropped}


def run_python(code: str, *, module: str | None, extra_env: dict | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG"}}
    if module:
        env["DJANGO_SETTINGS_MODULE"] = module
    env.update(extra_env or {})
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(
    ("module", "debug", "extra_env"),
    [
        ("esimsite.settings.base", "False", {**PRODUCTION_ENV, "DATABASE_URL": "sqlite://:memory:"}),
        ("esimsite.settings.test", "False", {}),
        ("esimsite.settings.production", "False", PRODUCTION_ENV),
        ("esimsite.settings.local", "True", {}),
    ],
)
def test_only_the_development_settings_turn_debug_on_and_every_one_checks_webhook_signatures(module, debug, extra_env):
    out = run_python(f"import django; django.setup(); {PRINT}", module=module, extra_env=extra_env)
    assert out == f"{module} {debug} verify_signature"


def test_manage_py_and_celery_default_to_the_development_settings():
    out = run_python(
        "import runpy, sys; sys.argv = ['manage.py', 'shell', '-v', '0', '-c', " + repr(PRINT) + "]; "
        "runpy.run_path('manage.py', run_name='__main__')",
        module=None,
    )
    assert out == "esimsite.settings.local True verify_signature"
    out = run_python("import os, esimsite.celery; print(os.environ['DJANGO_SETTINGS_MODULE'])", module=None)
    assert out == "esimsite.settings.local"


def test_base_settings_alone_keep_debug_off_and_give_no_secret_of_their_own():
    env = environment_without_development_values()
    env["DJANGO_SETTINGS_MODULE"] = "esimsite.settings.base"
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "Set the SECRET_KEY environment variable" in result.stderr
    source = (ROOT / "esimsite" / "settings" / "base.py").read_text()
    for name in (
        "SECRET_KEY",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "PARTNER_USAGE_SECRET",
        "NETWORK_WEBHOOK_SECRET",
        "DATABASE_URL",
        "SITE_URL",
        "SMS_BACKEND",
    ):
        assert f'env("{name}")' in source or f'env.db("{name}")' in source, f"{name} has a default in base"
    for value in DEVELOPMENT_ENVIRONMENT.values():
        if value.startswith(("dev", "sk_", "pk_", "whsec_", "http://127.0.0.1")):
            assert value not in source, value


@pytest.mark.parametrize(
    "missing", ["SECRET_KEY", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "PARTNER_USAGE_SECRET", "DATABASE_URL"]
)
def test_base_settings_refuse_to_load_without_each_secret(missing):
    env = {**environment_without_development_values(), **PRODUCTION_ENV, "DATABASE_URL": "sqlite://:memory:"}
    del env[missing]
    code = "import esimsite.settings.base as base; print(base.DEBUG)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert f"Set the {missing} environment variable" in result.stderr


def test_base_settings_with_their_secrets_keep_debug_off_and_smtp_and_real_stripe():
    env = {**environment_without_development_values(), **PRODUCTION_ENV, "DATABASE_URL": "sqlite://:memory:"}
    code = "import esimsite.settings.base as b; print(b.DEBUG, b.EMAIL_BACKEND, b.STRIPE_API_BASE, b.ALLOWED_HOSTS == ['esim.example.com'])"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "False",
        "django.core.mail.backends.smtp.EmailBackend",
        "https://api.stripe.com",
        "True",
    ]


def test_the_beat_schedule_is_written_once_and_every_sweep_has_the_sweeps_queue(settings):
    sources = "".join(path.read_text() for path in (ROOT / "esimsite").rglob("*.py"))
    assert sources.count("CELERY_BEAT_SCHEDULE =") == 1
    assert "CELERY_BEAT_SCHEDULE[" not in sources
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert settings.CELERY_TASK_ROUTES[entry["task"]] == {"queue": "sweeps"}
