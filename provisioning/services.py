"""Every write of provisioning (docs/provisioning.md): the order written with the payment's success,
the worker's steps through ES2+ (DownloadOrder, then ConfirmOrder with release), permanent
failures (refund, operator alert, customer told), the SM-DP+'s notifications, and the operator's
retry, cancel and refund.

Each step is its own transaction and holds the order's row lock (SKIP LOCKED for the worker and
the sweep) while its one ES2+ call is made, so two workers never send the same step; the call's
functionCallIdentifier is derived from the order row, so a step repeated after a crash is the same
call, which the SM-DP+ answers without a second effect."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import Line, User
from accounts.services import apply_package, erasure
from accounts.services import notices as customer_notices
from accounts.services.line_status import terminate_line
from payments.models import Charge
from payments.services import refunds

from . import es2plus
from .models import Es2Call, Profile, ProfileOrder

logger = logging.getLogger(__name__)

ADVANCE_TASK = "provisioning.advance_order"
# After the n-th failed attempt the next waits RETRY_DELAYS[n-1] (the last one repeats): a paid
# order is never dropped for an SM-DP+ that is down; the operator sees it after ALERT_AFTER tries.
RETRY_DELAYS = (
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
)
ALERT_AFTER_ATTEMPTS = 4

READY = "esim_ready"
FAILED = "esim_failed"
REMINDER = "esim_install_reminder"

S = ProfileOrder.Status


class OrderNotChangeable(Exception):
    """The operator's action does not apply to the order in its state."""


# --- the order, written with the payment ----------------------------------------------------------


def order_for_paid_charge(*, charge_id: int, now: datetime) -> ProfileOrder:
    """payments' hook for a paid purchase with no line (payments.outcomes.register_new_line_purchase):
    in the transaction that records the payment's success. One order per charge."""
    charge = Charge.objects.select_related("package").get(pk=charge_id)
    assert charge.package_id is not None
    order, created = ProfileOrder.objects.get_or_create(
        charge=charge,
        defaults={
            "user_id": charge.user_id,
            "package_id": charge.package_id,
            "source": settings.PROVISIONING_PROFILE_SOURCE,
            "created_at": now,
            "next_attempt_at": now,
        },
    )
    if created:
        logger.info("esim_order_created order=%s charge=%s user=%s", order.pk, charge.pk, charge.user_id)
        order_id = order.pk
        transaction.on_commit(lambda: kick(order_id))
    return order


def kick(order_id: int) -> None:
    """Ask a worker to advance the order now; with the broker down, beat's sweep does it."""
    try:
        current_app.send_task(ADVANCE_TASK, args=[order_id], retry=False)
    except Exception as exc:  # kombu raises several connection errors; the row is safe either way
        logger.warning("esim_order_kick_failed order=%s error=%s", order_id, exc)


# --- the worker's steps ----------------------------------------------------------------------------


def advance_order(*, order_id: int, now: datetime | None = None, max_steps: int = 2) -> ProfileOrder:
    """Run the order's next ES2+ steps (at most `max_steps`), each committed before the next."""
    for _step in range(max_steps):
        if not _step_once(order_id=order_id, now=now or timezone.now()):
            break
    return ProfileOrder.objects.get(pk=order_id)


def due_order_ids(*, now: datetime, limit: int = 100) -> list[int]:
    return list(
        ProfileOrder.objects.filter(status__in=ProfileOrder.OPEN, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:limit]
    )


def sweep_orders(*, now: datetime | None = None) -> list[int]:
    """Beat's safety net: open orders whose next attempt is due (a lost kick, a worker killed
    mid-step, a retry's time come). Each resumes from its committed step."""
    now = now or timezone.now()
    ids = due_order_ids(now=now)
    for order_id in ids:
        advance_order(order_id=order_id, now=now)
    return ids


