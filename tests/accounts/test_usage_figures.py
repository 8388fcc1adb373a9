"""The figures a customer sees agree: the account page's "% left" and the usage notice's "% used"
come from one function (Line.data_used_percent), each figure names its period, and the notice says
what auto-renewal will do when it is on (and offers it when it is off). docs/pages.md."""

from django.urls import reverse
from django.utils import timezone

from accounts.models import Line, Notice
from accounts.services import notices
from tests.builders import GB, MB, make_line, make_package, make_rule, make_user


def usage_notice_for(line) -> str:
    notices.owe_usage_notices(levels={line.pk: 90}, now=timezone.now())
    notice = Notice.objects.get(line=line, kind="usage")
    _language, subject, body = notices.render(notice)
    return subject + "\n" + body


def test_page_percent_left_and_notice_percent_used_add_up_to_100(client, db):
    user = make_user()
    package = make_package(data_allowance_bytes=2 * GB)
    line = make_line(owner=user, package=package, data_remaining_bytes=124 * MB, data_used_bytes=2 * GB - 124 * MB)
    client.force_login(user)
    page = client.get(reverse("accounts:home")).content.decode()
    mail = usage_notice_for(line)
    assert "has used 93% of its data: 124 MB of 2 GB left" in mail
    assert "7% of this package&#x27;s data is left" in page or "7% of this package's data is left" in page
    assert "Used in this package" in page and "last 30 days" in page


def test_notice_with_auto_renewal_on_says_when_it_renews_not_turn_it_on(db):
    package = make_package()
    line = make_line(owner=make_user(), package=package, data_remaining_bytes=600 * MB)
    make_rule(line=line, package=package, trigger_data_below_mb=500)  # the database copies the trigger
    mail = usage_notice_for(Line.objects.get(pk=line.pk))
    assert "Auto-renewal is on: when 500 MB or less is left, we renew your package automatically" in mail
    assert "turn on auto-renewal" not in mail


def test_notice_with_auto_renewal_off_offers_it(db):
    line = make_line(owner=make_user(), package=make_package(), data_remaining_bytes=600 * MB)
    assert "turn on auto-renewal" in usage_notice_for(line)
