"""Make localstripe deliver its events to this site's dj-stripe webhook endpoint (make run).
localstripe forgets its webhook configuration when it restarts: run this after every start."""

import time

from django.core.management.base import BaseCommand, CommandError

from payments import gateways
from payments.services import webhooks


class Command(BaseCommand):
    help = "Create the local webhook endpoint (signing secret STRIPE_WEBHOOK_SECRET) and register it with localstripe."

    def add_arguments(self, parser):
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000", help="Base URL of this site as localstripe reaches it."
        )
        parser.add_argument("--wait", type=float, default=0, help="Seconds to keep retrying while localstripe starts.")

    def handle(self, *args, **options):
        if not gateways.is_local_stripe():
            raise CommandError("STRIPE_API_BASE is real Stripe: configure webhooks in the Stripe dashboard.")
        deadline = time.monotonic() + options["wait"]
        while True:
            try:
                endpoint = webhooks.configure_local_webhook_endpoint(base_url=options["url"])
                break
            except Exception as exc:  # connection refused while localstripe starts, etc.
                if time.monotonic() >= deadline:
                    raise CommandError(f"could not configure localstripe at the STRIPE_API_BASE: {exc}") from exc
                time.sleep(0.5)
        self.stdout.write(f"localstripe delivers events to {endpoint.url}")