def _ensure_pool_profile(order_id: int, now: datetime) -> bool:
    """Pool mode: reserve an imported ICCID for the order, committed before DownloadOrder names it,
    so a repeated step sends the same ICCID. False: the pool is empty (the order fails)."""
    with transaction.atomic():
        order = ProfileOrder.objects.select_for_update().get(pk=order_id)
        if order.profile_id:
            return True
        profile = (
            Profile.objects.select_for_update(skip_locked=True)
            .filter(status=Profile.Status.AVAILABLE)
            .order_by("imported_at", "id")
            .first()
        )
        if profile is None:
            return False
        profile.status = Profile.Status.ASSIGNED
        profile.assigned_at = now
        profile.save(update_fields=["status", "assigned_at"])
        order.profile = profile
        order.iccid = profile.iccid
        order.save(update_fields=["profile", "iccid"])
    return True


def _step_once(*, order_id: int, now: datetime) -> bool:
    """One step under the order's row lock. True when the order moved on and has another step."""
    order = ProfileOrder.objects.filter(pk=order_id).first()
    if order is None or order.status not in ProfileOrder.OPEN:
        return False
    closed = erasure.is_closed(order.user)
    if order.source == ProfileOrder.Source.POOL and order.status == S.PENDING and not closed:
        if not _ensure_pool_profile(order_id, now):
            with transaction.atomic():
                order = ProfileOrder.objects.select_for_update().get(pk=order_id)
                if order.status in ProfileOrder.OPEN:
                    _fail(order, code="pool_empty", message="no profile left in the imported pool", now=now)
            return False
    with transaction.atomic():
        order = (
            ProfileOrder.objects.select_for_update(skip_locked=True)
            .filter(pk=order_id, status__in=ProfileOrder.OPEN, next_attempt_at__lte=now)
            .first()
        )
        if order is None:
            return False  # another worker has it, or it is not due
        if closed:
            return _cancel_for_closed_account(order, now=now)
        function = "downloadOrder" if order.status == S.PENDING else "confirmOrder"
        exchange = es2plus.Exchange(function=function, function_call_id=order.function_call_id(function), request={})
        try:
            if function == "downloadOrder":
                iccid = es2plus.download_order(
                    function_call_id=exchange.function_call_id,
                    iccid=order.iccid if order.source == ProfileOrder.Source.POOL else "",
                    profile_type=settings.SMDP_PROFILE_TYPE,
                    exchange=exchange,
                )
            else:
                confirmed = es2plus.confirm_order(
                    function_call_id=exchange.function_call_id, iccid=order.iccid, release=True, exchange=exchange
                )
        except es2plus.TransientError as exc:
            _record(order, exchange, "no_answer", exc, now=now)
            _schedule_retry(order, str(exc), now=now)
            return False
        except es2plus.PermanentError as exc:
            _record(order, exchange, "Failed", exc, now=now)
            code = "no_profile" if exc.no_profile else "smdp_refused"
            _fail(order, code=code, message=str(exc), now=now)
            return False
        _record(order, exchange, es2plus.SUCCESS, None, now=now)
        order.attempts = 0
        order.last_error = ""
        if function == "downloadOrder":
            order.iccid = iccid
            order.status = S.DOWNLOAD_ORDERED
            order.download_ordered_at = now
            order.save()
            logger.info("esim_order_download_ordered order=%s iccid=%s", order.pk, iccid)
            return True
        order.matching_id = confirmed.matching_id
        order.smdp_address = confirmed.smdp_address
        order.status = S.RELEASED
        order.released_at = now
        order.line = _new_line(order, now=now)
        order.save()
        customer_notices.owe_notice(
            user_id=order.user_id,
            line_id=order.line_id,
            kind=READY,
            facts={"order_id": order.pk, "package": order.package.name, "activation_code": order.activation_code},
            dedup_key=f"{READY}:{order.pk}",
            now=now,
        )
        logger.info("esim_order_released order=%s iccid=%s line=%s", order.pk, order.iccid, order.line_id)
        return False


