"""Development (`make run`; the default of manage.py and of the Celery app): the development
values of settings/development.py, a SQLite file, DEBUG on, bound to 127.0.0.1 by the Procfile.
Never deployed: wsgi/asgi use `production`. dj-stripe's DEBUG-only webhook secret header is
refused here too (payments.webhooks.drop_secret_override_header)."""

from pathlib import Path

from .development import use_development_environment

# The zero-set-up run: one SQLite file shared by the portal, the worker and beat.
use_development_environment(DATABASE_URL=f"sqlite:///{Path(__file__).resolve().parents[2] / 'db.sqlite3'}")

from .base import *  # noqa: E402, F403
from .base import env  # noqa: E402

DEBUG = env.bool("DJANGO_DEBUG", default=True)
