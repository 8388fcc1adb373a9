"""The renewal engine: every transition of a `Renewal` (docs/line-states.md, docs/money.md) is
one function in one of these modules, in one transaction, with one structured log line. Tasks,
views, the console and the partner's usage ingestion call them; nothing else writes renewals.

One module per family: triggers (open renewals), claims, charging (the charge step), outcomes,
precedence (operator suspension > termination > payment state, docs/precedence.md), suspension,
reconciliation, pay_now, rules (the customer's rule and method changes), authentications (3-D
Secure intents to withdraw), operator (admin actions), alerts and the dispatcher. The row-lock
helpers every family shares are in _locks.py, the outcome kinds, errors and settings in _base.py,
and the reads in renewals/selectors.py.

Lock order, everywhere: rule, then renewal, then charge, then line. The charge step and turning
a rule off both take the rule's row lock first, which is what makes "turning a rule off wins"
hold without deadlocks.

The names below are re-exported while callers move to the family modules (transitional: new code
imports `renewals.services.<family>`; docs/architecture.md).
"""
# ruff: noqa: F401  (re-exports)
from ..selectors import lines_with_enabled_rules_ids, month_start, renewals_in_last_day, spent_this_month
from ._base import MB, SUPERSEDED, RenewalNotPayable
from .alerts import alert_from_payments, raise_alert, resolve_alert
from .authentications import (
    CLOSED,
    CLOSED_WITHOUT_PAYMENT,
    abandoned_authentications,
    withdraw_authentication,
    withdraw_authentications,
)
from .charging import PreparedCharge, charge_renewal, prepare_charge
from .claims import claim_due_renewals, dispatch_now, requeue_lost_claims
from .dispatcher import DispatchReport, run_dispatcher
from .operator import cancel_renewal, retry_now
from .outcomes import _record_success, _refund_paid_too_late, record_charge_outcome
from .pay_now import PAYABLE, start_pay_now
from .precedence import (
    LINE_OWNER_CHANGED,
    LINE_TERMINATED,
    PAYMENT_SUSPENSION,
    SUSPENDED_BY_OPERATOR,
    cancel_renewals_of_terminated_lines,
    line_owner_changed,
    suspended_by_operator,
    turn_off_rules_of_given_lines,
)
from .reconciliation import (
    DELAYED_SETTLEMENT_TYPES,
    RECONCILE_LEASE_SECONDS,
    Outcome,
    alert_stuck_charges,
    enqueue_reconciliations,
    reconcile_charge,
    release_unsent_attempt,
    stale_pending_charges,
)
from .rules import payment_method_changed, save_rule, turn_off_rule
from .suspension import AUTHENTICATION_TIMEOUT, suspend_overdue_lines
from .triggers import (
    evaluate_triggers,
    open_renewal,
    overage_fee_minor,
    renewal_terms,
    trigger_met,
)
