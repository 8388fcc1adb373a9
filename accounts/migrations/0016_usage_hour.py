import django.db.models.deletion
from datetime import UTC

from django.db import migrations, models
from django.db.models import Count, Sum
from django.db.models.functions import Trunc


def backfill(apps, schema_editor):
    """The roll-up of every record already stored: one INSERT … SELECT … GROUP BY on PostgreSQL
    (a table of millions of records in one statement), the ORM elsewhere (development)."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "INSERT INTO accounts_usagehour (line_id, hour, bytes, records) "
            "SELECT line_id, date_trunc('hour', period_start, 'UTC'), sum(bytes), count(*) "
            "FROM accounts_usagerecord GROUP BY 1, 2"
        )
        return
    UsageRecord = apps.get_model("accounts", "UsageRecord")
    UsageHour = apps.get_model("accounts", "UsageHour")
    rows = (
        UsageRecord.objects.annotate(hour=Trunc("period_start", "hour", tzinfo=UTC))
        .values("line_id", "hour")
        .annotate(total=Sum("bytes"), count=Count("id"))
        .order_by()
    )
    UsageHour.objects.bulk_create(
        (
            UsageHour(line_id=r["line_id"], hour=r["hour"], bytes=r["total"], records=r["count"])
            for r in rows.iterator()
        ),
        batch_size=1000,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0015_operator_permissions_after_merge"),
    ]

    operations = [
        migrations.CreateModel(
            name="UsageHour",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("hour", models.DateTimeField(verbose_name="hour")),
                ("bytes", models.BigIntegerField(default=0, verbose_name="bytes")),
                ("records", models.IntegerField(default=0, verbose_name="records")),
                (
                    "line",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="usage_hours",
                        to="accounts.line",
                        verbose_name="line",
                    ),
                ),
            ],
            options={
                "verbose_name": "usage per hour",
                "verbose_name_plural": "usage per hour",
                "constraints": [
                    models.UniqueConstraint(fields=("line", "hour"), name="usage_hour_unique"),
                    models.CheckConstraint(condition=models.Q(("bytes__gte", 0)), name="usage_hour_bytes_not_negative"),
                ],
            },
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
