"""Pluggable SMS sending (settings.SMS_BACKEND). No SMS gateway runs here, so development logs
the message and tests capture it, like Django's email backends."""

import logging

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

outbox: list[dict] = []  # filled by LocmemBackend, read by tests: {"to": ..., "body": ...}


class ConsoleBackend:
    """Development: the code shows up in the runserver log."""

    def send(self, *, to: str, body: str) -> None:
        logger.info("sms to=%s body=%s", to, body)


class LocmemBackend:
    def send(self, *, to: str, body: str) -> None:
        outbox.append({"to": to, "body": body})


def send_sms(*, to: str, body: str) -> None:
    import_string(settings.SMS_BACKEND)().send(to=to, body=body)
