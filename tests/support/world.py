"""Tests of the REST API under /api/, and the data they share.

``build_world()`` creates, with the ORM, one finished run of a small functional dataset: three
clusters with enrichment terms, a current summary per cluster (validated, pending, rejected), one
superseded history row, the run's generation job and its provider calls. ``make_user()`` makes
the four kinds of caller (anonymous is ``None``) and ``client_for()`` an authenticated client.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import Permission, User
from django.utils import timezone
from rest_framework.test import APIClient

from clustering.domain.params import ClusteringParams
from clustering.models import Cluster, ClusteringRun, Dataset, RunStatus, TermEnrichment
from llm.models import (
    ClusterSummary,
    GenerationJob,
    JobStatus,
    LLMCall,
    SummaryTask,
    TaskState,
    ValidationStatus,
    Verdict,
)

LICENCE = "Demo annotations ({release}); please acknowledge the Demo Consortium."


@dataclass
class World:
    """Rows of one finished run (see the module docstring)."""

    dataset: Dataset
    run: ClusteringRun
    clusters: list[Cluster]
    validated: ClusterSummary
    pending: ClusterSummary
    rejected: ClusterSummary
    history: ClusterSummary
    job: GenerationJob
    calls: list[LLMCall]


def make_user(kind: str, name: str | None = None) -> User:
    """A user of ``kind``: "plain", "runner" (has clustering.add_clusteringrun) or "staff"."""
    user = User.objects.create_user(username=name or kind, password="pw-" + kind)
    if kind == "runner":
        user.user_permissions.add(
            Permission.objects.get(
                content_type__app_label="clustering", codename="add_clusteringrun"
            )
        )
    elif kind == "staff":
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    elif kind != "plain":
        raise ValueError(kind)
    return User.objects.get(pk=user.pk)  # fresh: no stale permission cache


def client_for(user: User | None) -> APIClient:
    """An API client acting as ``user`` (anonymous when None)."""
    client = APIClient()
    if user is not None:
        client.force_authenticate(user=user)
    return client


def _members(symbols: list[str]) -> list[dict[str, str]]:
    return [{"id": f"ID:{s}", "symbol": s} for s in symbols]


def make_summary(
    *,
    dataset: Dataset,
    cluster: Cluster | None,
    composition_hash: str,
    status: str,
    verdict: str,
    text: str,
    members: list[str],
    tags: list[str],
    is_current: bool = True,
    model: str = "extractive-v1",
    **extra: Any,
) -> ClusterSummary:
    """A summary row with plausible content."""
    return ClusterSummary.objects.create(
        composition_hash=composition_hash,
        cluster_type="functional",
        is_current=is_current,
        dataset=dataset,
        cluster=cluster,
        members=members,
        content={"summary": text, "key_themes": tags, "pathways": [], "tags": tags},
        summary_text=text,
        tags=tags,
        confidence="medium",
        derived_confidence="high",
        provider="extractive" if model == "extractive-v1" else "gemini",
        model=model,
        prompt_version="functional-v1",
        validation_status=status,
        judge_verdict=verdict,
        judge_reasoning=f"judged {verdict}",
        judge_scores={"grounding": 4},
        judge_model=model,
        judge_prompt_version="judge-v1",
        input_tokens=100,
        output_tokens=50,
        cost_usd=Decimal("0.001000"),
        **extra,
    )


def build_world() -> World:
    """One finished functional run with three clusters, summaries, a job and calls."""
    dataset = Dataset.objects.create(
        slug="demo-genes",
        name="Demo genes",
        kind="functional",
        source="tests",
        release="2025-11-24",
        licence=LICENCE,
        entity_count=30,
        term_count=12,
    )
    now = timezone.now()
    run = ClusteringRun.objects.create(
        dataset=dataset,
        cluster_type="functional",
        params=ClusteringParams().to_dict(),
        status=RunStatus.SUCCEEDED,
        progress_current=6,
        progress_total=6,
        progress_message="Done: 3 clusters, 0 unclustered",
        modularity=0.61,
        started_at=now,
        finished_at=now,
    )
    groups = [
        ["SCN1A", "SCN2A", "KCNQ2", "CACNA1A"],
        ["MECP2", "CDKL5", "FOXG1"],
        ["CHD8", "ARID1B", "SETD5"],
    ]
    clusters = [
        Cluster.objects.create(
            run=run,
            number=n,
            size=len(symbols),
            members=_members(symbols),
            composition_hash=f"{n:064x}",
            quality={"conductance": 0.2},
        )
        for n, symbols in enumerate(groups, start=1)
    ]
    for cluster in clusters:
        for i in range(4):
            TermEnrichment.objects.create(
                cluster=cluster,
                category="GO",
                term_id=f"GO:{cluster.number}{i:06d}",
                term_name=f"process {i} of cluster {cluster.number}",
                overlap=3,
                term_size=10 + i,
                p_value=10.0 ** -(8 - i),
                fdr=10.0 ** -(7 - i),
                fold_enrichment=5.0 - i,
                overlap_members=cluster.member_symbols[:3],
            )
    validated = make_summary(
        dataset=dataset,
        cluster=clusters[0],
        composition_hash=clusters[0].composition_hash,
        status=ValidationStatus.VALIDATED,
        verdict=Verdict.ACCEPT,
        text="Voltage-gated sodium channel genes behind epileptic encephalopathy.",
        members=groups[0],
        tags=["ion channels", "epilepsy"],
    )
    pending = make_summary(
        dataset=dataset,
        cluster=clusters[1],
        composition_hash=clusters[1].composition_hash,
        status=ValidationStatus.PENDING,
        verdict=Verdict.LOW_CONFIDENCE,
        text="Transcriptional regulators of Rett-like disorders.",
        members=groups[1],
        tags=["chromatin", "rett"],
        model="gemini-2.5-flash",
    )
    rejected = make_summary(
        dataset=dataset,
        cluster=clusters[2],
        composition_hash=clusters[2].composition_hash,
        status=ValidationStatus.REJECTED,
        verdict=Verdict.REJECT,
        text="Chromatin remodelling in autism.",
        members=groups[2],
        tags=["chromatin", "autism"],
    )
    history = make_summary(
        dataset=dataset,
        cluster=clusters[0],
        composition_hash=clusters[0].composition_hash,
        status=ValidationStatus.VALIDATED,
        verdict=Verdict.ACCEPT,
        text="An older sodium channel summary.",
        members=groups[0],
        tags=["ion channels"],
        is_current=False,
    )
    job = GenerationJob.objects.create(
        run=run,
        scope=GenerationJob.Scope.RUN,
        status=JobStatus.RUNNING,
        provider="extractive",
        model="extractive-v1",
        judge_model="extractive-v1",
        total=47,
        succeeded=12,
        failed=1,
        skipped=1,
        rejected=1,
        progress_current=15,
        progress_total=47,
        progress_message="Generating 15/47 clusters - cluster 7",
        input_tokens=1234,
        output_tokens=567,
        cost_usd=Decimal("0.012345"),
        started_at=now,
    )
    tasks = [
        SummaryTask.objects.create(job=job, cluster=c, state=TaskState.SUCCEEDED) for c in clusters
    ]
    calls = [
        LLMCall.objects.create(
            job=job,
            task=tasks[0],
            kind=LLMCall.Kind.GENERATE,
            provider="extractive",
            model="extractive-v1",
            status=LLMCall.Status.SUCCESS,
            input_tokens=100,
            output_tokens=50,
        ),
        LLMCall.objects.create(
            job=job,
            task=tasks[0],
            kind=LLMCall.Kind.JUDGE,
            provider="extractive",
            model="extractive-v1",
            status=LLMCall.Status.SUCCESS,
        ),
        LLMCall.objects.create(
            job=job,
            task=tasks[1],
            kind=LLMCall.Kind.GENERATE,
            provider="gemini",
            model="gemini-2.5-flash",
            status=LLMCall.Status.API_ERROR,
            error_class="ProviderError",
            error_message="503 from provider",
        ),
    ]
    return World(dataset, run, clusters, validated, pending, rejected, history, job, calls)


def assert_error_shape(body: Any, *, code: str | None = None) -> None:
    """Every error body is {"detail": str, "code": str, "errors": {field: [str]}}; the 409 of a
    run start adds "active_run" (an id)."""
    extra = {"active_run"} if body.get("code") == "conflict" else set()
    assert set(body) - extra == {"detail", "code", "errors"}, body
    if "active_run" in body:
        assert isinstance(body["active_run"], int), body
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["errors"], dict)
    for field, messages in body["errors"].items():
        assert isinstance(field, str)
        assert isinstance(messages, list) and messages
        assert all(isinstance(m, str) and m for m in messages)
    if code is not None:
        assert body["code"] == code, body
