"""The line CSV import's owner column: an email or an E.164 phone gives the line to that customer,
who is told by email; an unknown owner is the row's error; no owner imports as before."""

from django.core import mail

from accounts.models import Line
from accounts.tasks import send_notices
from tests.builders import make_user

IMPORT = "/admin/accounts/line/import/"


def test_owners_by_email_and_phone_get_their_lines_and_an_email(finance_client):
    client, _operator = finance_client
    alice = make_user(email="alice@example.com")
    bob = make_user(email="bob@example.com", phone="+8613800138000", language="zh-hans")
    text = (
        "iccid,smdp_address,matching_id,owner\n"
        "89860000000000000001,smdp.example.com,AB-1,ALICE@example.com\n"
        "89860000000000000002,smdp.example.com,AB-2,+86 138 0013 8000\n"
        "89860000000000000003,smdp.example.com,AB-3,\n"
        "89860000000000000004,smdp.example.com,AB-4,nobody@example.com\n"
        "89860000000000000005,smdp.example.com,AB-5,12345\n"
    )
    preview = client.post(IMPORT, {"text": text}).content.decode()
    assert "3 rows will be imported, 2 rows have errors" in preview
    assert "No customer has the email address or phone number nobody@example.com" in preview
    assert "No customer has the email address or phone number 12345" in preview

    done = client.post(IMPORT, {"text": text, "confirm": "yes"})
    assert done.status_code == 200
    owners = dict(Line.objects.values_list("iccid", "owner_id"))
    assert owners == {
        "89860000000000000001": alice.pk,
        "89860000000000000002": bob.pk,
        "89860000000000000003": None,
    }
    assert send_notices.apply().get() == 2
    subjects = {message.to[0]: message.subject for message in mail.outbox}
    assert subjects == {
        "alice@example.com": "A new eSIM was added to your account: 89860000000000000001",
        "bob@example.com": "您的账户已添加新的 eSIM：89860000000000000002",
    }


def test_a_file_without_the_owner_column_imports_as_before(finance_client):
    client, _operator = finance_client
    text = "iccid,smdp_address,matching_id\n89860000000000000001,smdp.example.com,AB-1\n"
    client.post(IMPORT, {"text": text, "confirm": "yes"})
    assert Line.objects.get().owner is None
    assert send_notices.apply().get() == 0 and mail.outbox == []
