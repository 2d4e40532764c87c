"""`python manage.py llm_batch create|list|fetch|cancel|files`: provider batches for operators.

    llm_batch create [--dataset D] [--clusters N ...] [--batch-size N] [--force] [--provider P]
    llm_batch list [--status pending|completed|failed] [--limit N]
    llm_batch fetch (--ids ID ... | --all-pending) [--batch-size N]
    llm_batch cancel ID
    llm_batch files (--list | --delete-leftovers) [--provider P]

`create` summarises the clusters of the dataset's latest succeeded run (or the numbered ones)
through the provider's batch API whatever BATCH_THRESHOLD says, and submits at once; beat's
`llm.poll_batches` (or `fetch`) then polls, collects and submits the judge batches. `cancel` stops
one batch: what it answered before is kept and its other clusters are retried in realtime (cancel
the job to stop the whole job). `files` lists this deployment's batch files at the provider and
deletes the leftovers (a batch's files are deleted once its results are stored, unless
LLM_BATCH_KEEP_FILES). Bad input (unknown dataset, cluster numbers or batch ids, a
provider without a batch API) prints one line and exits with 2; an action that cannot be done now
(batch already ended, provider error) exits with 1. See `llm/services/batch_admin.py`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from llm.models import ProviderBatch
from llm.providers.base import ProviderError, redact
from llm.providers.registry import batch_provider_get
from llm.services.batch_admin import (
    STATUSES,
    BatchAdminError,
    batch_cancel,
    batch_fetch,
    batch_job_create,
    batch_list,
    batch_outcome,
)
from llm.services.batch_files import FilesError, file_providers, leftovers_delete, our_files


def _when(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


class Command(BaseCommand):
    help = "Create, list, fetch (poll and collect now) and cancel provider batches."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        create = sub.add_parser(
            "create",
            help="summarise a run's clusters through the provider's batch API now",
            description="Start a batch-mode generation job for the latest succeeded run of the "
            "dataset (all its clusters or the numbered ones) and submit its batches now.",
        )
        create.add_argument("--dataset", help="dataset slug (default: the only one with a run)")
        create.add_argument(
            "--clusters", nargs="+", type=int, metavar="N", help="cluster numbers (default: all)"
        )
        create.add_argument(
            "--batch-size",
            type=int,
            metavar="N",
            help="at most N requests per batch, stored with the job for its judge and "
            "regeneration batches too (default: BATCH_MAX_REQUESTS_PER_BATCH)",
        )
        create.add_argument(
            "--force", action="store_true", help="regenerate cached summaries (not curated ones)"
        )
        create.add_argument(
            "--provider", help="gemini, openai or anthropic (default: LLM_PROVIDER)"
        )
        listing = sub.add_parser("list", help="print provider batches, newest first")
        listing.add_argument(
            "--status",
            choices=STATUSES,
            help="pending: preparing/submitted/running; completed: succeeded, or collected "
            "with answers; failed: failed/expired/cancelled/timed out, or collected with none",
        )
        listing.add_argument("--limit", type=int, default=100, help="rows to show (100)")
        fetch = sub.add_parser("fetch", help="poll and collect batches now")
        which = fetch.add_mutually_exclusive_group(required=True)
        which.add_argument(
            "--ids",
            nargs="+",
            type=int,
            metavar="ID",
            help="batch ids: only these are polled and collected (no new batch is submitted)",
        )
        which.add_argument(
            "--all-pending",
            action="store_true",
            help="every batch not collected yet (and every running batch job, as beat does)",
        )
        fetch.add_argument(
            "--batch-size",
            type=int,
            metavar="N",
            help="at most N requests per new batch of these jobs (stored with each job)",
        )
        cancel = sub.add_parser("cancel", help="cancel one batch; its clusters go to realtime")
        cancel.add_argument("id", type=int, help="batch id (see `llm_batch list`)")
        files = sub.add_parser(
            "files",
            help="list or delete this deployment's batch files left at the provider",
            description="Files at the provider (OpenAI and Gemini file storage) whose name "
            "carries this deployment's batches. A leftover is a file whose batch is collected "
            "(its results are stored) or gone; files of batches still at work are kept.",
        )
        what = files.add_mutually_exclusive_group(required=True)
        what.add_argument("--list", action="store_true", help="list this deployment's files")
        what.add_argument(
            "--delete-leftovers", action="store_true", help="delete the leftover files"
        )
        files.add_argument("--provider", help="gemini or openai (default: those in use)")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            if action == "create":
                self._create(options)
            elif action == "list":
                self._list(options["status"], options["limit"])
            elif action == "fetch":
                self._fetch(options["ids"], options["all_pending"], options["batch_size"])
            elif action == "files":
                self._files(options["provider"], delete=options["delete_leftovers"])
            else:
                self._cancel(options["id"])
        except BatchAdminError as exc:
            self.stderr.write(f"error: {exc}")
            sys.exit(exc.exit_code)
        except FilesError as exc:
            self.stderr.write(f"error: {exc}")
            sys.exit(2)

    # -- create --------------------------------------------------------------------------------

    def _create(self, options: dict[str, Any]) -> None:
        created = batch_job_create(
            dataset=options["dataset"],
            cluster_numbers=options["clusters"],
            batch_size=options["batch_size"],
            force=options["force"],
            provider=options["provider"],
        )
        job = created.job
        self.stdout.write(
            f"job {job.pk} (batch mode, {job.provider} {job.model}) on run {created.run.pk} of "
            f"dataset {created.run.dataset.slug}: {created.clusters} cluster(s), "
            f"{created.cached} served from the cache, {created.to_generate} to generate"
        )
        if not created.batches:
            self.stdout.write(
                f"no batch needed: job {job.pk} is {job.status} (use --force to regenerate "
                "cached summaries)"
            )
            return
        self._table(
            ("id", "name", "provider id", "kind", "state", "requests"),
            [
                (
                    str(b.pk),
                    b.display_name,
                    b.provider_batch_id or "-",
                    b.kind,
                    b.state,
                    str(b.request_count),
                )
                for b in created.batches
            ],
        )
        for b in created.batches:
            if b.state == ProviderBatch.State.PREPARING:
                self.stdout.write(
                    f"note: batch {b.pk} is not submitted yet (a transient provider error); "
                    "the batch driver retries it"
                )
            elif b.error:
                self.stdout.write(f"note: batch {b.pk}: {b.error}")
        ids = " ".join(str(b.pk) for b in created.batches)
        self.stdout.write(
            f"beat (llm.poll_batches) polls and collects them; now: "
            f"python manage.py llm_batch fetch --ids {ids}"
        )

    # -- list ----------------------------------------------------------------------------------

    def _list(self, status: str | None, limit: int) -> None:
        rows = batch_list(status=status, limit=max(1, limit))
        if not rows:
            self.stdout.write(f"no {status + ' ' if status else ''}batches")
            return
        self._table(
            (
                "id",
                "job",
                "provider",
                "kind",
                "state",
                "outcome",
                "provider state",
                "requests",
                "completed/failed",
                "submitted",
                "finished",
                "name",
            ),
            [
                (
                    str(b.pk),
                    str(b.job_id),
                    b.provider,
                    b.kind,
                    b.state,
                    batch_outcome(b),
                    b.provider_state or "-",
                    str(b.request_count),
                    f"{b.completed_count}/{b.failed_count}",
                    _when(b.submitted_at),
                    _when(b.finished_at),
                    b.display_name,
                )
                for b in rows
            ],
        )

    # -- fetch ---------------------------------------------------------------------------------

    def _fetch(self, ids: list[int] | None, all_pending: bool, batch_size: int | None) -> None:
        report = batch_fetch(ids=ids, all_pending=all_pending, batch_size=batch_size)
        if not report:
            self.stdout.write("no pending batches and no running batch job")
            return
        for job in report:
            if job.busy:
                self.stdout.write(
                    f"job {job.job_id}: another process is advancing it right now; nothing done"
                )
                continue
            counts = job.counts
            self.stdout.write(
                f"job {job.job_id}: polled {counts.get('polled', 0)}, collected "
                f"{counts.get('collected', 0)} batch(es) ({counts.get('items', 0)} item(s), "
                f"{counts.get('fallbacks', 0)} sent to realtime), submitted "
                f"{counts.get('submitted', 0) + counts.get('recovered', 0)}; job {job.status}"
                + (f" - {job.progress}" if job.progress else "")
            )
            if not job.changes:
                self.stdout.write("  no batch changed")
            for change in job.changes:
                before = change.before or "new"
                line = (
                    f"  batch {change.batch_id} {change.display_name} ({change.kind}): "
                    f"{before} -> {change.after}, {change.requests} request(s), "
                    f"{change.completed} completed / {change.failed} failed"
                )
                if change.provider_batch_id:
                    line += f", provider id {change.provider_batch_id}"
                self.stdout.write(line)
                if change.error:
                    self.stdout.write(f"    {change.error[:300]}")

    # -- cancel --------------------------------------------------------------------------------

    def _cancel(self, batch_id: int) -> None:
        done = batch_cancel(batch_id=batch_id)
        batch = done.batch
        how = (
            f"the provider was asked to cancel it (now {done.provider_state or 'unknown'})"
            if done.asked_provider
            else "it had not reached the provider"
        )
        self.stdout.write(f"cancelled batch {batch.pk} {batch.display_name}: {how}")
        if batch.state == ProviderBatch.State.COLLECTED:
            self.stdout.write(
                f"{done.sent_to_realtime} of its {batch.request_count} item(s) retried in "
                f"realtime, {done.answered} answered before the cancellation (kept); job "
                f"{batch.job_id} is {done.job_status}"
            )
        else:
            self.stdout.write(
                f"the provider has not ended it yet ({batch.state}/{batch.provider_state or '-'})"
                f"; once it has, its unanswered items are retried in realtime (beat, or "
                f"`llm_batch fetch --ids {batch.pk}`)"
            )

    # -- files --------------------------------------------------------------------------------

    def _files(self, name: str | None, *, delete: bool) -> None:
        names = file_providers(name)
        if not names:
            self.stdout.write("no provider with batch files in use (gemini, openai)")
            return
        for provider_name in names:
            provider = batch_provider_get(provider_name)
            try:
                if delete:
                    deleted = leftovers_delete(provider_name, provider)
                    for found in deleted:
                        self.stdout.write(
                            f"{provider_name}: deleted {found.file.file_id} {found.file.name}"
                        )
                    self.stdout.write(f"{provider_name}: {len(deleted)} leftover file(s) deleted")
                    continue
                rows = list(our_files(provider_name, provider))
            except ProviderError as exc:
                raise BatchAdminError(
                    f"provider {provider_name} could not list or delete files: "
                    f"{redact(exc.message)}",
                    exit_code=1,
                ) from None
            if not rows:
                self.stdout.write(f"{provider_name}: no batch files of this deployment")
                continue
            self._table(
                ("provider", "file", "name", "bytes", "created", "batch", "status"),
                [
                    (
                        provider_name,
                        f.file.file_id,
                        f.file.name or "-",
                        str(f.file.size_bytes),
                        _when(f.file.created_at),
                        str(f.batch.pk) if f.batch else "-",
                        "leftover" if f.leftover else "in use",
                    )
                    for f in rows
                ],
            )

    # -- output --------------------------------------------------------------------------------

    def _table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        table = [tuple(header), *[tuple(r) for r in rows]]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            self.stdout.write(
                "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            )
