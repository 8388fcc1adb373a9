"""English date formats: a 24-hour clock, so a time never ends in "p.m." and a sentence that ends
with a date does not end in two full stops ("we will try again on Nov. 24, 2026, 19:02.")."""

DATETIME_FORMAT = "N j, Y, H:i"
SHORT_DATETIME_FORMAT = "m/d/Y H:i"
TIME_FORMAT = "H:i"
