"""Make localstripe deliver its events to this site's dj-stripe webhook endpoint (make run)."""
from django.core.management.base import BaseCommand, CommandError

from payments import gateways, services


class Command(BaseCommand):
    help = "Create the local webhook endpoint (signing secret STRIPE_WEBHOOK_SECRET) and register it with localstripe."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Base URL of this site as localstripe reaches it.")

    def handle(self, *args, **options):
        if not gateways.is_local_stripe():
            raise CommandError("STRIPE_API_BASE is real Stripe: configure webhooks in the Stripe dashboard.")
        try:
            endpoint = services.configure_local_webhook_endpoint(base_url=options["url"])
        except Exception as exc:  # connection refused etc.: say what to check
            raise CommandError(f"could not configure localstripe at the STRIPE_API_BASE: {exc}") from exc
        self.stdout.write(f"localstripe delivers events to {endpoint.url}")
