"""Usage periods (docs/usage.md): when the line's package began, and whether a record was charged to it.

Existing lines keep package_started_at NULL (unknown): their records are all charged, as before,
until their next package is applied. Existing records were all charged (db_default True)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0009_line_state_database_defaults"),
    ]

    operations = [
        migrations.AddField(
            model_name="line",
            name="package_started_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="package started"),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="charged",
            field=models.BooleanField(db_default=True, default=True, verbose_name="charged to the package"),
        ),
    ]
