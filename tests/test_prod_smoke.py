"""`make prod-smoke`'s reduced form inside `make test`: scripts/prod-smoke --quick runs the release
step and gunicorn from Procfile.production on the production settings behind nginx with TLS, and
checks from outside: http -> https, HSTS, Secure cookies, hashed static files cached for a year,
the CSP against what the pages load, DEBUG off, a customer's login, the admin's login page.
On a database of its own (created and dropped here) and a Redis database the suite does not use;
readiness is polled with generous time-outs, nothing is timed."""

import os
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def own_database():
    url = os.environ["DATABASE_URL"]
    parts = urlsplit(url)
    name = f"prod_smoke_{secrets.token_hex(4)}"
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_prod_smoke_quick_passes_behind_nginx_with_tls(own_database):
    redis = urlsplit(os.environ["REDIS_URL"])
    env = {**os.environ, "DATABASE_URL": own_database, "REDIS_URL": urlunsplit(redis._replace(path="/7"))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/prod-smoke"), "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith(("PASS ", "FAIL "))]
    assert not [line for line in lines if line.startswith("FAIL")], output[-6000:]
    for name in (
        "redirect: http -> https",
        "hsts:",
        "cookies: all",
        "static:",
        "csp:",
        "login:",
        "admin:",
        "debug off:",
    ):
        assert any(line.startswith(f"PASS {name}") for line in lines), f"{name} not checked:\n{result.stdout}"
