"""The per-line sequence of the network commands and the claim's fencing token
(docs/network-outbox.md), numbered for the existing rows. The NOT NULL and the unique constraint
come in 0008, in a transaction of their own."""

from django.db import migrations, models


def number_commands(apps, schema_editor):
    qn = schema_editor.connection.ops.quote_name
    commands = qn("accounts_networkcommand")
    schema_editor.execute(
        f"UPDATE {commands} SET {qn('sequence')} = v.n FROM (SELECT {qn('id')}, row_number() OVER "
        f"(PARTITION BY {qn('line_id')} ORDER BY {qn('id')}) AS n FROM {commands}) AS v WHERE {commands}.{qn('id')} = v.{qn('id')}"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_line_state"),
    ]

    operations = [
        migrations.AddField(
            model_name="networkcommand",
            name="lease_token",
            field=models.UUIDField(blank=True, editable=False, null=True, verbose_name="claim"),
        ),
        migrations.AddField(
            model_name="networkcommand",
            name="sequence",
            field=models.BigIntegerField(null=True, verbose_name="sequence"),
        ),
        migrations.AlterField(
            model_name="networkcommand",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("delivered", "Delivered"),
                    ("failed", "Failed"),
                    ("superseded", "Superseded"),
                ],
                default="pending",
                max_length=20,
                verbose_name="status",
            ),
        ),
        migrations.RunPython(number_commands, migrations.RunPython.noop),
    ]
