# An operator alert for money that arrived after its renewal cycle had closed (docs/money.md):
# no outcome is dropped, it is refunded and shown.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("renewals", "0007_renewal_frozen_terms"),
    ]

    operations = [
        migrations.AlterField(
            model_name="alert",
            name="kind",
            field=models.CharField(
                choices=[
                    ("renewal_cap_reached", "Renewals per 24 hours cap reached"),
                    ("spend_cap_reached", "Monthly spend cap reached"),
                    ("repeated_failures", "Renewal failing repeatedly"),
                    ("renewal_failed", "Renewal failed, line suspended"),
                    ("unreconciled_charge", "Charge outcome unknown"),
                    ("paid_after_closed", "Paid after its renewal had closed: refunded"),
                ],
                max_length=40,
                verbose_name="kind",
            ),
        ),
    ]