def _cancel_for_closed_account(order: ProfileOrder, *, now: datetime) -> bool:
    """The customer closed their account while the order was being placed (docs/provisioning.md,
    "Closed accounts"): no profile is released and no line created for an erased person; a
    profile already ordered is cancelled at the SM-DP+ (retried like any step if it does not
    answer), and the purchase is refunded. Under the order's row lock; no notice (nobody to tell)."""
    if order.status == S.DOWNLOAD_ORDERED and order.iccid:
        exchange = es2plus.Exchange("cancelOrder", order.function_call_id("cancelOrder"), {})
        try:
            es2plus.cancel_order(
                function_call_id=exchange.function_call_id,
                iccid=order.iccid,
                final_status="Unavailable",
                exchange=exchange,
            )
        except es2plus.TransientError as exc:
            _record(order, exchange, "no_answer", exc, now=now)
            _schedule_retry(order, str(exc), now=now)
            return False
        except es2plus.PermanentError as exc:
            _record(order, exchange, "Failed", exc, now=now)  # refused: the operator sees it in the calls
        else:
            _record(order, exchange, es2plus.SUCCESS, None, now=now)
    order.status = S.CANCELLED
    order.cancelled_at = now
    order.last_error = "account closed"
    order.save()
    if order.profile_id:
        Profile.objects.filter(pk=order.profile_id).update(status=Profile.Status.RETIRED)
    _refund(order)
    logger.warning(
        "esim_order_cancelled order=%s charge=%s reason=account_closed: refunding", order.pk, order.charge_id
    )
    return False


def _new_line(order: ProfileOrder, *, now: datetime) -> Line:
    """The customer's line for the released profile, with the package paid for applied (the one
    way money changes a line, docs/invariants.md #7)."""
    line = Line.objects.create(
        owner_id=order.user_id,
        iccid=order.iccid,
        smdp_address=order.smdp_address,
        matching_id=order.matching_id,
        # Named as the customer reads the package (its name in their language); theirs to rename.
        label=order.package.name_in(order.user.language)[:100],
    )
    return apply_package(line=line, package=order.package, now=now)


def _record(
    order: ProfileOrder,
    exchange: es2plus.Exchange,
    outcome: str,
    error: es2plus.Es2Error | None,
    *,
    now: datetime,
    actor: User | None = None,
) -> Es2Call:
    return Es2Call.objects.create(
        order=order,
        function=exchange.function,
        function_call_id=exchange.function_call_id,
        outcome=outcome,
        subject_code=error.subject_code if error else "",
        reason_code=error.reason_code if error else "",
        message=(error.message if error else "")[:500],
        http_status=exchange.http_status,
        request=exchange.request,
        response=exchange.response,
        actor=actor,
        created_at=now,
    )


def _schedule_retry(order: ProfileOrder, error: str, *, now: datetime) -> None:
    order.attempts += 1
    order.last_error = error[:500]
    order.next_attempt_at = now + RETRY_DELAYS[min(order.attempts, len(RETRY_DELAYS)) - 1]
    order.save(update_fields=["attempts", "last_error", "next_attempt_at"])
    log = logger.error if order.attempts >= ALERT_AFTER_ATTEMPTS else logger.warning
    log(
        "esim_order_retry order=%s attempts=%s next=%s error=%s", order.pk, order.attempts, order.next_attempt_at, error
    )


def _fail(order: ProfileOrder, *, code: str, message: str, now: datetime) -> None:
    """For good: the purchase is refunded (kept `refund_due` until the processor confirms, retried
    by payments' sweep), the operator sees it on the operations page, the customer is told."""
    order.status = S.FAILED
    order.failed_at = now
    order.failure_code = code
    order.last_error = message[:500]
    order.save()
    if order.profile_id:
        Profile.objects.filter(pk=order.profile_id).update(status=Profile.Status.RETIRED)
    _refund(order)
    customer_notices.owe_notice(
        user_id=order.user_id,
        line_id=None,
        kind=FAILED,
        facts={
            "order_id": order.pk,
            "package": order.package.name,
            "amount_minor": order.charge.amount_minor,
            "currency": order.charge.currency,
        },
        dedup_key=f"{FAILED}:{order.pk}",
        now=now,
    )
    logger.error(
        "esim_order_failed order=%s charge=%s code=%s: refunding; %s", order.pk, order.charge_id, code, message
    )


