"""Drill: a phenotype run through the Gemini emulator, on the README's deployment (a worker and
beat as subprocesses, the private Redis, the real google-genai SDK), completes with verdicts.

The emulator's phenotype answers name no gene and only the cluster's own phenotype terms, so
they pass the product's entity validation and reach the judge (before, every hpo-ndd cluster
failed its three attempts and the judge was never called).
"""

from __future__ import annotations

import pytest

from llm.models import ClusterSummary, JobStatus, LLMCall, ValidationStatus
from llm.services.pipeline import pipeline_start
from tests.drills.conftest import (
    GROUPS,
    PARAMS,
    Drill,
    assert_one_current_summary_per_cluster,
    final_job,
    import_drill_dataset,
)
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.drill, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


def test_a_phenotype_run_completes_with_verdicts(drill: Drill) -> None:
    slug = import_drill_dataset(drill.tmp, kind="phenotype")
    env = drill.env()
    worker = drill.procs.worker(env, concurrency=4, wait=False)
    beat = drill.procs.beat(env, wait=False)
    drill.procs.wait_ready(worker, beat)

    run = pipeline_start(dataset_slug=slug, params=PARAMS, provider="gemini")
    job = wait_until(lambda: final_job(run.pk), 180.0, "job final", context=drill.context)

    assert job.status == JobStatus.SUCCEEDED, job.message
    assert (job.total, job.succeeded, job.failed) == (GROUPS, GROUPS, 0)
    clusters = assert_one_current_summary_per_cluster(job)
    summaries = ClusterSummary.objects.filter(is_current=True, cluster__in=clusters)
    assert summaries.count() == GROUPS
    for summary in summaries:
        assert summary.cluster_type == "phenotype" and summary.prompt_version == "phenotype-v2"
        assert summary.judge_verdict == "accept" and summary.judge_prompt_version == "judge-v2"
        assert summary.validation_status == ValidationStatus.VALIDATED
        assert summary.validation_failures == []
        assert summary.cluster is not None
        named = [
            m["symbol"] for m in summary.cluster.members if m["symbol"] in summary.summary_text
        ]
        assert named == [], named  # a phenotype summary names no gene
    calls = LLMCall.objects.filter(job=job)
    assert calls.filter(kind="generate", status="success").count() == GROUPS
    assert calls.filter(kind="judge", status="success").count() == GROUPS
    targets = [e["target"] for e in drill.emulator.request_log()]
    assert sorted(targets) == sorted(["generate", "judge"] * GROUPS)
