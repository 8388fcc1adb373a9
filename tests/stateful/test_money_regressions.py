"""Counterexamples of the money model (test_money_model.py), each replayed step by step as a plain
test: the same rules with the same arguments, every invariant checked after every step, exactly
as hypothesis runs them. Minimal step lists: shrunk from what hypothesis found, or written as a
directed sequence of the machine's rules for a seam its random runs did not reach first (the
report of the "Money seams" branch says which is which). Named for what breaks.

Each failed on the code before its fix; all pass now.
"""

import pytest


def replay(machine, *steps):
    """Run (rule name, arguments) steps on the machine, checking every invariant after each one."""
    machine.check_all()
    for name, kwargs in steps:
        getattr(machine, name)(**kwargs)
        machine.check_all()


# --- case 1: a purchase restores a line without telling the network -----------------------------


def test_purchase_on_an_out_of_data_line_unblocks_it_at_the_network(machine):
    replay(
        machine,
        ("set_up", dict(default_card="good", overage_policy="block", remaining_mb=600)),
        ("usage", dict(mb=700)),  # data exhausted: block_data written
        ("purchase", dict(package="eur", card="good")),
    )


def test_purchase_on_a_line_suspended_for_an_unpaid_cycle_resumes_it_at_the_network(machine):
    replay(
        machine,
        ("set_up", dict(default_card="declining", overage_policy="block", remaining_mb=100)),
        *[("tick", dict(minutes=3 * 24 * 60 + 1))] * 5,  # four declines, then past the grace: suspended
        ("purchase", dict(package="eur", card="good")),
    )


# --- case 2: precedence of the operator's suspension ---------------------------------------------


def test_purchase_does_not_lift_an_operator_suspension(machine):
    replay(
        machine,
        ("set_up", dict(default_card="good", overage_policy="block", remaining_mb=600)),
        ("operator_suspend", {}),
        ("purchase", dict(package="eur", card="good")),
    )


def test_a_renewal_retry_does_not_lift_an_operator_suspension(machine):
    replay(
        machine,
        ("set_up", dict(default_card="declining", overage_policy="block", remaining_mb=100)),
        ("tick", dict(minutes=1)),  # first attempt declined: retry in an hour
        ("operator_suspend", {}),
        ("set_default_method", dict(card="good")),
        ("tick", dict(minutes=61)),
    )  # the retry pays and resumes the line


# --- case 4: frozen terms -------------------------------------------------------------------------


def test_switching_the_rules_package_mid_retry_charges_the_frozen_terms(machine):
    replay(
        machine,
        ("set_up", dict(default_card="declining", overage_policy="block", remaining_mb=100)),
        ("tick", dict(minutes=1)),  # 9800 CNY declined
        ("edit_rule", dict(package="eur", method="", threshold_mb=500, enabled=True)),
        ("tick", dict(minutes=61)),
    )  # charges 500 CNY


def test_switching_the_rules_package_before_the_first_attempt_charges_the_frozen_terms(machine):
    replay(
        machine,
        ("set_up", dict(default_card="good", overage_policy="block", remaining_mb=100)),  # due at 9800 CNY
        ("edit_rule", dict(package="eur", method="", threshold_mb=100, enabled=True)),
        ("tick", dict(minutes=1)),
    )  # charges 500 CNY


def test_an_operator_price_edit_does_not_change_an_open_renewal(machine):
    replay(
        machine,
        ("set_up", dict(default_card="good", overage_policy="block", remaining_mb=100)),  # renewal due at 9800 CNY
        ("edit_package", dict(package="cny", price=12000, currency="CNY")),
        ("tick", dict(minutes=1)),
    )


# --- case 6: pay-now and the retry schedule -------------------------------------------------------


def test_a_declined_pay_now_leaves_the_retry_cycle_alone(machine):
    replay(
        machine,
        ("set_up", dict(default_card="declining", overage_policy="block", remaining_mb=100)),
        ("tick", dict(minutes=1)),  # retry scheduled in an hour
        ("pay_now", dict(card="declining")),
    )


# --- case 7: overage -----------------------------------------------------------------------------


def test_overage_accrued_while_a_renewal_waits_for_3ds_is_not_written_off(machine):
    replay(
        machine,
        ("set_up", dict(default_card="3ds", overage_policy="bill_overage", remaining_mb=600)),
        ("usage", dict(mb=700)),  # 100 MB beyond zero, renewal opened billing it
        ("tick", dict(minutes=1)),  # waits for 3-D Secure
        ("usage", dict(mb=50)),  # 50 MB more overage
        ("authenticate", dict(which=0, success=True, come_back=True)),
    )


# --- case 8: 3-D Secure window -------------------------------------------------------------------


def test_authentication_timeout_withdraws_the_intent(machine):
    replay(
        machine,
        ("set_up", dict(default_card="3ds", overage_policy="block", remaining_mb=100)),
        ("tick", dict(minutes=1)),  # waits for 3-D Secure, 24 hours
        ("tick", dict(minutes=25 * 60)),  # failed, line suspended
        ("tick", dict(minutes=1)),
    )


# --- case 9: termination --------------------------------------------------------------------------


def test_no_renewal_attempt_after_the_line_is_terminated(machine):
    replay(
        machine,
        ("set_up", dict(default_card="declining", overage_policy="block", remaining_mb=100)),
        ("tick", dict(minutes=1)),  # retry scheduled
        ("operator_terminate", {}),
        ("tick", dict(minutes=61)),
    )


