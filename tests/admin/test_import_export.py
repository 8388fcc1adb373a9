"""Line CSV import: a preview with per-row errors, then the good rows imported and the bad reported."""
import csv
import io

from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import ChangeRecord, Line
from tests.admin.factories import make_charge
from tests.factories import make_line, make_package

IMPORT = "/admin/accounts/line/import/"


def test_import_previews_then_imports_good_rows_and_reports_bad(finance_client, customer):
    client, user = finance_client
    package = make_package(name="Travel 5GB")
    existing = make_line(owner=customer)
    text = (
        "iccid,smdp_address,matching_id,package\n"
        "89860000000000000001,smdp.example.com,AB-1,Travel 5GB\n"
        "89860000000000000002,smdp.example.com,AB-2,\n"
        "1234,smdp.example.com,AB-3,\n"
        f"{existing.iccid},smdp.example.com,AB-4,\n"
        "89860000000000000005,http://bad/,AB-5,\n"
        "89860000000000000006,smdp.example.com,AB-6,No such package\n"
        "89860000000000000002,smdp.example.com,AB-7,\n"
    )
    preview = client.post(IMPORT, {"file": SimpleUploadedFile("lines.csv", text.encode(), content_type="text/csv")})
    page = preview.content.decode()
    assert preview.status_code == 200
    assert "2 rows will be imported, 5 rows have errors" in page
    assert "An ICCID is 18 to 20 digits." in page and "already imported" in page and "appears twice" in page
    assert Line.objects.count() == 1  # nothing written by the preview

    done = client.post(IMPORT, {"text": text, "confirm": "yes"})
    assert done.status_code == 200 and "5 rows were not imported" in done.content.decode()
    imported = Line.objects.exclude(pk=existing.pk).order_by("iccid")
    assert [(l.iccid, l.package_id) for l in imported] == [("89860000000000000001", package.pk), ("89860000000000000002", None)]
    assert ChangeRecord.objects.filter(action="imported", actor=user).count() == 2


def test_import_of_a_file_without_the_columns_is_a_form_error(finance_client):
    client, _user = finance_client
    response = client.post(IMPORT, {"file": SimpleUploadedFile("x.csv", b"\xff\xfe not csv", content_type="text/csv")})
    assert response.status_code == 200 and "UTF-8" in response.content.decode()
    response = client.post(IMPORT, {"file": SimpleUploadedFile("x.csv", b"a,b\n1,2\n", content_type="text/csv")})
    assert response.status_code == 200 and "Missing columns" in response.content.decode()


def test_support_may_not_import(support_client):
    client, _user = support_client
    assert client.get(IMPORT).status_code == 403


def test_export_charges_formats_money_at_the_edge(support_client, customer, line, package):
    client, _user = support_client
    charge = make_charge(user=customer, line=line, package=package, amount_minor=123456, currency="CNY", status="succeeded")
    response = client.post("/admin/payments/charge/", {"action": "export_charges_csv", "_selected_action": [charge.pk], "index": 0})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[1][6:9] == ["1234.56", "0.00", "CNY"]


def test_export_lines_and_customers(support_client, customer, line):
    client, _user = support_client
    lines = client.post("/admin/accounts/line/", {"action": "export_lines_csv", "_selected_action": [line.pk], "index": 0})
    assert line.iccid in lines.content.decode()
    users = client.post("/admin/accounts/user/", {"action": "export_customers_csv", "_selected_action": [customer.pk], "index": 0})
    assert "alice@example.com" in users.content.decode()
