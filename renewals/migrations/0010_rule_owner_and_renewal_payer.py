from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def backfill(apps, schema_editor):
    # Existing rules belong to their line's owner of today; open cycles are paid by them.
    Line = apps.get_model("accounts", "Line")
    RenewalRule = apps.get_model("renewals", "RenewalRule")
    Renewal = apps.get_model("renewals", "Renewal")
    owner = Subquery(Line.objects.filter(pk=OuterRef("line_id")).values("owner_id")[:1])
    RenewalRule.objects.filter(owner__isnull=True).update(owner_id=owner)
    Renewal.objects.filter(
        payer__isnull=True, status__in=["due", "charging", "retry_scheduled", "awaiting_method", "requires_action"]
    ).update(payer_id=owner)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0009_line_state_database_defaults"),
        ("renewals", "0009_renewal_notice_facts"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="renewalrule",
            name="owner",
            field=models.ForeignKey(
                blank=True,
                editable=False,
                null=True,
                on_delete=models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="customer",
            ),
        ),
        migrations.AddField(
            model_name="renewal",
            name="payer",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="customer",
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
