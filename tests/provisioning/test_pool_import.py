"""The profile pool's CSV import in the admin (docs/provisioning.md, "Profiles"): a preview with
per-row errors, the good rows added with history, and a pool-mode order then takes one of them."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import ChangeRecord
from payments.services import on_session
from provisioning import services
from provisioning.models import Profile, ProfileOrder
from tests.console.conftest import admin_client_for

IMPORT = "/admin/provisioning/profile/import/"
CHANGELIST = "/admin/provisioning/profile/"


def upload(client, text: str, **headers):
    file = SimpleUploadedFile("pool.csv", text.encode(), content_type="text/csv")
    return client.post(IMPORT, {"file": file}, **headers)


@pytest.mark.django_db(transaction=True)
def test_imported_profiles_are_what_a_pool_mode_order_takes(smdp, customer, package, card, settings):
    client, operator = admin_client_for("finance")
    assert IMPORT in client.get(CHANGELIST).content.decode()
    text = "iccid,profile_type\n8999000000000000011,travel\n8999000000000000012,\n"

    preview = upload(client, text)
    assert "2 rows will be imported, 0 rows have errors" in preview.content.decode()
    assert not Profile.objects.exists()  # the preview writes nothing
    done = client.post(IMPORT, {"text": text, "confirm": "yes"})

    assert done.status_code == 302 and done["Location"] == CHANGELIST
    assert sorted(Profile.objects.values_list("iccid", "profile_type", "status")) == [
        ("8999000000000000011", "travel", "available"),
        ("8999000000000000012", "default", "available"),
    ]
    assert ChangeRecord.objects.filter(action="imported", actor=operator).count() == 2

    settings.PROVISIONING_PROFILE_SOURCE = "pool"
    smdp.post("/admin/pool", {"iccids": ["8999000000000000011", "8999000000000000012"]})
    charge = on_session.purchase_new_line(user=customer, package=package, payment_method_id=card.id)
    order = services.advance_order(order_id=ProfileOrder.objects.get(charge=charge).pk)
    assert order.status == ProfileOrder.Status.RELEASED
    assert order.iccid == "8999000000000000011"
    assert Profile.objects.get(iccid=order.iccid).status == Profile.Status.ASSIGNED


@pytest.mark.django_db
def test_bad_and_duplicate_rows_are_reported_by_row_and_left_out():
    client, _operator = admin_client_for("finance")
    services.import_pool(iccids=["8999000000000000021"])
    text = (
        "profile_type,iccid\n"  # columns by name, in any order
        "default,8999000000000000022\n"
        ",1234\n"
        "default,89990000000000000２3\n"  # a non-ASCII digit
        "default,8999000000000000021\n"
        "default,8999000000000000022\n"
        "bad type!,8999000000000000024\n"
    )
    page = upload(client, text).content.decode()
    assert "1 rows will be imported, 5 rows have errors" in page
    assert page.count("An ICCID is 18 to 20 digits.") == 2
    assert "This ICCID is already in the pool." in page and "This ICCID appears twice in the file." in page
    assert "A profile type is up to 64 letters" in page
    assert "<td>6</td>" in page  # the row number in the file, header = 1

    done = client.post(IMPORT, {"text": text, "confirm": "yes"})
    assert done.status_code == 200 and "5 rows were not imported" in done.content.decode()
    assert sorted(Profile.objects.values_list("iccid", flat=True)) == ["8999000000000000021", "8999000000000000022"]


@pytest.mark.django_db
def test_a_file_without_an_iccid_column_is_a_form_error():
    client, _operator = admin_client_for("finance")
    response = upload(client, "number\n8999000000000000031\n")
    assert response.status_code == 200 and "Missing columns: iccid." in response.content.decode()
    assert not Profile.objects.exists()


@pytest.mark.django_db
def test_staff_without_the_import_permission_get_403_and_no_link():
    client, _operator = admin_client_for("support")
    assert client.get(IMPORT).status_code == 403
    assert client.post(IMPORT, {"text": "iccid\n8999000000000000041\n", "confirm": "yes"}).status_code == 403
    assert not Profile.objects.exists()


@pytest.mark.django_db
def test_anonymous_is_sent_to_login(client):
    response = client.get(IMPORT)
    assert response.status_code == 302 and "login" in response["Location"]


@pytest.mark.django_db
def test_the_import_page_and_its_errors_in_chinese():
    client, operator = admin_client_for("finance")
    operator.language = "zh-hans"
    operator.save(update_fields=["language"])
    page = upload(client, "iccid\n1234\n", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "从 CSV 导入配置文件" in page and "配置文件类型" in page and "ICCID 为 18 到 20 位数字" in page
