"""Phone numbers as customers type them: parsed with `phonenumbers` in the region of the page's
language (zh-Hans → CN, so "138 0013 8000" is enough), stored in E.164 ("+8613800138000").
The language → region map and the fallback are settings (docs/sign-up.md)."""

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import translation
from django.utils.translation import gettext as _


def region_for_language(language: str | None = None) -> str:
    """The region a number without a country code is read in: the active language's market."""
    language = (language or translation.get_language() or settings.LANGUAGE_CODE).lower()
    regions: dict[str, str] = settings.PHONE_REGION_BY_LANGUAGE
    return regions.get(language, settings.PHONE_DEFAULT_REGION)


def example_number(region: str) -> str:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL) if example else ""


def to_e164(value: str, *, region: str | None = None) -> str:
    """'138 0013 8000' (region CN) or '+86 138-0013-8000' → '+8613800138000'; ValidationError
    with a sentence in the active language otherwise."""
    region = region or region_for_language()
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise ValidationError(
            _(
                "This is not a valid mobile number. Type it as you would dial it at home, "
                "for example %(example)s, or start with + and the country code (+%(country_code)s)."
            )
            % {
                "example": example_number(region),
                "country_code": phonenumbers.country_code_for_region(region),
            },
            code="invalid_phone",
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def looks_like_phone(value: str) -> bool:
    """A login name that is not an email: digits, spaces, + - ( ) only."""
    stripped = value.strip()
    return bool(stripped) and "@" not in stripped and all(c.isdigit() or c in "+-() ." for c in stripped)