def test_a_renewal_due_at_termination_is_not_charged(machine):
    replay(
        machine,
        ("set_up", dict(default_card="good", overage_policy="block", remaining_mb=100)),  # renewal due
        ("operator_terminate", {}),
        ("tick", dict(minutes=1)),
    )


def test_a_renewal_paid_after_termination_is_refunded_with_an_alert(machine):
    replay(
        machine,
        ("set_up", dict(default_card="3ds", overage_policy="block", remaining_mb=100)),
        ("tick", dict(minutes=1)),  # waits for 3-D Secure
        ("operator_terminate", {}),
        ("authenticate", dict(which=0, success=True, come_back=True)),
    )


def test_a_purchase_paid_after_termination_is_refunded_with_an_alert(machine):
    replay(
        machine,
        ("set_up", dict(default_card="good", overage_policy="block", remaining_mb=2048)),
        ("purchase", dict(package="cny", card="3ds")),  # waits for 3-D Secure
        ("operator_terminate", {}),
        ("authenticate", dict(which=0, success=True, come_back=True)),
    )


# --- case 13: the operator's resume of a line that ran out of data while suspended ----------------


def test_operator_resume_of_a_line_out_of_data_blocks_its_data_at_the_network(machine):
    replay(
        machine,
        ("set_up", dict(default_card="good", overage_policy="block", remaining_mb=600)),
        ("operator_suspend", {}),
        ("usage", dict(mb=700)),
        ("operator_resume", {}),
    )


# --- case 14: overage settled twice ----------------------------------------------------------------


def test_overage_frozen_into_an_open_renewal_is_settled_once(machine):
    replay(
        machine,
        ("set_up", dict(default_card="good", overage_policy="bill_overage", remaining_mb=600)),
        ("usage", dict(mb=700)),  # 100 MB overage; renewal due for 9800 + 98 CNY
        ("purchase", dict(package="eur", card="good")),  # deducts the 100 MB from the new allowance
        ("tick", dict(minutes=1)),
    )


# --- processor unreachable, then the customer's other tab -------------------------------------------


def test_a_3ds_intent_completed_in_another_tab_after_pay_now_is_recorded(machine):
    replay(
        machine,
        ("set_up", dict(default_card="3ds", overage_policy="block", remaining_mb=100)),
        ("tick", dict(minutes=1)),  # waits for 3-D Secure
        ("while_processor_unreachable", dict(action="pay_now")),
        ("authenticate", dict(which=0, success=True, come_back=True)),
    )


# --- case 12: a payment settled at the bank that never reaches us --------------------------------


def test_a_purchase_paid_at_the_bank_without_return_or_webhook_is_reconciled(machine):
    replay(
        machine,
        ("set_up", dict(default_card="good", overage_policy="block", remaining_mb=2048)),
        ("purchase", dict(package="cny", card="3ds")),
        ("authenticate", dict(which=0, success=True, come_back=False)),
        ("tick", dict(minutes=61)),
    )


def test_a_renewal_paid_at_the_bank_without_return_or_webhook_is_reconciled(machine):
    replay(
        machine,
        ("set_up", dict(default_card="3ds", overage_policy="block", remaining_mb=100)),
        ("tick", dict(minutes=1)),  # waits for 3-D Secure
        ("authenticate", dict(which=0, success=True, come_back=False)),
        ("tick", dict(minutes=61)),
    )


# --- the model's own sanity: ordinary flows keep every invariant -------------------------------------


def test_a_paid_renewal_a_purchase_a_refund_and_duplicate_webhooks_keep_every_invariant(machine):
    replay(
        machine,
        ("set_up", dict(default_card="good", overage_policy="block", remaining_mb=100)),
        ("tick", dict(minutes=1)),
        ("purchase", dict(package="eur", card="good")),
        ("operator_refund", dict(which=0, partial=True)),
        ("webhook", dict(which=0, stale=True, twice=True)),
        ("tick", dict(minutes=11)),
    )


def test_a_renewal_paid_after_3ds_keeps_every_invariant(machine):
    replay(
        machine,
        ("set_up", dict(default_card="3ds", overage_policy="block", remaining_mb=100)),
        ("tick", dict(minutes=1)),
        ("authenticate", dict(which=0, success=True, come_back=True)),
        ("webhook", dict(which=0, stale=False, twice=True)),
        ("tick", dict(minutes=25 * 60)),
    )


def test_a_failed_cycle_paid_with_a_new_default_card_keeps_every_invariant(machine):
    replay(
        machine,
        ("set_up", dict(default_card="declining", overage_policy="block", remaining_mb=100)),
        *[("tick", dict(minutes=3 * 24 * 60 + 1))] * 5,  # failed, line suspended
        ("set_default_method", dict(card="good")),
        ("tick", dict(minutes=1)),
    )


@pytest.mark.parametrize("overage_policy", ["deduct_from_next", "bill_overage"])
def test_overage_settled_by_a_renewal_keeps_every_invariant(machine, overage_policy):
    replay(
        machine,
        ("set_up", dict(default_card="good", overage_policy=overage_policy, remaining_mb=600)),
        ("usage", dict(mb=700)),
        ("tick", dict(minutes=1)),
    )
