"""Locust users for bench 5: each is one logged-in customer (a session made by bench.portal) who
browses account, line, account, line, transaction history, over and over, waiting 1 s after each
page (think time). A real customer reads a page for several seconds; 1 s makes each simulated user
worth several real ones, which is how the bench was sized from the start and is kept so figures
compare with earlier runs.

FastHttpUser (geventhttpclient), not HttpUser (requests): the load generator runs on the same two
cores as the server, and requests' Python costs several times more CPU per request (bench.portal
prints locust's CPU beside gunicorn's).

BENCH_PORTAL_ROUNDS=N (the smoke test): each user browses the sequence N times without waiting,
then stops, and the run ends when every user has: the work done does not depend on how fast a
loaded machine is, only the time it takes does."""

import json
import os
import random

import gevent
from locust import FastHttpUser, SequentialTaskSet, constant, task
from locust.exception import StopUser

with open(os.environ["BENCH_PORTAL_SESSIONS"]) as f:
    SESSIONS = json.load(f)  # [{"cookie": ..., "line_id": ...}, ...]

ROUNDS = int(os.environ.get("BENCH_PORTAL_ROUNDS", "0"))  # 0: browse until the run time ends
USERS = int(os.environ.get("BENCH_PORTAL_USERS", "0"))
finished_users = 0


class Browse(SequentialTaskSet):
    """In turn (so every page is met even in a few seconds): account, line, account, line, history."""

    def on_start(self):
        me = random.choice(SESSIONS)
        self.line_id = me["line_id"]
        # The session cookie on every request, as a browser sends it (the server sets no other
        # cookie these pages need: the CSRF cookie is only read by forms, not on a GET).
        self.headers = {"Cookie": f"sessionid={me['cookie']}", "Accept-Language": "en"}

    def page(self, path: str, name: str) -> None:
        # A lost session would be redirected to the login page, which answers 200: that is a failure here.
        with self.client.get(
            path, name=name, headers=self.headers, catch_response=True, allow_redirects=False
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code} {response.headers.get('Location', '')}")

    @task
    def account(self):
        self.page("/", "account")

    @task
    def line(self):
        self.page(f"/lines/{self.line_id}/", "line")

    @task
    def account_again(self):
        self.page("/", "account")

    @task
    def line_again(self):
        self.page(f"/lines/{self.line_id}/", "line")

    @task
    def history(self):
        self.page("/payments/history/", "history")
        self.rounds = getattr(self, "rounds", 0) + 1
        if ROUNDS and self.rounds >= ROUNDS:
            global finished_users
            finished_users += 1
            if finished_users >= USERS:
                # Quit from a fresh greenlet: this one is the user's, which quitting kills.
                gevent.spawn(self.user.environment.runner.quit)
            raise StopUser()


class Customer(FastHttpUser):
    wait_time = constant(0 if ROUNDS else 1)
    tasks = [Browse]
    # One keep-alive connection per user, as a browser tab would hold.
    concurrency = 1