def _refund(order: ProfileOrder) -> None:
    """Mark the purchase refund_due in the caller's transaction; refunded after the commit."""
    # What is left after an operator's partial refund goes back too (refund_due_charge reads what
    # the processor already refunded and refunds only the rest).
    updated = Charge.objects.filter(
        pk=order.charge_id,
        status=Charge.Status.SUCCEEDED,
        refunded_minor__lt=F("amount_minor"),
        refund_in_doubt_since__isnull=True,
    ).update(status=Charge.Status.REFUND_DUE, failure_code="esim_not_provisioned")
    if updated:
        charge_id = order.charge_id
        transaction.on_commit(lambda: refunds.refund_due_charge(charge_id=charge_id))


# --- HandleDownloadProgressInfo -----------------------------------------------------------------------

NOTIFICATION_POINTS = {3: "downloaded", 4: "installed", 5: "deleted", 6: "enabled", 7: "disabled"}


class UnknownProfile(Exception):
    pass


def record_notification(*, payload: dict[str, Any], now: datetime | None = None) -> ProfileOrder:
    """Apply one HandleDownloadProgressInfo. Idempotent (a notification's functionCallIdentifier
    is recorded once) and order-proof: steps only move forward, each step's time is set once, and
    the device state follows the latest reported event."""
    now = now or timezone.now()
    iccid = str(payload.get("iccid") or "")
    header = payload.get("header") or {}
    fci = str(header.get("functionCallIdentifier") or "")[:120]
    point = payload.get("notificationPointId")
    status = (payload.get("notificationPointStatus") or {}).get("status", "")
    when = parse_datetime(str(payload.get("timestamp") or "")) or now
    if timezone.is_naive(when):
        when = timezone.make_aware(when, UTC)
    with transaction.atomic():
        order = ProfileOrder.objects.select_for_update().filter(iccid=iccid).order_by("-id").first()
        if order is None:
            raise UnknownProfile(iccid)
        if fci and order.calls.filter(function="handleDownloadProgressInfo", function_call_id=fci).exists():
            return order  # the same notification again: nothing changes
        Es2Call.objects.create(
            order=order,
            function="handleDownloadProgressInfo",
            function_call_id=fci,
            outcome=f"{point}:{status}"[:40],
            request=payload,
            created_at=now,
        )
        event = NOTIFICATION_POINTS.get(point) if isinstance(point, int) else None
        if event is None or status != es2plus.SUCCESS:
            logger.info("esim_notification_noted order=%s point=%s status=%s", order.pk, point, status)
            return order
        if event in ("downloaded", "installed"):
            target = S.DOWNLOADED if event == "downloaded" else S.INSTALLED
            if getattr(order, f"{event}_at") is None:
                setattr(order, f"{event}_at", when)
            if ProfileOrder.RANK.get(order.status, -1) < ProfileOrder.RANK[target] and order.status in (
                S.RELEASED,
                S.DOWNLOADED,
            ):
                order.status = target
        else:
            stamp = f"{event}_at"
            if getattr(order, stamp) is None or getattr(order, stamp) < when:
                setattr(order, stamp, when)
            latest = max(
                (t for t in (order.enabled_at, order.disabled_at, order.deleted_at) if t is not None), default=when
            )
            if order.device_state != "deleted" and when >= latest:
                order.device_state = event
        order.save()
    logger.info("esim_notification order=%s point=%s status=%s order_status=%s", order.pk, point, status, order.status)
    return order


# --- reminders -------------------------------------------------------------------------------------


