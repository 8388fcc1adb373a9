"""The admin's change forms are no back door around the engine: what the engine owns (counters,
statuses, amounts, attempts, partner records) is read-only for every operator, superusers too, and
changes to it go through the confirmed actions that call services and write history."""

import re
from datetime import UTC, datetime

import pytest
from django.utils import timezone

from accounts.models import ChangeRecord, Line, NetworkCommand, UsageRecord
from accounts.services.network import enqueue_command
from partner.services.usage import UsageInput, ingest_usage
from payments.models import Charge
from renewals.models import Alert, Renewal, RenewalRule
from tests.builders import GB, make_charge, make_package, make_renewal, make_rule
from tests.console.conftest import form_values, run_action

MB = 1024**2


def _inputs(page) -> set[str]:
    return set(re.findall(r'<(?:input|select|textarea)[^>]*name="([^"]+)"', page.content.decode()))


def test_saving_a_label_keeps_the_usage_that_arrived_while_the_page_was_open(superuser_client, line):
    client, operator = superuser_client
    url = f"/admin/accounts/line/{line.pk}/change/"
    page = client.get(url)
    posted = form_values(page) | {"label": "Dad's phone"}
    ingest_usage(
        records=[
            UsageInput(
                index=0,
                partner_record_id="while-open-1",
                iccid=line.iccid,
                bytes=GB,
                start=datetime(2026, 11, 1, 10, tzinfo=UTC),
                end=datetime(2026, 11, 1, 10, 5, tzinfo=UTC),
            )
        ]
    )
    response = client.post(url, posted)
    assert response.status_code == 302, response.content.decode()[:2000]
    line.refresh_from_db()
    assert line.label == "Dad's phone"
    assert (line.data_remaining_bytes, line.data_used_bytes) == (
        4 * GB,
        6 * GB,
    )  # the gigabyte used meanwhile stays used


def test_a_superuser_cannot_change_a_lines_status_counters_or_package_on_its_form(superuser_client, line):
    client, _operator = superuser_client
    url = f"/admin/accounts/line/{line.pk}/change/"
    page = client.get(url)
    shown = _inputs(page)
    engine_owned = {
        "status",
        "data_remaining_bytes",
        "data_used_bytes",
        "overage_bytes",
        "expires_at_0",
        "package",
        "owner",
        "iccid",
        "usage_notice_level",
        "expiry_notice_sent",
        "activated_at_0",
    }
    assert not engine_owned & shown
    other = make_package(name="Other")
    forged = form_values(page) | {
        "status": "suspended",
        "data_remaining_bytes": str(100 * GB),
        "package": str(other.pk),
    }
    assert client.post(url, forged).status_code == 302
    line.refresh_from_db()
    assert (line.status, line.data_remaining_bytes, line.package_id) == (Line.Status.ACTIVE, 5 * GB, line.package_id)
    assert line.package_id != other.pk
    assert not NetworkCommand.objects.exists()
    # The way to suspend is the action: it sends the command and writes the history.
    _first, confirmed = run_action(client, "/admin/accounts/line/", "suspend_lines", [line.pk], reason="fraud check")
    assert confirmed.status_code == 302
    assert NetworkCommand.objects.get(line=line).command == "suspend"


@pytest.mark.parametrize("model", ["renewal", "charge", "alert", "usagerecord", "networkcommand"])
def test_engine_rows_show_no_editable_field_to_a_superuser(superuser_client, customer, line, package, model):
    client, _operator = superuser_client
    renewal = make_renewal(line=line, package=package, status=Renewal.Status.RETRY_SCHEDULED, attempts=2)
    objects = {
        "renewal": lambda: ("renewals", renewal),
        "charge": lambda: (
            "payments",
            make_charge(user=customer, line=line, package=package, status=Charge.Status.SUCCEEDED),
        ),
        "alert": lambda: (
            "renewals",
            Alert.objects.create(kind=Alert.Kind.REPEATED_FAILURES, line=line, message="declined"),
        ),
        "usagerecord": lambda: (
            "accounts",
            UsageRecord.objects.create(
                partner_record_id="r-1", line=line, bytes=MB, period_start=timezone.now(), period_end=timezone.now()
            ),
        ),
        "networkcommand": lambda: ("accounts", enqueue_command(line=line, command="suspend")),
    }
    app, obj = objects[model]()
    url = f"/admin/{app}/{model}/{obj.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    fields = {
        name for name in _inputs(page) if name != "csrfmiddlewaretoken" and "-" not in name and not name.startswith("_")
    }
    assert fields == set(), fields
    before = {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields if f.name != "updated_at"}
    client.post(
        url,
        {
            "status": "succeeded",
            "amount_minor": "1",
            "attempts": "0",
            "bytes": "0",
            "resolved_at_0": "2026-01-01",
            "resolved_at_1": "00:00:00",
            "next_attempt_at_0": "2026-01-01",
            "next_attempt_at_1": "00:00:00",
        },
    )
    obj.refresh_from_db()
    assert {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields if f.name != "updated_at"} == before


