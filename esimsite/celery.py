"""The Celery app. State lives in the database; Celery only executes (docs/invariants.md #4)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "esimsite.settings.local")

app = Celery("esimsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
