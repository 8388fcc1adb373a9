"""One dispatcher pass in the foreground, for operators and tests: prints what it did."""

from django.core.management.base import BaseCommand
from django.utils import timezone

from renewals import notifications
from renewals.models import Renewal
from renewals.services import charging, dispatcher


class Command(BaseCommand):
    help = "Run one renewal dispatcher pass: trigger sweep, suspensions, reconciliation, claim and charge."

    def add_arguments(self, parser):
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="Hand claimed renewals to the Celery workers instead of charging them here.",
        )

    def handle(self, *args, enqueue: bool = False, **options):
        report = dispatcher.run_dispatcher(now=timezone.now(), enqueue=enqueue)
        self.stdout.write(f"opened {len(report.opened)} renewal(s): {report.opened}")
        self.stdout.write(f"suspended the line of {len(report.suspended)} failed renewal(s): {report.suspended}")
        self.stdout.write(f"reconciled {len(report.reconciled)} charge(s): {report.reconciled}")
        if report.reconciling:
            self.stdout.write(
                f"handed {len(report.reconciling)} charge(s) to the workers to reconcile: {report.reconciling}"
            )
        self.stdout.write(
            f"claimed {len(report.claimed)} renewal(s): {report.claimed}; requeued {len(report.requeued)}: {report.requeued}"
        )
        if enqueue:
            self.stdout.write("charges enqueued for the workers")
            return
        for renewal_id in report.requeued + report.claimed:
            renewal = charging.charge_renewal(renewal_id=renewal_id)
            self.stdout.write(
                f"renewal {renewal.pk} line {renewal.line_id}: {renewal.status}"
                + (
                    f" (next attempt {renewal.next_attempt_at.isoformat()})"
                    if renewal.status == Renewal.Status.RETRY_SCHEDULED
                    else ""
                )
            )
        # In the foreground the customer's emails go out here too (a worker, if one runs, finds
        # them sent: each is sent once).
        sent = notifications.send_unsent_notices()
        if sent:
            self.stdout.write(f"sent {len(sent)} renewal email(s)")
