"""The operator's "Correct usage" page: finance (and superusers) only, a confirmation with the line
before and after, a reason required, refusals as form errors; the corrections are listed
read-only, and usage records stay undeletable."""

import pytest
from django.utils import timezone

from accounts.models import ChangeRecord, Line, NetworkCommand, UsageAdjustment, UsageRecord
from partner.services.usage import UsageInput, ingest_usage
from tests.builders import MB, make_line

URL = "/admin/accounts/line/{}/adjust-usage/"


@pytest.fixture
def exhausted_line(customer, package):
    line = make_line(owner=customer, package=package, data_remaining_bytes=100 * MB, data_used_bytes=0)
    now = timezone.now()
    ingest_usage(
        records=[UsageInput(index=0, partner_record_id="twice", iccid=line.iccid, bytes=400 * MB, start=now, end=now)]
    )
    line.refresh_from_db()
    assert line.status == Line.Status.DATA_EXHAUSTED
    return line


def test_finance_previews_before_and_after_then_confirms(finance_client, exhausted_line):
    client, operator = finance_client
    change_page = client.get(f"/admin/accounts/line/{exhausted_line.pk}/change/").content.decode()
    assert URL.format(exhausted_line.pk) in change_page
    preview = client.post(URL.format(exhausted_line.pk), {"megabytes": "-300", "reason": "partner sent r-17 twice"})
    assert preview.status_code == 200
    html = preview.content.decode()
    assert 'id="correction-preview"' in html and "\u2212300 MB" in html and "Out of data" in html and "Active" in html
    exhausted_line.refresh_from_db()
    assert exhausted_line.data_remaining_bytes == 0 and not UsageAdjustment.objects.exists()  # nothing written yet

    done = client.post(
        URL.format(exhausted_line.pk), {"megabytes": "-300", "reason": "partner sent r-17 twice", "confirm": "yes"}
    )
    assert done.status_code == 302
    exhausted_line.refresh_from_db()
    assert (exhausted_line.status, exhausted_line.data_remaining_bytes) == (Line.Status.ACTIVE, 300 * MB)
    assert list(NetworkCommand.objects.filter(line=exhausted_line).values_list("command", flat=True)) == [
        "block_data",
        "unblock_data",
    ]
    adjustment = UsageAdjustment.objects.get()
    assert (adjustment.operator, adjustment.bytes, adjustment.reason) == (
        operator,
        -300 * MB,
        "partner sent r-17 twice",
    )
    assert ChangeRecord.objects.filter(
        action="usage_adjusted", actor=operator, reason="partner sent r-17 twice"
    ).exists()
    # Listed read-only, on the line's page and in its own list.
    assert "partner sent r-17 twice" in client.get(f"/admin/accounts/line/{exhausted_line.pk}/change/").content.decode()
    listed = client.get("/admin/accounts/usageadjustment/").content.decode()
    assert "\u2212300 MB" in listed and str(-300 * MB) not in listed  # megabytes, never raw bytes
    assert client.get(f"/admin/accounts/usageadjustment/{adjustment.pk}/delete/").status_code == 403
    assert client.get("/admin/accounts/usageadjustment/add/").status_code == 403


def test_changing_the_correction_comes_back_to_the_form_with_its_values(finance_client, exhausted_line):
    client, _operator = finance_client
    preview = client.post(URL.format(exhausted_line.pk), {"megabytes": "-300", "reason": "sent twice & more"})
    link = URL.format(exhausted_line.pk) + "?megabytes=-300&amp;reason=sent%20twice%20%26%20more"
    assert link in preview.content.decode()
    form = client.get(URL.format(exhausted_line.pk), {"megabytes": "-300", "reason": "sent twice & more"})
    html = form.content.decode()
    assert 'value="-300"' in html and 'value="sent twice &amp; more"' in html
    assert not UsageAdjustment.objects.exists()


@pytest.mark.parametrize(
    "data, error",
    [
        ({"megabytes": "-300", "reason": ""}, "This field is required"),
        ({"megabytes": "-300", "reason": "   "}, "This field is required"),
        ({"megabytes": "0", "reason": "x"}, "changes nothing"),
        ({"megabytes": "lots", "reason": "x"}, "Enter a whole number"),
        ({"megabytes": "-9999999999", "reason": "x"}, "greater than or equal to"),
        ({"megabytes": "-401", "reason": "goodwill"}, "can be given back"),
        ({"megabytes": "-401", "reason": "goodwill", "confirm": "yes"}, "can be given back"),
    ],
)
def test_bad_input_is_a_form_error_and_writes_nothing(finance_client, exhausted_line, data, error):
    client, _operator = finance_client
    response = client.post(URL.format(exhausted_line.pk), data)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not UsageAdjustment.objects.exists()
    exhausted_line.refresh_from_db()
    assert exhausted_line.data_remaining_bytes == 0


def test_an_unknown_line_is_a_404(finance_client):
    client, _operator = finance_client
    assert client.get(URL.format(999999)).status_code == 404


def test_support_is_not_offered_it_and_cannot_post_it(support_client, exhausted_line):
    client, _operator = support_client
    assert (
        URL.format(exhausted_line.pk)
        not in client.get(f"/admin/accounts/line/{exhausted_line.pk}/change/").content.decode()
    )
    assert client.get(URL.format(exhausted_line.pk)).status_code == 403
    response = client.post(URL.format(exhausted_line.pk), {"megabytes": "-300", "reason": "x", "confirm": "yes"})
    assert response.status_code == 403
    assert not UsageAdjustment.objects.exists()


def test_customers_never_reach_it(customer_client, exhausted_line):
    response = customer_client.post(
        URL.format(exhausted_line.pk), {"megabytes": "-300", "reason": "x", "confirm": "yes"}
    )
    assert response.status_code in (302, 403, 404)
    assert not UsageAdjustment.objects.exists()


def test_usage_records_are_still_not_deletable(superuser_client, exhausted_line):
    client, _operator = superuser_client
    record = UsageRecord.objects.get()
    assert client.get(f"/admin/accounts/usagerecord/{record.pk}/delete/").status_code == 403
    assert client.post(f"/admin/accounts/usagerecord/{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert UsageRecord.objects.filter(pk=record.pk).exists()
