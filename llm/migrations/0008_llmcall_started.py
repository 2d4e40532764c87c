"""LLMCall rows written before the request leaves ("started"), marked "unknown" outcome when
their worker died in flight, with a projected cost; the job's count and cost of such calls."""

from decimal import Decimal

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("llm", "0007_judge_v2_corrections")]

    operations = [
        migrations.AddField(
            model_name="llmcall",
            name="projected_cost_usd",
            field=models.DecimalField(decimal_places=6, default=Decimal("0"), max_digits=12),
        ),
        migrations.AlterField(
            model_name="llmcall",
            name="status",
            field=models.CharField(
                choices=[
                    ("success", "success"),
                    ("validation_failed", "validation failed"),
                    ("api_error", "API error"),
                    ("timeout", "timeout"),
                    ("blocked", "blocked"),
                    ("started", "started (in flight)"),
                    ("unknown", "unknown outcome"),
                ],
                db_index=True,
                max_length=24,
            ),
        ),
        migrations.AddField(
            model_name="generationjob",
            name="unknown_calls",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="generationjob",
            name="unknown_cost_usd",
            field=models.DecimalField(decimal_places=6, default=Decimal("0"), max_digits=14),
        ),
    ]
