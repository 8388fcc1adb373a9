"""Every write of the payments app, one module per family: methods (binding and removing payment
methods), on_session (purchases and the on-session flow renewals' pay-now uses), recording (the
one outcome recorder), refunds, webhooks; errors holds the domain errors. Stripe is only reached
through payments.gateways; a `Charge` row is committed before any charge call.

Nothing is re-exported here: callers import the family module (`from payments.services import
refunds`; docs/architecture.md).
"""
