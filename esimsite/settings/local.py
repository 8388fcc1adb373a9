"""Development (`make run`; the default of manage.py and of the Celery app): the base's local
defaults with DEBUG on, bound to 127.0.0.1 by the Procfile. Never deployed: wsgi/asgi use
`production`. dj-stripe's DEBUG-only webhook secret header is refused here too
(payments.webhooks.drop_secret_override_header)."""
from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
