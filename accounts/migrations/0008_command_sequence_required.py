from django.db import migrations, models
from django.db.models import Q


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0007_network_command_sequence"),
    ]

    operations = [
        migrations.AlterField(
            model_name="networkcommand",
            name="sequence",
            field=models.BigIntegerField(verbose_name="sequence"),
        ),
        migrations.AddConstraint(
            model_name="networkcommand",
            constraint=models.UniqueConstraint(fields=("line", "sequence"), name="networkcommand_line_sequence_unique"),
        ),
        migrations.AddIndex(
            model_name="networkcommand",
            index=models.Index(condition=Q(status="failed"), fields=["id"], name="netcmd_dead_letter_idx"),
        ),
    ]
