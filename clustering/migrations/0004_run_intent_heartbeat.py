from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("clustering", "0003_evidence_quality_traits"),
    ]

    operations = [
        migrations.AddField(
            model_name="clusteringrun",
            name="intent",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="clusteringrun",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="clusteringrun",
            name="task_id",
            field=models.CharField(blank=True, max_length=64),
        ),
    ]
