"""Two deployments sharing one provider key never take each other's batches or results.

Against the three emulators with the real SDKs and PostgreSQL (the ``vendor`` fixture). A
"second deployment" is the first one's database recreated (every ``llm`` row gone, id
sequences back at 1): its first job has the same job, task and batch numbers as the old one's,
so names built from row ids alone would be identical; the deployment identity keeps them apart.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from clustering.models import ClusteringRun
from llm.emulators.server import EmulatorServer
from llm.models import BatchItem, Deployment, GenerationJob, LLMCall, ProviderBatch
from llm.providers import anthropic as anthropic_module
from llm.providers.registry import batch_provider_get
from llm.services.batch_admin import batch_job_create
from llm.services.batches import job_batch_advance
from llm.services.deployment import IDENTITY_RE, belongs_to, deployment_identity
from tests.llm.batch_helpers import planted_run, recreate_llm_database, wait_final

pytestmark = pytest.mark.django_db(transaction=True)

GROUPS = 3


@pytest.fixture
def run(tmp_path: Path) -> ClusteringRun:
    done = planted_run(tmp_path, "three", groups=GROUPS)
    assert done.clusters.count() == GROUPS
    return done


def _accepted(emulator: EmulatorServer) -> list[dict]:
    return [s for s in emulator.batch_submissions() if s["accepted"]]


def test_the_identity_is_created_once_and_carried_by_names_and_custom_ids(vendor, run) -> None:
    identity = deployment_identity()
    assert IDENTITY_RE.fullmatch(identity)
    assert deployment_identity() == identity and Deployment.objects.count() == 1
    job = batch_job_create(dataset="three").job
    [batch] = ProviderBatch.objects.filter(job=job)
    assert batch.display_name == f"clustersum-{identity}-j{job.pk}-generate-r1-c0"
    for custom_id in BatchItem.objects.filter(batch=batch).values_list("custom_id", flat=True):
        assert belongs_to(identity, custom_id) and custom_id.startswith(f"{identity}-j{job.pk}-t")
        assert len(custom_id) <= 53  # Anthropic: 64 less our 11-character batch tag
    [submission] = _accepted(vendor)
    assert submission["tag"] in (batch.display_name, "")  # Anthropic keeps no name


def test_a_recreated_database_never_adopts_the_old_deployments_batch(vendor, run) -> None:
    """The old deployment's job 1 submitted its generation batch; the recreated database's job 1
    (same ids, same request count) is cut off between upload and creation and recovers: it
    finds nothing of its own, submits its own batch, and stores only its own results."""
    vendor.configure_batches(polls=1)
    recreate_llm_database()  # both deployments start from id 1
    old_job = batch_job_create(dataset="three").job
    [old] = ProviderBatch.objects.filter(job=old_job)
    old_identity, old_batch_id = deployment_identity(), old.provider_batch_id
    assert old.state == ProviderBatch.State.SUBMITTED and old_batch_id
    vendor.finish_batches(old_batch_id)  # its results wait at the provider, never collected

    recreate_llm_database()
    assert not Deployment.objects.exists()
    vendor.add_batch_fault("status", op="create", code=500)  # after the upload, if any
    job = batch_job_create(dataset="three").job
    identity = deployment_identity()
    assert identity != old_identity and job.pk == old_job.pk
    [batch] = ProviderBatch.objects.filter(job=job)
    assert (batch.state, batch.submit_attempts, batch.provider_batch_id) == ("preparing", 1, "")
    # the process dies there: the row is left as a crash leaves it
    ProviderBatch.objects.filter(pk=batch.pk).update(
        submit_started_at=timezone.now() - timedelta(hours=1)
    )

    job_batch_advance(job_id=job.pk)  # recovery: look up, find nothing of ours, submit
    batch.refresh_from_db()
    assert batch.state in (ProviderBatch.State.SUBMITTED, ProviderBatch.State.RUNNING)
    assert batch.provider_batch_id not in ("", old_batch_id)
    assert [s["batch_id"] for s in _accepted(vendor)] == [old_batch_id, batch.provider_batch_id]

    final = wait_final(job)
    assert final.status == "succeeded" and final.succeeded == GROUPS
    ours = set(ProviderBatch.objects.filter(job=job).values_list("provider_batch_id", flat=True))
    assert old_batch_id not in ours
    assert all(
        belongs_to(identity, c) for c in BatchItem.objects.values_list("custom_id", flat=True)
    )
    assert not LLMCall.objects.filter(batch__provider_batch_id=old_batch_id).exists()


def test_a_result_for_another_deployments_custom_id_is_never_stored(vendor, run) -> None:
    foreign = "0badc0de-j1-t1-g1"
    vendor.configure_batches(extra_ids=[foreign])
    job = batch_job_create(dataset="three").job
    [batch] = ProviderBatch.objects.filter(job=job, kind="generate")
    vendor.finish_batches(batch.provider_batch_id)
    job_batch_advance(job_id=job.pk)
    batch.refresh_from_db()
    assert batch.state == ProviderBatch.State.COLLECTED
    assert batch.unknown_results == 1 and foreign in batch.error
    assert LLMCall.objects.filter(batch=batch).count() == GROUPS
    assert not BatchItem.objects.filter(custom_id=foreign).exists()
    vendor.configure_batches(extra_ids=[])
    assert wait_final(GenerationJob.objects.get(pk=job.pk)).succeeded == GROUPS


def test_recovery_rules_out_another_size_or_an_older_batch(vendor, run) -> None:
    """``batch_find`` never answers with a batch of another request count, or one created
    before the row (less the clock skew), even under the very display name."""
    job = batch_job_create(dataset="three").job
    [batch] = ProviderBatch.objects.filter(job=job)
    vendor.finish_batches(batch.provider_batch_id)
    provider = batch_provider_get(job.provider)
    name, count = batch.display_name, batch.request_count
    anthropic_module._SUBMITTED.clear()  # a new process: nothing remembered
    written = batch.created_at - timedelta(seconds=1)  # OpenAI reports whole seconds
    found = provider.batch_find(name, request_count=count, created_after=written)
    assert found is not None and found.batch_id == batch.provider_batch_id
    assert provider.batch_find(name, request_count=count + 1) is None
    later = timezone.now() + timedelta(hours=1)
    assert provider.batch_find(name, request_count=count, created_after=later) is None
    assert provider.batch_find(name, exclude_ids={batch.provider_batch_id}) is None


def test_the_admin_shows_the_deployment_identity(client, django_user_model) -> None:
    admin = django_user_model.objects.create_superuser("root", "root@example.org", "pw-Secret-1")
    client.force_login(admin)
    response = client.get("/admin/llm/deployment/")
    assert response.status_code == 200
    identity = deployment_identity()  # created by the page if nothing had used it yet
    assert identity in response.content.decode()
    assert Deployment.objects.count() == 1
