# Each pending charge's own next reconciliation time, and refunds whose outcome is unknown
# (branch money-precedence: renumber at merge).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0002_charge_on_session_and_refund_due"),
    ]

    operations = [
        migrations.AddField(
            model_name="charge",
            name="next_check_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="next check"),
        ),
        migrations.AddField(
            model_name="charge",
            name="refund_in_doubt_since",
            field=models.DateTimeField(blank=True, null=True, verbose_name="refund outcome unknown since"),
        ),
        migrations.AddIndex(
            model_name="charge",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["next_check_at"],
                name="charge_pending_next_check_idx",
            ),
        ),
    ]
