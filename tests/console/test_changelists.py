"""Each operator list costs a bounded number of queries with 200 rows: no query per row."""

import pytest
from django.utils import timezone

from accounts.models import ChangeRecord, Line, UsageRecord
from renewals.models import Alert, Renewal, RenewalRule
from tests.builders import make_charge, make_line, make_package, make_user

ROWS = 200


@pytest.fixture
def two_hundred_of_everything(db):
    packages = [make_package() for _ in range(3)]
    users = [make_user(email=f"c{n}@example.com") for n in range(ROWS)]
    lines = [make_line(owner=users[n], package=packages[n % 3]) for n in range(ROWS)]
    for n, line in enumerate(lines):
        RenewalRule.objects.create(line=line, package=packages[n % 3], enabled=True, trigger_data_below_mb=100)
        Renewal.objects.create(line=line, package=packages[n % 3], amount_minor=100, currency="CNY", status="failed")
        make_charge(user=users[n], line=line, package=packages[n % 3], payment_intent_id=f"pi_{n}")
        Alert.objects.create(kind="repeated_failures", line=line, message="x")
        UsageRecord.objects.create(
            partner_record_id=f"u{n}", line=line, bytes=1, period_start=timezone.now(), period_end=timezone.now()
        )
    assert Line.objects.count() == ROWS and ChangeRecord.objects.count() >= ROWS


@pytest.mark.parametrize(
    "url",
    [
        "/admin/accounts/user/",
        "/admin/accounts/line/",
        "/admin/accounts/package/",
        "/admin/accounts/changerecord/",
        "/admin/accounts/usagerecord/",
        "/admin/payments/charge/",
        "/admin/renewals/renewal/",
        "/admin/renewals/renewalrule/",
        "/admin/renewals/alert/",
        "/admin/operations/",
    ],
)
def test_changelist_query_count_is_bounded(
    superuser_client, two_hundred_of_everything, url, django_assert_max_num_queries
):
    client, _user = superuser_client
    with django_assert_max_num_queries(25):
        response = client.get(url, {"all": ""} if url != "/admin/operations/" else {})
    assert response.status_code == 200
