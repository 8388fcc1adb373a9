"""The payments app's domain errors; each carries a message safe to show the customer."""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import Model


class PaymentError(Exception):
    """A domain error with a message safe to show the customer."""

    def __init__(self, message: str, *, code: str = ""):
        super().__init__(message)
        self.user_message = message
        self.code = code


class MethodUnavailable(PaymentError):
    pass


class BindingFailed(PaymentError):
    pass


class PaymentMethodNotFound(PaymentError):
    pass


class ReplacementRequired(PaymentError):
    def __init__(self, message: str, *, rules: Sequence[Model]) -> None:
        super().__init__(message, code="replacement_required")
        self.rules = rules


class NotPayable(PaymentError):
    pass
