"""Redis stopped while the site serves: customers and operators still log in and see their pages.
A real child process (its own settings, cache and Celery broker all on a redis-server this test
starts) warms up with Redis running, kills that Redis, then walks the site with Django's test
client; nothing of ours is patched (docs/deploying.md "Redis down")."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from django.db import connection
from django.urls import reverse

from tests.accounts.helpers import PASSWORD
from tests.builders import make_line
from tests.console.conftest import make_operator

pytestmark = pytest.mark.django_db(transaction=True)

WALK = """
import json, os, signal, sys
import django
django.setup()
from django.conf import settings
from django.test import Client
from django.urls import reverse
from tests.accounts.helpers import PASSWORD, totp_code
settings.ALLOWED_HOSTS = ["testserver"]
given = json.loads(sys.stdin.read())
seen = {}

def status(name, response):
    seen[name] = [response.status_code, response.get("Location", "")]
    return response

# Redis up: a login fills the cache's connection pool and counts in Redis.
warm = Client(raise_request_exception=False)
status("warm_login", warm.post(reverse("account_login"), {"login": given["customer"], "password": PASSWORD}))
os.kill(given["redis_pid"], signal.SIGKILL)
os.waitpid  # the parent reaps it

customer = Client(raise_request_exception=False)
status("login_page", customer.get(reverse("account_login")))
status("login", customer.post(reverse("account_login"), {"login": given["customer"], "password": PASSWORD}))
status("home", customer.get(reverse("accounts:home")))
status("line", customer.get(reverse("accounts:line_detail", args=[given["line"]])))
status("history", customer.get(reverse("payments:history")))
status("methods", customer.get(reverse("payments:methods")))
status("rule", customer.get(reverse("renewals:rule", args=[given["line"]])))
status("turn_off", customer.post(reverse("renewals:turn_off", args=[given["line"]])))

# The failed-login limit still holds, counted in this process: the right password is refused
# once the limit is used up.
guesser = Client(raise_request_exception=False)
for n in range(given["attempts"]):
    status(f"wrong_{n}", guesser.post(reverse("account_login"), {"login": given["victim"], "password": "wrong-" + str(n)}))
after = status("right_after_limit", guesser.post(reverse("account_login"), {"login": given["victim"], "password": PASSWORD}))
seen["limit_message"] = "Too many failed login attempts" in after.content.decode()

signup = Client(raise_request_exception=False)
status("signup", signup.post(reverse("account_signup"), {"email": "new@example.com", "phone": "", "password1": PASSWORD, "password2": PASSWORD}))

operator = Client(raise_request_exception=False)
status("operator_login", operator.post(reverse("account_login"), {"login": given["operator"], "password": PASSWORD}))
status("operator_totp", operator.post(reverse("mfa_authenticate"), {"code": totp_code(given["secret"])}))
status("admin", operator.get("/admin/"))
status("admin_lines", operator.get("/admin/accounts/line/"))
status("admin_line", operator.get(f"/admin/accounts/line/{given['line']}/change/"))
status("live", operator.get("/healthz/live"))
status("ready", operator.get("/healthz/ready"))
status("status", operator.get("/healthz"))
print(json.dumps(seen))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_server(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield server, f"redis://127.0.0.1:{port}/0"
    if server.poll() is None:
        server.send_signal(signal.SIGKILL)
    server.wait()


def test_with_redis_killed_customers_and_operators_log_in_and_see_their_pages(
    customer, package, redis_server, settings
):
    from django.contrib.auth import get_user_model

    server, url = redis_server
    customer.set_password(PASSWORD)
    customer.save()
    victim = get_user_model().objects.create_user(email="victim@example.com", password=PASSWORD)
    from allauth.account.models import EmailAddress

    EmailAddress.objects.create(user=victim, email=victim.email, verified=True, primary=True)
    line = make_line(owner=customer, package=package)
    operator, secret = make_operator("superuser")
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "esimsite.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": url,
        "CELERY_BROKER_URL": url,
    }
    attempts = 5  # allauth's ACCOUNT_LOGIN_ATTEMPTS_LIMIT default, per key
    given = {
        "customer": customer.email,
        "victim": victim.email,
        "operator": operator.email,
        "secret": secret,
        "line": line.pk,
        "redis_pid": server.pid,
        "attempts": attempts,
    }
    done = subprocess.run(
        [sys.executable, "-c", WALK], input=json.dumps(given).encode(), env=env, capture_output=True, timeout=300
    )
    server.wait()  # the child killed it
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    seen = json.loads(done.stdout.decode().strip().splitlines()[-1])
    log = done.stderr.decode()
    assert seen["warm_login"] == [302, reverse("accounts:home")]
    assert seen["login_page"][0] == 200
    assert seen["login"] == [302, reverse("accounts:home")], log[-3000:]
    for page in ("home", "line", "history", "methods", "rule"):
        assert seen[page][0] == 200, (page, log[-3000:])
    assert seen["turn_off"][0] == 302
    for n in range(attempts):
        assert seen[f"wrong_{n}"][0] == 200  # the form again, with its error
    assert seen["right_after_limit"][0] in (200, 429) and seen["limit_message"], "the limit must not open"
    assert seen["signup"][0] == 302
    assert seen["operator_login"][1].startswith(reverse("mfa_authenticate"))
    assert seen["operator_totp"][0] == 302
    assert [seen[p][0] for p in ("admin", "admin_lines", "admin_line")] == [200, 200, 200]
    # Probes: the process is alive and ready to serve; the status says Redis is down.
    assert (seen["live"][0], seen["ready"][0], seen["status"][0]) == (200, 200, 503)
    assert "cache_redis_unavailable" in log
