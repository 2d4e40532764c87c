"""Security and bad-input tests (issue 6): property-based fuzzing of output recovery and dataset
import, schemathesis against the OpenAPI schema, the permission matrix of every write endpoint,
CSRF on the admin, a canary API key that must never surface, and prompt injection through
member and term names. Every test module here is marked ``security``.
"""

from __future__ import annotations

from typing import Any

from rest_framework.authtoken.models import Token

from clustering.models import ClusteringRun
from llm.models import ClusterSummary, GenerationJob, LLMCall, SummaryTask, ValidationEvent


def snapshot() -> dict[str, Any]:
    """Everything an API or admin write could create or change."""
    return {
        "runs": list(ClusteringRun.objects.order_by("pk").values_list("pk", "status")),
        "jobs": list(GenerationJob.objects.order_by("pk").values_list("pk", "status")),
        "tasks": list(SummaryTask.objects.order_by("pk").values_list("pk", "state")),
        "calls": LLMCall.objects.count(),
        "events": ValidationEvent.objects.count(),
        "summaries": list(
            ClusterSummary.objects.order_by("pk").values_list(
                "pk", "validation_status", "human_locked", "is_current"
            )
        ),
        "tokens": Token.objects.count(),
    }
