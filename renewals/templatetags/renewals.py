"""Template helpers for renewals: money from minor units, each line's current state (the banner
with its one action, and whether auto-renewal is on). docs/pages.md."""

from django import template
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from payments.money import format_money

from .. import selectors
from ..notifications import pay_now_path

register = template.Library()


@register.filter
def money(amount_minor, currency: str) -> str:
    if amount_minor is None:
        return ""
    return format_money(amount_minor, currency)


@register.simple_tag
def line_states(user, line=None, lines=None) -> dict:
    """`{% line_states user as states %}`, one line's (`{% line_states user line as states %}`) or
    those the view read (`lines=lines`): LineState by line id."""
    return selectors.line_states_for_user(user, line=line, lines=lines)


@register.filter
def state_of(states: dict, line_id: int):
    return states.get(line_id) if states else None


def _action(situation: selectors.Situation, line) -> tuple[str, str]:
    """The one link that settles a situation, and its label."""
    kind = situation.kind
    if situation.renewal is not None and kind in ("suspended_unpaid", "retry_scheduled", "renewal_failed"):
        return pay_now_path(situation.renewal), _("Pay now")
    if situation.renewal is not None and kind == "needs_authentication":
        return pay_now_path(situation.renewal), _("Confirm payment")
    if situation.renewal is not None and kind == "needs_method":
        return reverse("payments:methods") + "?" + urlencode({"next": pay_now_path(situation.renewal)}), _("Add a card")
    if situation.charge is not None and kind == "purchase_needs_authentication":
        return reverse("payments:authenticate", args=[situation.charge.pk]), _("Confirm payment")
    if kind == "out_of_data":
        return reverse("payments:buy", args=[line.pk]), _("Buy data")
    if kind == "expired":
        return reverse("payments:buy", args=[line.pk]), _("Buy a package")
    return "", ""


@register.inclusion_tag("renewals/_banners.html")
def line_banner(state):
    """`{% line_banner state %}`: the line's one banner, if its situation needs saying."""
    situation = state.situation if state is not None else None
    action_url, action_label = _action(situation, state.line) if situation is not None else ("", "")
    return {"state": state, "situation": situation, "action_url": action_url, "action_label": action_label}


@register.inclusion_tag("renewals/_auto_renewal_state.html")
def auto_renewal_state(state):
    """`{% auto_renewal_state state %}`: "Auto-renewal: on, with Visa •••• 4242, expires 12/30"."""
    return {"state": state}
