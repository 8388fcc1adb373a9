import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_check_deploy_is_clean_under_production_settings():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "esimsite.settings.production",
        "SECRET_KEY": "x" * 20 + "-production-like-secret-" + "y" * 30,
        "ALLOWED_HOSTS": "esim.example.com",
        "STRIPE_SECRET_KEY": "sk_live_example",
        "STRIPE_PUBLISHABLE_KEY": "pk_live_example",
        "STRIPE_WEBHOOK_SECRET": "whsec_example",
        "PARTNER_USAGE_SECRET": "partner-secret-example",
        "NETWORK_WEBHOOK_SECRET": "network-secret-example",
        "SMS_BACKEND": "accounts.sms.ConsoleBackend",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_secrets():
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "STRIPE_SECRET_KEY"}}
    env["DJANGO_SETTINGS_MODULE"] = "esimsite.settings.production"
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