def test_a_renewal_rule_form_is_read_only_and_turning_it_off_goes_through_the_engine(superuser_client, line, package):
    client, operator = superuser_client
    rule = make_rule(line=line, package=package)
    renewal = make_renewal(line=line, package=package, rule=rule, status=Renewal.Status.RETRY_SCHEDULED)
    url = f"/admin/renewals/renewalrule/{rule.pk}/change/"
    page = client.get(url)
    assert {"enabled", "package", "trigger_data_below_mb", "payment_method_id"} & _inputs(page) == set()
    client.post(url, form_values(page) | {"trigger_data_below_mb": "1"})
    rule.refresh_from_db()
    assert (rule.enabled, rule.trigger_data_below_mb) == (True, 500)
    _first, confirmed = run_action(
        client, "/admin/renewals/renewalrule/", "turn_off_rules_confirmed", [rule.pk], reason="customer asked by phone"
    )
    assert confirmed.status_code == 302
    rule.refresh_from_db()
    renewal.refresh_from_db()
    assert not rule.enabled and renewal.status == Renewal.Status.CANCELLED  # docs/invariants.md #3: turning off wins
    record = ChangeRecord.objects.get(content_type__model="renewalrule", object_id=str(rule.pk), action="turned_off")
    assert (record.actor, record.reason, record.before, record.after) == (
        operator,
        "customer asked by phone",
        {"enabled": True},
        {"enabled": False},
    )


def test_no_operator_deletes_a_usage_record_line_renewal_rule_or_network_command(superuser_client, line, package):
    client, _operator = superuser_client
    record = UsageRecord.objects.create(
        partner_record_id="r-2", line=line, bytes=MB, period_start=timezone.now(), period_end=timezone.now()
    )
    rule = make_rule(line=line, package=package)
    renewal = make_renewal(line=line, package=package, rule=rule)
    command = enqueue_command(line=line, command="suspend")
    for app, model, obj in (
        ("accounts", "usagerecord", record),
        ("accounts", "line", line),
        ("renewals", "renewal", renewal),
        ("renewals", "renewalrule", rule),
        ("accounts", "networkcommand", command),
    ):
        assert client.get(f"/admin/{app}/{model}/{obj.pk}/delete/").status_code == 403, model
        assert client.post(f"/admin/{app}/{model}/{obj.pk}/delete/", {"post": "yes"}).status_code == 403, model
        assert "delete_selected" not in client.get(f"/admin/{app}/{model}/").content.decode(), model
        client.post(
            f"/admin/{app}/{model}/", {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"}
        )
    assert UsageRecord.objects.filter(pk=record.pk).exists() and Line.objects.filter(pk=line.pk).exists()
    assert Renewal.objects.filter(pk=renewal.pk).exists() and RenewalRule.objects.filter(pk=rule.pk).exists()
    assert NetworkCommand.objects.filter(pk=command.pk).exists()
    assert client.get("/admin/accounts/usagerecord/add/").status_code == 403


def test_a_package_edit_that_would_leave_rules_below_their_threshold_is_refused(finance_client, line, package):
    client, _operator = finance_client
    make_rule(line=line, package=package, trigger_data_below_mb=2048)  # 2 GB threshold, 10 GB package
    url = f"/admin/accounts/package/{package.pk}/change/"
    page = client.get(url)
    response = client.post(url, form_values(page) | {"data_allowance_mb": "2048"})
    assert response.status_code == 200
    assert "1 auto-renewal rule buys this package" in response.content.decode()
    package.refresh_from_db()
    assert package.data_allowance_bytes == 10 * GB
    response = client.post(url, form_values(page) | {"validity_days": "1"})
    assert response.status_code == 302  # the rule has no expiry trigger: a shorter validity breaks nothing
    response = client.post(url, form_values(client.get(url)) | {"data_allowance_mb": "3072", "price": "88.50"})
    assert response.status_code == 302
    package.refresh_from_db()
    assert (package.data_allowance_bytes, package.price_minor) == (3 * GB, 8850)
