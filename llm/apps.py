from django.apps import AppConfig


class LlmConfig(AppConfig):
    """Summaries, judging, composition cache, provider calls and provider batches."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "llm"
    verbose_name = "LLM summaries"
