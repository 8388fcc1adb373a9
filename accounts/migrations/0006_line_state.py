"""The rest of a line's state (docs/line-states.md), filled in for the existing lines."""

from django.db import migrations, models

STATUS_CHOICES = [
    ("inactive", "Not activated"),
    ("active", "Active"),
    ("data_exhausted", "Out of data"),
    ("suspended", "Suspended"),
    ("expired", "Expired"),
    ("terminated", "Terminated"),
]


def fill_line_state(apps, schema_editor):
    Line = apps.get_model("accounts", "Line")
    ChangeRecord = apps.get_model("accounts", "ChangeRecord")
    ContentType = apps.get_model("contenttypes", "ContentType")
    Line.objects.filter(status="data_exhausted").update(data_blocked=True)
    line_type = ContentType.objects.filter(app_label="accounts", model="line").first()
    if line_type is None:
        return
    by_operator = []
    for line_id in Line.objects.filter(status="suspended").values_list("id", flat=True).iterator():
        last = (
            ChangeRecord.objects.filter(content_type=line_type, object_id=str(line_id), after__status="suspended")
            .order_by("-created_at", "-id")
            .values_list("action", flat=True)
            .first()
        )
        # The operator's suspend action records "suspended"; the engine's suspension records none.
        if last == "suspended":
            by_operator.append(line_id)
    Line.objects.filter(pk__in=by_operator).update(suspended_by_operator=True)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_iccid_ascii_digits"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AddField(
            model_name="line",
            name="data_blocked",
            field=models.BooleanField(default=False, verbose_name="data blocked"),
        ),
        migrations.AddField(
            model_name="line",
            name="suspended_by_operator",
            field=models.BooleanField(default=False, verbose_name="suspended by an operator"),
        ),
        migrations.AddField(
            model_name="line",
            name="suspended_from",
            field=models.CharField(
                blank=True, choices=STATUS_CHOICES, max_length=20, verbose_name="status before suspension"
            ),
        ),
        migrations.RunPython(fill_line_state, migrations.RunPython.noop),
    ]
