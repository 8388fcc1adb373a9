# A renewal freezes its terms when it opens (docs/money.md): the overage fee it bills, next to
# its amount, currency, package and billed bytes (rows opened before this keep 0: their amount
# already holds the fee).

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_line_renewal_trigger_copies"),
        ("renewals", "0006_authentication_timeout"),
    ]

    operations = [
        migrations.AddField(
            model_name="renewal",
            name="overage_fee_minor",
            field=models.BigIntegerField(
                db_default=0,
                default=0,
                validators=[django.core.validators.MinValueValidator(0)],
                verbose_name="overage fee (minor units)",
            ),
        ),
        migrations.AddConstraint(
            model_name="renewal",
            constraint=models.CheckConstraint(
                condition=models.Q(("overage_fee_minor__gte", 0), ("overage_fee_minor__lte", models.F("amount_minor"))),
                name="renewal_overage_fee_within_amount",
            ),
        ),
    ]
