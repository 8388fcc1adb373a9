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

Nothing is re-exported here: callers import the family module (`from renewals.services import
charging`; docs/architecture.md).
"""
