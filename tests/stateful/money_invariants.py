"""The money invariants of issue "Money seams", checked against our tables, localstripe's own
lists of PaymentIntents and refunds, and the network outbox. Each check takes a `World` (what one
example of the state machine owns and what the model remembers about it) and raises
AssertionError with a sentence an engineer can act on.

Every check raises from its own line on purpose: hypothesis tells distinct bugs apart by the
line that raised, so one run can report several counterexamples at once.

Frozen terms: `renewal_terms` reads whatever the renewal stores. Today's Renewal keeps
`amount_minor`/`currency`/`package`/`overage_billed_bytes`, but prepare_charge rewrites the
amount on every attempt, so the model's first sight of the renewal is the reference. When the
renewal grows fields for its frozen terms (docs/invariants.md #8), add their names to
FROZEN_TERM_FIELDS and the stored values win.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import stripe
from django.conf import settings

from accounts.models import Line, NetworkCommand
from payments.models import Charge
from renewals.models import Alert, Renewal

# (our name, candidate field names on Renewal, first one present wins). The last candidate is
# today's field; the earlier ones are the names the frozen-terms change is likely to add.
FROZEN_TERM_FIELDS = {
    "amount_minor": ("frozen_amount_minor", "terms_amount_minor", "price_minor"),
    "currency": ("frozen_currency", "terms_currency"),
    "package_id": ("frozen_package_id", "terms_package_id"),
    "overage_billed_bytes": ("frozen_overage_billed_bytes", "terms_overage_bytes", "overage_fee_bytes"),
}


@dataclass
class Terms:
    amount_minor: int
    currency: str
    package_id: int | None
    overage_billed_bytes: int

    def key(self) -> tuple[int, str]:
        return self.amount_minor, self.currency.upper()


@dataclass
class World:
    """What one example owns (its rows are the only ones in the database: each example is rolled
    back) and what the model remembers that the tables do not."""

    line_id: int
    user_ids: list[int]
    customer_ids: set[str]
    # localstripe keeps every example's objects: PaymentIntents after this marker are ours.
    marker_payment_intent: str
    initial_remaining: int
    initial_used: int
    # Bytes the design lets go unbilled: beyond zero under `block`, beyond the cap otherwise
    # ("the customer agreed to the cap only", partner/services/usage.py).
    policy_written_off: int = 0
    operator_suspended: bool = False
    # The operator's resume outranks a payment suspension (docs/invariants.md #10).
    operator_resumed_at: datetime | None = None
    terminated: bool = False
    # Charges that had taken money when the line was terminated, and the highest charge id then.
    paid_before_termination: set[int] = field(default_factory=set)
    last_charge_id_at_termination: int = 0
    # The last beat tick that could reach the processor: the witness of every bound.
    last_tick_at: datetime | None = None
    terms: dict[int, Terms] = field(default_factory=dict)
    # PaymentIntents the customer settled at the bank (3-D Secure answered), and when: from then
    # on only our side is behind, and reconciliation has a bound to catch up.
    settled_at_processor: dict[str, datetime] = field(default_factory=dict)


# --- reading the processor ----------------------------------------------------------------------


@dataclass
class ProcessorView:
    intents: list[dict]
    refunded: dict[str, int]  # PaymentIntent id -> amount refunded at the processor

    def succeeded(self) -> list[dict]:
        return [pi for pi in self.intents if pi["status"] == "succeeded"]

    def net(self, pi: dict) -> int:
        return pi["amount"] - self.refunded.get(pi["id"], 0)


def processor_view(world: World) -> ProcessorView:
    """This example's PaymentIntents and refunds, from localstripe's own lists."""
    key = settings.STRIPE_SECRET_KEY
    intents = []
    for pi in stripe.PaymentIntent.list(
        limit=100, starting_after=world.marker_payment_intent, api_key=key
    ).auto_paging_iter():
        customer = pi.get("customer")
        customer = customer.get("id") if isinstance(customer, dict) else customer
        if customer in world.customer_ids:
            intents.append(pi.to_dict() if hasattr(pi, "to_dict") else dict(pi))
    refunded = {}
    for pi in intents:
        if pi["status"] != "succeeded":
            continue
        total = sum(
            r["amount"]
            for r in stripe.Refund.list(payment_intent=pi["id"], limit=100, api_key=key).auto_paging_iter()
            if r.get("status") in (None, "succeeded", "pending")
        )
        if total:
            refunded[pi["id"]] = total
    return ProcessorView(intents=intents, refunded=refunded)


def _meta(pi: dict, name: str) -> str:
    return str((pi.get("metadata") or {}).get(name, ""))


def renewal_terms(renewal: Renewal, world: World) -> Terms:
    """The terms this renewal froze: stored frozen fields if the renewal has them, else what the
    model saw when the renewal first appeared."""
    names = {f.attname for f in Renewal._meta.concrete_fields}
    stored = {}
    for ours, candidates in FROZEN_TERM_FIELDS.items():
        for candidate in candidates:
            if candidate in names:
                stored[ours] = getattr(renewal, candidate)
                break
    if {"amount_minor", "currency"} <= stored.keys():
        return Terms(
            int(stored["amount_minor"]),
            str(stored["currency"]),
            stored.get("package_id", renewal.package_id),
            int(stored.get("overage_billed_bytes", renewal.overage_billed_bytes)),
        )
    return world.terms[renewal.pk]


def remember_terms(world: World) -> None:
    """First sight of a renewal: its terms as it stands (before any attempt, or as its first
    attempt charged them when it was opened and charged in one tick)."""
    for renewal in Renewal.objects.filter(line_id=world.line_id).exclude(pk__in=list(world.terms)):
        first = Charge.objects.filter(renewal=renewal).order_by("attempt", "id").first()
        if first is not None:
            world.terms[renewal.pk] = Terms(
                first.amount_minor, first.currency, first.package_id, renewal.overage_billed_bytes
            )
        else:
            world.terms[renewal.pk] = Terms(
                renewal.amount_minor, renewal.currency, renewal.package_id, renewal.overage_billed_bytes
            )


def _alerted(*, line_id: int, renewal_id: int | None = None) -> bool:
    alerts = Alert.objects.filter(line_id=line_id)
    if renewal_id is not None:
        return (
            alerts.filter(renewal_id=renewal_id).exists() or alerts.filter(kind=Alert.Kind.UNRECONCILED_CHARGE).exists()
        )
    return alerts.filter(kind=Alert.Kind.UNRECONCILED_CHARGE).exists()


# --- 1. at most one kept success per renewal -------------------------------------------------------


def check_one_kept_success_per_renewal(world: World, view: ProcessorView) -> None:
    by_renewal: dict[str, list[dict]] = defaultdict(list)
    for pi in view.succeeded():
        if _meta(pi, "renewal_id"):
            by_renewal[_meta(pi, "renewal_id")].append(pi)
    for renewal_id, intents in by_renewal.items():
        kept = [pi["id"] for pi in intents if view.net(pi) > 0]
        assert len(kept) <= 1, (
            f"renewal {renewal_id}: {len(kept)} successful PaymentIntents kept at the processor {kept} (at most one; "
            f"any extra must be refunded)"
        )
        if len(intents) > 1:
            assert _alerted(line_id=world.line_id, renewal_id=int(renewal_id)), (
                f"renewal {renewal_id} was paid {len(intents)} times at the processor and no operator alert says so"
            )


# --- 2. ledger = processor, per currency, net of refunds ---------------------------------------------


def check_ledger_matches_processor(world: World, view: ProcessorView) -> None:
    charges = {c.pk: c for c in Charge.objects.filter(user_id__in=world.user_ids)}
    in_flight = {pk for pk, c in charges.items() if c.status in (Charge.Status.PENDING, Charge.Status.REQUIRES_ACTION)}
    processor: Counter = Counter()
    for pi in view.succeeded():
        charge_id = _meta(pi, "charge_id")
        if charge_id.isdigit() and int(charge_id) in in_flight:
            continue  # paid at the processor, not told to us yet: the bound check watches these
        processor[pi["currency"].upper()] += view.net(pi)
    ledger: Counter = Counter()
    for charge in charges.values():
        # refund_due: money taken for a purpose that no longer wants it, held until the refund is
        # made (the payments sweep retries it): on the ledger all the same.
        if charge.status in (*Charge.MONEY_TAKEN, Charge.Status.REFUND_DUE):
            ledger[charge.currency.upper()] += charge.amount_minor - charge.refunded_minor
    processor, ledger = +processor, +ledger  # drop zero currencies
    assert dict(ledger) == dict(processor), (
        f"ledger {dict(ledger)} != processor {dict(processor)} (per currency, net of refunds; charges "
        f"{[(c.pk, c.status, c.amount_minor, c.currency, c.refunded_minor, c.payment_intent_id) for c in charges.values()]}; "
        f"succeeded intents {[(pi['id'], pi['amount'], pi['currency'], _meta(pi, 'charge_id')) for pi in view.succeeded()]})"
    )


# --- 3. the network follows the database -------------------------------------------------------------


def network_state(line_id: int) -> tuple[bool, bool]:
    """(suspended, data blocked) as the partner holds them after every command we wrote, in order.
    suspend/resume and block_data/unblock_data are independent switches."""
    suspended = blocked = False
    for command in NetworkCommand.objects.filter(line_id=line_id).order_by("id").values_list("command", flat=True):
        if command == NetworkCommand.Command.SUSPEND:
            suspended = True
        elif command == NetworkCommand.Command.RESUME:
            suspended = False
        elif command == NetworkCommand.Command.BLOCK_DATA:
            blocked = True
        elif command == NetworkCommand.Command.UNBLOCK_DATA:
            blocked = False
    return suspended, blocked


def check_network_matches_line(world: World) -> None:
    line = Line.objects.get(pk=world.line_id)
    suspended, blocked = network_state(line.pk)
    commands = list(NetworkCommand.objects.filter(line_id=line.pk).order_by("id").values_list("command", flat=True))
    if line.status == Line.Status.SUSPENDED:
        assert suspended, f"line is suspended in the database, but the network was last told {commands}"
    elif line.status == Line.Status.ACTIVE:
        assert not suspended and not blocked, (
            f"line is active in the database, but the network holds it "
            f"{'suspended' if suspended else 'data-blocked'} after {commands}"
        )
    elif line.status == Line.Status.DATA_EXHAUSTED:
        assert not suspended and blocked, f"line is out of data in the database, but the network was told {commands}"
    elif line.status == Line.Status.EXPIRED:
        assert not suspended, f"line is expired (not suspended) in the database, but the network was told {commands}"
    elif line.status == Line.Status.TERMINATED:
        assert suspended, f"line is terminated in the database, but the network was last told {commands}"


# --- 4. a paid cycle leaves the line usable; an unpaid one ends suspended ----------------------------


def _money_taken_after(line_id: int, when: datetime | None) -> bool:
    taken = Charge.objects.filter(line_id=line_id, status__in=Charge.MONEY_TAKEN)
    return taken.filter(settled_at__gt=when).exists() if when else taken.exists()


def check_line_usable_when_paid(world: World) -> None:
    line = Line.objects.get(pk=world.line_id)
    if world.operator_suspended:
        assert line.status in (Line.Status.SUSPENDED, Line.Status.TERMINATED), (
            f"the operator suspended the line; it is {line.status} now (operator suspension > payment state)"
        )
        return
    if world.terminated:
        assert line.status == Line.Status.TERMINATED, f"the line was terminated; it is {line.status} now"
        return
    latest = Renewal.objects.filter(line_id=line.pk).order_by("-created_at", "-id").first()
    if line.status == Line.Status.SUSPENDED:
        # Failed, or given one more attempt (a new method, the operator's retry) while still unpaid.
        unpaid = (
            latest is not None
            and latest.line_suspended_at is not None
            and latest.status in (Renewal.Status.FAILED, *Renewal.OPEN)
        )
        assert unpaid, (
            f"line suspended although no unpaid cycle explains it (latest renewal: "
            f"{latest and (latest.pk, latest.status, latest.line_suspended_at)})"
        )
        assert not _money_taken_after(line.pk, latest.line_suspended_at), (
            f"line still suspended after the customer paid (renewal {latest.pk} suspended it at {latest.line_suspended_at})"
        )
    operator_resumed_since = (
        world.operator_resumed_at is not None
        and latest is not None
        and latest.completed_at is not None
        and world.operator_resumed_at >= latest.completed_at
    )
    if (
        latest is not None
        and latest.status == Renewal.Status.FAILED
        and latest.suspend_at
        and world.last_tick_at
        and latest.suspend_at < world.last_tick_at
        and not _money_taken_after(line.pk, latest.completed_at)
        and not operator_resumed_since
    ):
        assert line.status == Line.Status.SUSPENDED, (
            f"renewal {latest.pk} failed (suspend at {latest.suspend_at}), a tick ran at {world.last_tick_at}, "
            f"the line is {line.status}"
        )


# --- 5. bytes conservation and frozen terms ----------------------------------------------------------


def check_bytes_conserved(world: World) -> None:
    """used = granted + billed + still owed (docs/invariants.md #9), with the design's own
    write-off of usage beyond the cap / beyond zero under `block` kept apart."""
    line = Line.objects.get(pk=world.line_id)
    used = line.data_used_bytes - world.initial_used
    granted = 0
    billed = 0
    taken = Charge.objects.filter(line_id=line.pk, status__in=Charge.MONEY_TAKEN)
    if world.terminated:  # nothing is applied to a terminated line (LineTerminated)
        taken = taken.filter(pk__in=world.paid_before_termination)
    for charge in taken.select_related("package", "renewal"):
        package = charge.renewal.package if charge.renewal_id else charge.package
        granted += package.data_allowance_bytes
        if charge.renewal_id:
            billed += charge.renewal.overage_billed_bytes
    owed = line.overage_bytes
    consumed = world.initial_remaining + granted - line.data_remaining_bytes
    assert used - world.policy_written_off == consumed + billed + owed, (
        f"bytes not conserved: used {used} - written off by policy {world.policy_written_off} != from allowances "
        f"{consumed} + billed {billed} + still owed {owed} (difference "
        f"{used - world.policy_written_off - consumed - billed - owed} bytes)"
    )


def check_charges_match_frozen_terms(world: World, view: ProcessorView) -> None:
    for renewal in Renewal.objects.filter(line_id=world.line_id):
        terms = renewal_terms(renewal, world)
        for charge in Charge.objects.filter(renewal=renewal).order_by("attempt"):
            assert (charge.amount_minor, charge.currency.upper()) == terms.key(), (
                f"renewal {renewal.pk} froze {terms.key()}, attempt {charge.attempt} (charge {charge.pk}) charged "
                f"{(charge.amount_minor, charge.currency)}"
            )
    for pi in view.intents:
        renewal_id = _meta(pi, "renewal_id")
        if renewal_id.isdigit() and int(renewal_id) in world.terms:
            renewal = Renewal.objects.get(pk=int(renewal_id))
            assert (pi["amount"], pi["currency"].upper()) == renewal_terms(renewal, world).key(), (
                f"PaymentIntent {pi['id']} of renewal {renewal_id} is for {(pi['amount'], pi['currency'])}, "
                f"the renewal froze {renewal_terms(renewal, world).key()}"
            )


# --- 6. nothing stays open past its bound without an alert -------------------------------------------


def check_bounds(world: World, view: ProcessorView) -> None:
    tick = world.last_tick_at
    if tick is None:
        return
    from datetime import timedelta

    renewal_reconcile = getattr(settings, "RENEWALS_RECONCILE_AFTER", timedelta(minutes=10))
    for renewal in Renewal.objects.filter(line_id=world.line_id, status__in=Renewal.OPEN):
        if _alerted(line_id=world.line_id, renewal_id=renewal.pk):
            continue
        if renewal.status in Renewal.CLAIMABLE:
            assert renewal.next_attempt_at is None or renewal.next_attempt_at >= tick, (
                f"renewal {renewal.pk} {renewal.status} since {renewal.next_attempt_at}, still not attempted after the tick at {tick}"
            )
        elif renewal.status == Renewal.Status.REQUIRES_ACTION:
            assert renewal.suspend_at is None or renewal.suspend_at >= tick, (
                f"renewal {renewal.pk} waits for 3-D Secure past its window ({renewal.suspend_at}; tick at {tick})"
            )
    for charge in Charge.objects.filter(line_id=world.line_id, status=Charge.Status.PENDING):
        after = renewal_reconcile if charge.renewal_id else settings.PAYMENTS_RECONCILE_AFTER
        assert (
            charge.sent_at is None
            or charge.sent_at + after >= tick
            or _alerted(line_id=world.line_id, renewal_id=charge.renewal_id)
        ), f"charge {charge.pk} pending since {charge.sent_at}, not reconciled by the tick at {tick}"
    waiting = (
        Charge.objects.filter(line_id=world.line_id, status=Charge.Status.REQUIRES_ACTION, renewal__isnull=False)
        .exclude(renewal__status__in=[Renewal.Status.REQUIRES_ACTION, Renewal.Status.CHARGING])
        .select_related("renewal")
    )
    for charge in waiting:
        renewal = charge.renewal
        assert (
            renewal.completed_at is None
            or renewal.completed_at >= tick
            or _alerted(line_id=world.line_id, renewal_id=None)
        ), (
            f"charge {charge.pk} still waits for 3-D Secure although renewal {renewal.pk} is {renewal.status} since "
            f"{renewal.completed_at} (tick at {tick})"
        )
    owed_back = list(
        Charge.objects.filter(
            user_id__in=world.user_ids, status=Charge.Status.REFUND_DUE, settled_at__lt=tick
        ).values_list("pk", "failure_code")
    )
    assert not owed_back, f"charges {owed_back} still refund_due after the payments sweep of the tick at {tick}"
    # Paid at the processor (the customer answered the bank), still open on our ledger: the
    # return page or the webhook may be lost, reconciliation must catch up within its window.
    charges = {
        str(c.pk): c
        for c in Charge.objects.filter(
            user_id__in=world.user_ids, status__in=[Charge.Status.PENDING, Charge.Status.REQUIRES_ACTION]
        )
    }
    window = max(renewal_reconcile, settings.PAYMENTS_RECONCILE_AFTER)
    for pi in view.intents:
        charge = charges.get(_meta(pi, "charge_id"))
        settled = world.settled_at_processor.get(pi["id"])
        if charge is None or settled is None or pi["status"] != "succeeded":
            continue
        assert settled + window >= tick or _alerted(line_id=world.line_id, renewal_id=charge.renewal_id), (
            f"PaymentIntent {pi['id']} is {pi['status']} at the processor since {settled}; charge {charge.pk} "
            f"({charge.purpose}) is still {charge.status} after the tick at {tick}"
        )
    # An intent still open at the processor for a cycle that is over can still take money.
    closed = {
        str(pk)
        for pk in Renewal.objects.filter(line_id=world.line_id)
        .exclude(status__in=Renewal.OPEN)
        .values_list("pk", flat=True)
    }
    for pi in view.intents:
        if pi["status"] in ("requires_action", "requires_confirmation") and _meta(pi, "renewal_id") in closed:
            renewal = Renewal.objects.get(pk=int(_meta(pi, "renewal_id")))
            assert renewal.completed_at is None or renewal.completed_at >= tick, (
                f"renewal {renewal.pk} is {renewal.status} since {renewal.completed_at}, but its PaymentIntent "
                f"{pi['id']} is still open at the processor after the tick at {tick}"
            )


# --- 7. pay-now never moves the retry schedule -------------------------------------------------------


def schedule_of(renewal: Renewal | None) -> tuple | None:
    if renewal is None:
        return None
    return renewal.status, renewal.next_attempt_at, renewal.failures, renewal.suspend_at


def check_declined_pay_now_left_the_cycle(*, before: tuple | None, renewal_id: int, new_charge_ids: list[int]) -> None:
    """Checked around one pay-now step (a transition, not a state): a pay-now the bank declined
    leaves the cycle where it was (docs/invariants.md #11)."""
    declined = list(
        Charge.objects.filter(pk__in=new_charge_ids, renewal_id=renewal_id, status=Charge.Status.FAILED).values_list(
            "pk", "failure_code"
        )
    )
    if not declined or before is None:
        return
    after = schedule_of(Renewal.objects.get(pk=renewal_id))
    assert after == before, (
        f"a declined pay-now {declined} moved renewal {renewal_id}'s cycle: (status, next attempt, failures, suspend at) "
        f"{before} -> {after}"
    )


# --- 8. termination ------------------------------------------------------------------------------------


def check_termination(world: World) -> None:
    if not world.terminated:
        return
    late = list(
        Charge.objects.filter(
            line_id=world.line_id, purpose=Charge.Purpose.RENEWAL, pk__gt=world.last_charge_id_at_termination
        ).values_list("pk", "status")
    )
    assert not late, f"renewal attempts sent for a terminated line: {late}"
    for charge in Charge.objects.filter(line_id=world.line_id, status=Charge.Status.SUCCEEDED).exclude(
        pk__in=world.paid_before_termination
    ):
        raise AssertionError(f"charge {charge.pk} took money for a terminated line and was not refunded")
    # refund_due: the refund is owed and the payments sweep makes it; refunded: made. Either needs an alert.
    paid_after = Charge.objects.filter(
        line_id=world.line_id, status__in=(Charge.Status.REFUNDED, Charge.Status.REFUND_DUE)
    ).exclude(pk__in=world.paid_before_termination)
    if paid_after.exists():
        assert _alerted(line_id=world.line_id) or Alert.objects.filter(line_id=world.line_id).exists(), (
            "a success on a terminated line was refunded without an operator alert"
        )


ALL_CHECKS = (
    "one_kept_success_per_renewal",
    "ledger_matches_processor",
    "network_matches_line",
    "line_usable_when_paid",
    "bytes_conserved",
    "charges_match_frozen_terms",
    "bounds",
    "termination",
)
