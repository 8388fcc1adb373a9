"""Renewal emails join the one path of customer messages (docs/notifications.md): every
`RenewalNotice` becomes an `accounts.Notice` of kind `renewal_<kind>`: the unsent ones of the last
day still pending (the sender's sweep sends them), older unsent ones failed (the old sweep had
given up on them without a word; now the operations page lists them), the sent ones kept as sent
for the record. Then the old table goes."""

from datetime import timedelta

from django.db import migrations
from django.utils import timezone
from django.urls import NoReverseMatch, reverse

BATCH = 500


def _path(name: str, pk: int, fallback: str) -> str:
    try:
        return reverse(name, args=[pk])
    except NoReverseMatch:
        return fallback


def move_notices(apps, schema_editor):
    given_up_before = timezone.now() - timedelta(days=1)
    RenewalNotice = apps.get_model("renewals", "RenewalNotice")
    Notice = apps.get_model("accounts", "Notice")
    rows = []
    for old in (
        RenewalNotice.objects.select_related("renewal__line", "renewal__package")
        .order_by("id")
        .iterator(chunk_size=BATCH)
    ):
        renewal = old.renewal
        line = renewal.line
        if line.owner_id is None:
            continue
        facts = dict(old.facts or {})
        if not facts:  # rows from before renewals 0009 were rendered from the renewal as it is
            facts = {
                "line_name": line.label or line.iccid,
                "package_name": renewal.package.name,
                "amount_minor": renewal.amount_minor,
                "currency": renewal.currency,
                "status": renewal.status,
                "next_attempt_at": renewal.next_attempt_at.isoformat() if renewal.next_attempt_at else None,
                "suspend_at": renewal.suspend_at.isoformat() if renewal.suspend_at else None,
                "last_failure_code": renewal.last_failure_code,
            }
        facts.setdefault("renewal_id", renewal.pk)
        facts.setdefault(
            "pay_now_path", _path("payments:pay_renewal", renewal.pk, f"/payments/renewals/{renewal.pk}/pay/")
        )
        facts.setdefault("rule_path", _path("renewals:rule", line.pk, f"/renewals/lines/{line.pk}/"))
        rows.append(
            Notice(
                user_id=line.owner_id,
                line_id=line.pk,
                kind=f"renewal_{old.kind}",
                facts=facts,
                dedup_key=f"renewal:{renewal.pk}:{old.kind}:migrated:{old.pk}",
                status="sent" if old.sent_at else ("failed" if old.created_at <= given_up_before else "pending"),
                last_error="" if old.sent_at or old.created_at > given_up_before else "stale: not sent within a day",
                created_at=old.created_at,
                next_attempt_at=old.created_at,
                sent_at=old.sent_at,
            )
        )
        if len(rows) >= BATCH:
            Notice.objects.bulk_create(rows, ignore_conflicts=True)
            rows = []
    Notice.objects.bulk_create(rows, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("renewals", "0010_rule_owner_and_renewal_payer"),
        ("accounts", "0011_customer_notices"),
    ]

    operations = [
        migrations.RunPython(move_notices, migrations.RunPython.noop),
        migrations.DeleteModel(name="RenewalNotice"),
    ]
