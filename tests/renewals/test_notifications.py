"""Renewal emails in the customer's language and time zone, and a complete zh-Hans catalogue."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core import mail
from django.utils import translation

from payments.money import format_money
from renewals import notifications
from renewals.models import Renewal
from tests.builders import make_rule

CATALOGUE = Path(__file__).resolve().parents[2] / "renewals" / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"


def test_a_chinese_customer_gets_chinese_email_with_local_times(customer, line, package, policy):
    customer.language = "zh-hans"
    customer.time_zone = "Asia/Shanghai"
    customer.save()
    rule = make_rule(line=line, package=package)
    renewal = Renewal.objects.create(
        line=line,
        rule=rule,
        package=package,
        amount_minor=9800,
        currency="CNY",
        status=Renewal.Status.RETRY_SCHEDULED,
        next_attempt_at=datetime(2026, 11, 24, 16, 30, tzinfo=UTC),
    )
    assert notifications.send_renewal_email(renewal_id=renewal.pk, kind=notifications.RETRY_SCHEDULED)
    [message] = mail.outbox
    assert message.subject == f"eSIM {line.iccid} 的续费付款失败"
    assert "¥98.00" in message.body and "CN¥" not in message.body and "再次尝试" in message.body
    assert "00:30" in message.body or "0:30" in message.body  # 16:30 UTC is 00:30 in Shanghai
    assert f"http://127.0.0.1:8000/payments/renewals/{renewal.pk}/pay/" in message.body  # pay now, on-session


def test_every_kind_of_email_renders_in_both_languages(customer, line, package, policy):
    rule = make_rule(line=line, package=package)
    renewal = Renewal.objects.create(line=line, rule=rule, package=package, amount_minor=9800, currency="CNY")
    for language in ("en", "zh-hans"):
        customer.language = language
        customer.save()
        for kind in notifications.KINDS:
            assert notifications.send_renewal_email(renewal_id=renewal.pk, kind=kind)
    assert len(mail.outbox) == 2 * len(notifications.KINDS)
    assert len({m.subject for m in mail.outbox}) == 2 * len(notifications.KINDS)
    english, chinese = mail.outbox[: len(notifications.KINDS)], mail.outbox[len(notifications.KINDS) :]
    assert all("{%" not in m.body and "CN¥98.00" in m.body for m in english)
    assert all("{%" not in m.body and "¥98.00" in m.body and "CN¥" not in m.body for m in chinese)


@pytest.mark.pure
def test_money_is_formatted_from_minor_units_by_the_currency():
    with translation.override("en"):
        assert format_money(9800, "CNY") == "CN¥98.00"
        assert format_money(5, "EUR") == "€0.05"
        assert format_money(1200, "JPY") == "¥1,200"
        assert format_money(1234567, "KWD") == "KWD\u00a01,234.567"  # CLDR currency spacing


@pytest.mark.pure
def test_the_zh_hans_catalogue_is_complete():
    text = CATALOGUE.read_text(encoding="utf-8")
    entries = text.split("\n\n")[1:]  # the first block is the header
    assert entries
    for entry in entries:
        assert "#, fuzzy" not in entry, entry
        assert 'msgstr ""' not in entry.splitlines()[-1] and 'msgstr[0] ""' not in entry, entry


def test_english_retry_email_ends_its_date_sentence_with_one_full_stop(customer, line, package, policy):
    rule = make_rule(line=line, package=package)
    renewal = Renewal.objects.create(
        line=line,
        rule=rule,
        package=package,
        amount_minor=9800,
        currency="CNY",
        status=Renewal.Status.RETRY_SCHEDULED,
        next_attempt_at=datetime(2026, 11, 24, 19, 2, tzinfo=UTC),
    )
    assert notifications.send_renewal_email(renewal_id=renewal.pk, kind=notifications.RETRY_SCHEDULED)
    [message] = mail.outbox
    assert "We will try again on Nov 24, 2026, 19:02." in message.body
    assert ".." not in message.body


def test_the_retry_email_says_when_we_try_again_even_if_the_retry_succeeded_before_it_was_sent(rule, add_card):
    """The email is written from the renewal as it was when the decline was recorded, not as it is
    when the email task runs (by then the retry may have succeeded and the date is gone)."""
    import zoneinfo

    from django.utils import timezone, translation

    from accounts.locale_format import format_datetime
    from renewals.services import charging, claims, operator

    from .conftest import send_owed_emails
    from .test_charging import DECLINING_CARD, claimed

    add_card(DECLINING_CARD)
    now = timezone.now()
    renewal = charging.charge_renewal(renewal_id=claimed(rule, now).pk, now=now)
    assert renewal.status == Renewal.Status.RETRY_SCHEDULED
    retry_at = renewal.next_attempt_at
    add_card()  # a good card as the new default; the operator retries at once, and it is paid
    assert operator.retry_now(renewal_id=renewal.pk, now=now)
    claims.claim_due_renewals(now=now, renewal_ids=[renewal.pk])
    assert charging.charge_renewal(renewal_id=renewal.pk, now=now).status == Renewal.Status.SUCCEEDED
    send_owed_emails()
    retry_email, success_email = mail.outbox
    with translation.override("en"), timezone.override(zoneinfo.ZoneInfo("UTC")):
        when = format_datetime(retry_at)
    assert when and f"We will try again on {when}." in retry_email.body
    assert "try again on ." not in retry_email.body
    assert success_email.subject == f"Line {rule.line.iccid} was renewed"


def test_the_same_renewal_event_written_twice_owes_one_email_and_a_new_save_is_a_new_event(
    customer, line, package, policy
):
    from accounts.models import Notice

    rule = make_rule(line=line, package=package)
    renewal = Renewal.objects.create(
        line=line, rule=rule, package=package, amount_minor=9800, currency="CNY", status=Renewal.Status.RETRY_SCHEDULED
    )
    notifications.notify_later(renewal, notifications.RETRY_SCHEDULED)
    notifications.notify_later(renewal, notifications.RETRY_SCHEDULED)
    assert Notice.objects.filter(kind="renewal_retry_scheduled").count() == 1
    renewal.save()  # the next attempt's decline: another change of the renewal
    notifications.notify_later(renewal, notifications.RETRY_SCHEDULED)
    assert Notice.objects.filter(kind="renewal_retry_scheduled").count() == 2
    assert mail.outbox == []  # owed, not sent: the notice task sends them
