"""An ICCID is ASCII digits only, wherever one comes in: a full-width or other script's digits
would make a twin line that the partner's usage records (ASCII) can never match."""

import pytest
from django.core.exceptions import ValidationError

from accounts.models import Line, UsageRecord
from accounts.services import line_import
from tests.partner.helpers import signed_post

ASCII = "8986" + "0" * 14 + "12"
FULL_WIDTH = ASCII.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
ARABIC_INDIC = ASCII.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))


@pytest.mark.parametrize("iccid", [FULL_WIDTH, ARABIC_INDIC, ASCII + "\n"])
def test_a_line_with_non_ascii_digits_in_its_iccid_does_not_validate(db, iccid):
    line = Line(iccid=iccid, smdp_address="smdp.example.com", matching_id="MATCH-1")
    with pytest.raises(ValidationError) as error:
        line.full_clean()
    assert "iccid" in error.value.message_dict


def test_an_ascii_iccid_validates(db):
    Line(iccid=ASCII, smdp_address="smdp.example.com", matching_id="MATCH-1").full_clean()


@pytest.mark.parametrize("iccid", [FULL_WIDTH, ARABIC_INDIC])
def test_the_csv_import_refuses_non_ascii_digits(db, iccid):
    [row] = line_import.parse(f"iccid,smdp_address,matching_id\n{iccid},smdp.example.com,MATCH-1\n")
    assert not row.ok


@pytest.mark.parametrize("iccid", [FULL_WIDTH, ARABIC_INDIC])
def test_the_partner_api_refuses_a_record_with_non_ascii_digits(client, line, iccid):
    body = {
        "records": [
            {"id": "r1", "iccid": iccid, "bytes": 1, "start": "2026-11-01T10:00:00Z", "end": "2026-11-01T10:05:00Z"}
        ]
    }
    response = signed_post(client, body)
    assert "iccid must be a string of 18 to 20 digits" in response.content.decode()
    assert not UsageRecord.objects.exists()