def send_install_reminders(*, now: datetime | None = None) -> list[int]:
    """One reminder per order ready for longer than PROVISIONING_INSTALL_REMINDER_AFTER and not
    downloaded since."""
    now = now or timezone.now()
    cutoff = now - settings.PROVISIONING_INSTALL_REMINDER_AFTER
    ids = []
    with transaction.atomic():
        due = ProfileOrder.objects.select_for_update(skip_locked=True).filter(
            status=S.RELEASED, released_at__lte=cutoff, reminder_sent_at__isnull=True
        )[:200]
        for order in due:
            order.reminder_sent_at = now
            order.save(update_fields=["reminder_sent_at"])
            customer_notices.owe_notice(
                user_id=order.user_id,
                line_id=order.line_id,
                kind=REMINDER,
                facts={"order_id": order.pk, "package": order.package.name},
                dedup_key=f"{REMINDER}:{order.pk}",
                now=now,
            )
            ids.append(order.pk)
    return ids


# --- the operator --------------------------------------------------------------------------------


def retry_now(*, order_id: int, operator: User, now: datetime | None = None) -> ProfileOrder:
    """An open order's next attempt now (history: an `operator_retry` row)."""
    now = now or timezone.now()
    with transaction.atomic():
        order = ProfileOrder.objects.select_for_update().get(pk=order_id)
        if order.status not in ProfileOrder.OPEN:
            raise OrderNotChangeable(order.status)
        order.next_attempt_at = now
        order.save(update_fields=["next_attempt_at"])
        Es2Call.objects.create(
            order=order, function="operator_retry", function_call_id="", outcome="requested", actor=operator
        )
        transaction.on_commit(lambda: kick(order_id))
    return order


def cancel_and_refund(*, order_id: int, operator: User, now: datetime | None = None) -> ProfileOrder:
    """Cancel an order whose profile was never downloaded: CancelOrder at the SM-DP+ when a profile
    was reserved (the profile retired: its activation code was shown), the line ended, the purchase
    refunded. Refused once the device has downloaded it."""
    now = now or timezone.now()
    with transaction.atomic():
        order = ProfileOrder.objects.select_for_update().get(pk=order_id)
        if order.status not in (S.PENDING, S.DOWNLOAD_ORDERED, S.RELEASED) or order.downloaded_at:
            raise OrderNotChangeable(order.status)
        if order.iccid and order.status != S.PENDING:
            exchange = es2plus.Exchange("cancelOrder", order.function_call_id("cancelOrder"), {})
            try:
                es2plus.cancel_order(
                    function_call_id=exchange.function_call_id,
                    iccid=order.iccid,
                    final_status="Unavailable",
                    exchange=exchange,
                )
            except es2plus.Es2Error as exc:
                _record(order, exchange, "Failed", exc, now=now, actor=operator)
                raise OrderNotChangeable(str(exc)) from exc
            _record(order, exchange, es2plus.SUCCESS, None, now=now, actor=operator)
        order.status = S.CANCELLED
        order.cancelled_at = now
        order.save()
        if order.profile_id:
            Profile.objects.filter(pk=order.profile_id).update(status=Profile.Status.RETIRED)
        _refund(order)
        line_id = order.line_id
    if line_id:
        terminate_line(line_id=line_id, reason=f"eSIM order {order.pk} cancelled", actor=operator, now=now)
    logger.info("esim_order_cancelled order=%s operator=%s", order.pk, operator.pk)
    return order


def resolve_alert(*, order_id: int, now: datetime | None = None) -> None:
    ProfileOrder.objects.filter(pk=order_id, alert_resolved_at__isnull=True).update(
        alert_resolved_at=now or timezone.now()
    )


def import_pool(*, iccids: list[str], profile_type: str = "default", now: datetime | None = None) -> int:
    now = now or timezone.now()
    rows = [Profile(iccid=i.strip(), profile_type=profile_type, imported_at=now) for i in iccids if i.strip()]
    return len(Profile.objects.bulk_create(rows, ignore_conflicts=True))
