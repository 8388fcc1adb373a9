"""Changes made by services and customers' pages are history too, with the system as author."""

from accounts.models import ChangeRecord, Line
from accounts.services import apply_package
from renewals.models import RenewalRule
from tests.builders import make_package, make_rule


def test_a_service_changing_a_line_state_is_recorded_without_an_operator(line):
    Line.objects.filter(pk=line.pk).update(status=Line.Status.DATA_EXHAUSTED)
    apply_package(line=Line.objects.get(pk=line.pk), package=make_package(), now=line.created_at)
    record = ChangeRecord.objects.get(content_type__model="line", object_id=str(line.pk), action="changed")
    assert record.actor is None
    assert record.before["status"] == "data_exhausted" and record.after["status"] == "active"


def test_rule_changes_are_recorded_with_before_and_after(line, package):
    rule = make_rule(line=line, package=package)
    assert ChangeRecord.objects.get(action="created", object_id=str(rule.pk)).after["enabled"] is True
    rule = RenewalRule.objects.get(pk=rule.pk)
    rule.enabled = False
    rule.save()
    rule.save()  # no change: no second row
    changed = ChangeRecord.objects.filter(action="changed", content_type__model="renewalrule")
    assert [(r.before, r.after) for r in changed] == [({"enabled": True}, {"enabled": False})]


def test_saving_a_line_without_a_tracked_change_writes_nothing(line):
    line = Line.objects.get(pk=line.pk)
    line.data_used_bytes += 1
    line.save()
    assert not ChangeRecord.objects.filter(content_type__model="line", action="changed").exists()


def test_a_usage_batch_that_uses_up_the_data_records_the_line_state_change(client, line):
    from accounts.history import history_for
    from tests.partner.helpers import record, signed_post

    line.data_remaining_bytes = 1024
    line.save()
    before = history_for(line).count()
    response = signed_post(client, {"records": [record(line, id="exhaust-1", bytes=4096)]})
    assert response.status_code == 200, response.content
    entry = history_for(line).first()
    assert history_for(line).count() == before + 1
    assert (entry.action, entry.actor, entry.before, entry.after) == (
        "usage_batch",
        None,
        {"status": "active"},
        {"status": "data_exhausted"},
    )


def test_moving_rules_to_a_replacement_card_is_recorded_per_rule(customer, line, package):
    from payments import gateways
    from payments.services.methods import remove_method
    from tests.payments.conftest import create_card

    stripe_customer = gateways.ensure_customer(customer)
    old = gateways.attach_payment_method(customer_id=stripe_customer.id, payment_method_id=create_card())
    new = gateways.attach_payment_method(
        customer_id=stripe_customer.id, payment_method_id=create_card("5555555555554444")
    )
    rule = make_rule(line=line, package=package, payment_method_id=old.id)
    remove_method(user=customer, payment_method_id=old.id, replacement_id=new.id)
    rule.refresh_from_db()
    assert rule.payment_method_id == new.id
    record = ChangeRecord.objects.get(
        content_type__model="renewalrule", object_id=str(rule.pk), action="payment_method_replaced"
    )
    assert (record.actor, record.before, record.after) == (
        customer,
        {"payment_method_id": old.id},
        {"payment_method_id": new.id},
    )
