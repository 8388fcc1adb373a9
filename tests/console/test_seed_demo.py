"""`seed_demo` is idempotent and its two logins work as the README promises."""

from django.core.management import call_command
from django.urls import reverse

from accounts.models import Line, Package, UsageRecord, User
from console.management.commands.seed_demo import CUSTOMER, OPERATOR


def counts():
    return [model.objects.count() for model in (User, Line, Package, UsageRecord)]


def test_seed_demo_twice_changes_nothing(db):
    call_command("seed_demo")
    first = counts()
    call_command("seed_demo")
    assert counts() == first
    assert first[:3] == [2, 2, 3]


def test_demo_customer_logs_in_and_sees_two_lines_with_charts(client, db):
    call_command("seed_demo")
    response = client.post(reverse("account_login"), {"login": CUSTOMER[0], "password": CUSTOMER[1]})
    assert response["Location"] == reverse("accounts:home")
    body = client.get(reverse("accounts:home")).content.decode()
    assert body.count('<figure class="usage-chart">') == 2
    assert body.count("<rect ") >= 10 + 5  # a bar a day since each package began


def test_demo_usage_records_add_up_to_each_lines_used_figure(db):
    from django.db.models import Sum

    call_command("seed_demo")
    for line in Line.objects.all():
        total = UsageRecord.objects.filter(line=line).aggregate(total=Sum("bytes"))["total"]
        assert total == line.data_used_bytes, line.label
        assert not UsageRecord.objects.filter(line=line, period_start__lt=line.package_started_at).exists()


def test_demo_operator_logs_in_and_is_sent_to_set_up_two_factor_for_the_admin(client, db):
    call_command("seed_demo")
    response = client.post(reverse("account_login"), {"login": OPERATOR[0], "password": OPERATOR[1]})
    assert response["Location"] == reverse("accounts:home")
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[1][0] == reverse("mfa_activate_totp")
