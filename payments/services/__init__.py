"""Every write of the payments app, one module per family: methods (binding and removing payment
methods), on_session (purchases and the on-session flow renewals' pay-now uses), recording (the
one outcome recorder), refunds, webhooks; errors holds the domain errors. Stripe is only reached
through payments.gateways; a `Charge` row is committed before any charge call.

The names below are re-exported while callers move to the family modules (transitional: new code
imports `payments.services.<family>`; docs/architecture.md).
"""
# ruff: noqa: F401  (re-exports)
from .errors import (
    BindingFailed,
    MethodUnavailable,
    NotPayable,
    PaymentError,
    PaymentMethodNotFound,
    ReplacementRequired,
)
from .methods import (
    METHOD_TYPES,
    BindingStart,
    approved_method_summary,
    confirmed_setup_intent,
    enabled_method_types,
    finish_binding,
    move_rules_to_method,
    own_method,
    remove_method,
    rules_using_method,
    set_default_method,
    start_binding,
)
from .on_session import (
    complete_authentication,
    processor_busy,
    purchase_package,
    reconcile,
    reconcile_stale_purchases,
    withdraw_open_payment,
)
from .recording import FAILED_KINDS, record_outcome
from .refunds import (
    DUPLICATE_PAYMENT,
    REFUND_DUE_CODES,
    reconcile_refunds,
    reconcile_refunds_in_doubt,
    refund_charge,
    refund_due_charge,
    refund_due_charges,
    refund_duplicate_payment,
)
from .webhooks import (
    INVALID_WEBHOOK_TRIGGER_RETENTION_DAYS,
    LOCAL_WEBHOOK_ENDPOINT_ID,
    configure_local_webhook_endpoint,
    prune_webhook_triggers,
    reverse_webhook_path,
)
