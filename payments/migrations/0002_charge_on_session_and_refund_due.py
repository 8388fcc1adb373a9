# Money seams (docs/money.md): on-session charges are marked (a pay-now decline never moves a renewal);
# money taken for a charge whose cycle had closed is `refund_due`, then `refunded`. A renewal keeps
# at most one charge's money, so the one-per-renewal constraint covers `succeeded` only: a refunded
# stray next to the paid charge is the ledger telling the truth.

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_line_renewal_trigger_copies"),
        ("payments", "0001_initial"),
        ("renewals", "0006_authentication_timeout"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="charge",
            name="one_successful_charge_per_renewal",
        ),
        migrations.AddField(
            model_name="charge",
            name="on_session",
            field=models.BooleanField(
                db_default=False, default=False, verbose_name="paid by the customer at the browser"
            ),
        ),
        migrations.AlterField(
            model_name="charge",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("succeeded", "Succeeded"),
                    ("failed", "Failed"),
                    ("requires_action", "Needs your action"),
                    ("refunded", "Refunded"),
                    ("refund_due", "Refund due"),
                ],
                default="pending",
                max_length=20,
                verbose_name="status",
            ),
        ),
        migrations.AddConstraint(
            model_name="charge",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "succeeded")),
                fields=("renewal",),
                name="one_successful_charge_per_renewal",
            ),
        ),
    ]
