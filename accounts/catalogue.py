"""The public catalogue's reads (docs/catalogue.md): the packages sold as a new eSIM, their
coverage named in the reader's language, and the device-compatibility check against the
maintained list in accounts/data/esim_devices.json."""

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from babel import Locale
from babel.lists import format_list
from django.db.models import QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .locale_format import babel_locale
from .models import Package

DEVICES_FILE = Path(__file__).resolve().parent / "data" / "esim_devices.json"
MAX_QUERY = 60
MAX_MATCHES = 8

# The notes a family's "caveat" names in the data file: what the list cannot promise.
CAVEATS = {
    "apple_china": gettext_lazy(
        "iPhones sold in mainland China have no eSIM; in Hong Kong and Macao only iPhone XS, SE (2020),"
        " 12 mini and 13 mini have one."
    ),
    "samsung_region": gettext_lazy(
        "Some Galaxy models sold in mainland China, Hong Kong, the USA and Korea have no eSIM."
    ),
    "global_version": gettext_lazy("Only the global versions have eSIM; versions sold in mainland China do not."),
    "region": gettext_lazy("Some versions sold in a few regions have no eSIM."),
}


def packages_for_sale() -> QuerySet[Package]:
    """What the plans page lists: on sale and in the catalogue, cheapest first per currency."""
    return Package.objects.filter(active=True, listed=True).order_by("currency", "price_minor", "name")


def coverage_names(package: Package, language: str | None = None) -> str:
    """The package's countries by name in the language (CLDR), in the order the operator wrote them,
    as the language lists them ("China, Hong Kong SAR China, and Japan"; "中国、中国香港特别行政区和日本");
    a code CLDR cannot name is shown as the code."""
    locale = Locale.parse(babel_locale(language))
    names = [locale.territories.get(code, code) for code in package.coverage_codes]
    return format_list(names, locale=locale) if names else ""


@dataclass(frozen=True)
class DeviceFamily:
    brand: str
    first: str
    models: tuple[str, ...]
    caveat: str

    @property
    def label(self) -> str:
        """Like "Apple iPhone XS and later"; a model named after its maker is not named twice ("Xiaomi 12T Pro")."""
        name = self.first if self.first.lower().startswith(self.brand.lower()) else f"{self.brand} {self.first}"
        return _("%(model)s and later") % {"model": name}

    @property
    def caveat_text(self) -> str:
        return str(CAVEATS.get(self.caveat, ""))


@dataclass(frozen=True)
class DeviceMatch:
    family: DeviceFamily
    model: str


@cache
def device_families() -> tuple[DeviceFamily, ...]:
    data = json.loads(DEVICES_FILE.read_text(encoding="utf-8"))
    return tuple(
        DeviceFamily(brand=f["brand"], first=f["first"], models=tuple(f["models"]), caveat=f.get("caveat", ""))
        for f in data["families"]
    )


def _normal(text: str) -> str:
    return re.sub(r"[^0-9a-z+]", "", text.lower())


def find_devices(query: str) -> list[DeviceMatch]:
    """The listed models the customer's words name: the whole name typed ("iPhone 12" also finds
    "iPhone 12 Pro"), or a longer text that contains a model's name ("Apple iPhone 13 mini 128GB").
    Brand and "Galaxy" may be left out. Empty when nothing listed matches."""
    wanted = _normal(query[:MAX_QUERY])
    if len(wanted) < 2:
        return []
    matches = []
    for family in device_families():
        brand = _normal(family.brand)
        for model in family.models:
            name = _normal(model)
            names = {name, brand + name, name.removeprefix("galaxy")}
            if any(n.startswith(wanted) or (len(n) >= 4 and n in wanted) for n in names):
                matches.append(DeviceMatch(family=family, model=model))
    # A name contained in the text wins over a mere prefix: "iphone12pro" is the Pro, not every 12.
    exact = [m for m in matches if _normal(m.model) in wanted or _normal(m.family.brand + m.model) == wanted]
    if exact:
        longest = max(len(_normal(m.model)) for m in exact)
        matches = [m for m in exact if len(_normal(m.model)) == longest]
    return matches[:MAX_MATCHES]


def all_device_models() -> list[str]:
    """Every listed model name, for the form's suggestions (a datalist: no script needed)."""
    return [model for family in device_families() for model in family.models]
