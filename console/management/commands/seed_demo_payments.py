"""Demo payment data for `make run` (after localstripe is up and seed_demo has run): the demo
customer gets a Stripe customer with one saved test card as the default, and an auto-renewal rule
on the Tablet line. Idempotent. Refuses to run unless Stripe is a local stand-in with a test key."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import Line, Package, User
from console.management.commands.seed_demo import CUSTOMER
from payments import gateways
from payments.services import errors, methods
from renewals.models import RenewalRule
from renewals.services import rules as renewal_rules

TABLET_ICCID = "89860012345678901245"
RULE_THRESHOLD_MB = 200
# The README's walk renews the Tablet twice; room to run it again the same day without meeting
# the daily cap (default 2) that guards real customers from a runaway trigger.
RULE_MAX_RENEWALS_PER_DAY = 10


class Command(BaseCommand):
    help = (
        "Give the demo customer a saved default test card (only that one) and an auto-renewal rule on the "
        "Tablet line. localstripe only; idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--card",
            default="4242424242424242",
            help="Test card number to make the demo customer's only method, e.g. 4000000000000341 (declined when charged).",
        )

    def handle(self, *args, card: str, **options):
        if not gateways.is_local_test_stripe():
            raise CommandError(
                "refusing to seed payment data: STRIPE_API_BASE must be a loopback address (localstripe), "
                "STRIPE_SECRET_KEY a sk_test_ key and STRIPE_LIVE_MODE off."
            )
        card = card.replace(" ", "")
        user = User.objects.filter(email=CUSTOMER[0]).first()
        line = Line.objects.filter(iccid=TABLET_ICCID, owner=user).first() if user else None
        if line is None:
            raise CommandError("the demo customer or its Tablet line is missing: run `manage.py seed_demo` first.")
        try:
            customer = gateways.ensure_customer(user)
            method = self._card(user, customer, card)
        except (gateways.GatewayError, errors.PaymentError) as exc:
            raise CommandError(f"localstripe refused: {exc}") from exc
        self.stdout.write(
            f"demo customer {user.email}: Stripe customer {customer.id}, "
            f"default method {gateways.payment_method_summary(method)} ({method.id})"
        )
        self._rule(line)

    def _card(self, user, customer, number: str):
        from djstripe.models import PaymentMethod

        attached = list(PaymentMethod.objects.filter(customer=customer))
        method = next(
            (
                pm
                for pm in attached
                if pm.type == "card" and str((pm.stripe_data.get("card") or {}).get("last4")) == number[-4:]
            ),
            None,
        )
        if method is None:
            method = gateways.attach_payment_method(
                customer_id=customer.id, payment_method_id=gateways.create_local_test_card(number)
            )
        if gateways.default_payment_method_id(user) != method.id:
            # Through the service, as the portal does: renewals waiting for a method wake up.
            methods.set_default_method(user=user, payment_method_id=method.id)
        for other in attached:
            if other.id != method.id:
                methods.remove_method(user=user, payment_method_id=other.id, replacement_id=method.id)
        return method

    def _rule(self, line: Line) -> None:
        rule = RenewalRule.objects.filter(line=line).select_related("package").first()
        if rule is None:
            package = Package.objects.filter(active=True).order_by("price_minor", "pk").first()
            if package is None:
                raise CommandError("no package on sale: run `manage.py seed_demo` first.")
            rule = renewal_rules.save_rule(
                line=line,
                now=timezone.now(),
                values={
                    "enabled": True,
                    "package": package,
                    "trigger_data_below_mb": RULE_THRESHOLD_MB,
                    "overage_policy": RenewalRule.OveragePolicy.BLOCK,
                    "max_renewals_per_day": RULE_MAX_RENEWALS_PER_DAY,
                },
            )
            verb = "created"
        else:
            verb = "kept (already there)"
        state = "on" if rule.enabled else "off"
        self.stdout.write(
            f"auto-renewal rule {verb} on {line.label} {line.iccid}: {state}, buys {rule.package.name} "
            f"when data remaining <= {rule.trigger_data_below_mb} MB"
        )
