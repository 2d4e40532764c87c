"""`python manage.py run_pipeline --dataset D [--provider P] [--force]`: clustering, summaries
and judging, with a progress bar, then a table of clusters and the job's totals.

The last line says whether every cluster has a summary: ``ok: ...`` and exit code 0 when all
succeeded, were rejected by the judge (stored for review) or were served from the cache;
``error: N of M clusters failed ...`` on stderr and exit code 1 otherwise (2: bad arguments)."""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any, cast

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections, connection
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clustering.domain.bounds import PARAM_BOUNDS
from clustering.domain.params import InvalidParameters
from clustering.management.bounded import add_bounded_arguments, bounded_values, usage_exit
from clustering.models import ClusteringRun, RunStatus
from clustering.selectors import cluster_display_terms
from clustering.services import UnknownDatasetError
from llm.models import TERMINAL_STATES, GenerationJob, JobStatus, SummaryTask, TaskState
from llm.providers.registry import ProviderNotConfigured
from llm.services.pipeline import ActiveRunConflict, pipeline_start
from llm.tasks import pipeline_chain

FINAL_JOB = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
#: run parameters with a command-line option (bounds: clustering.domain.bounds)
RUN_OPTIONS = tuple(PARAM_BOUNDS)


def job_outcome(job: GenerationJob) -> tuple[bool, str]:
    """(whether every cluster of ``job`` has a summary, the sentence that says so).

    Success: every task succeeded, was rejected by the judge after its attempts (the summary
    is stored as rejected, with the reasoning, for review) or was skipped with a summary (served
    from the cache, or kept under a curator's lock). Failure: any task failed, was skipped with
    no summary (no provider key, job cancelled) or is unfinished, or the job itself did not
    succeed.
    """
    tasks = list(SummaryTask.objects.filter(job=job).values_list("state", "summary_id"))
    total = len(tasks)
    failed = sum(1 for state, _ in tasks if state == TaskState.FAILED)
    cached = sum(1 for state, sid in tasks if state == TaskState.SKIPPED and sid is not None)
    missing = sum(1 for state, sid in tasks if state == TaskState.SKIPPED and sid is None)
    unfinished = sum(1 for state, _ in tasks if state not in TERMINAL_STATES)
    rejected = sum(1 for state, _ in tasks if state == TaskState.REJECTED)
    generated = total - failed - cached - missing - unfinished
    if failed or missing or unfinished or job.status != JobStatus.SUCCEEDED:
        parts = [f"{failed} of {total} clusters failed"]
        if missing:
            parts.append(f"{missing} skipped without a summary")
        if unfinished:
            parts.append(f"{unfinished} unfinished")
        if job.status != JobStatus.SUCCEEDED:
            parts.append(f"job {job.pk} {job.status}")
        reason = f": {job.message}" if job.message else ""
        return False, f"{', '.join(parts)}{reason} (exit code 1)"
    return True, (
        f"all {total} clusters have a summary: {generated} generated "
        f"({rejected} rejected by the judge), {cached} served from the cache"
    )


class Command(BaseCommand):
    help = "Cluster a dataset, summarise and judge every cluster, print the results."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dataset", required=True, help="dataset slug, e.g. hpo-ndd, go-ndd")
        parser.add_argument("--provider", help="extractive or gemini (default: LLM_PROVIDER)")
        parser.add_argument("--model", help="generation model (default: LLM_MODEL or provider's)")
        parser.add_argument(
            "--judge-model", help="judge model (default: LLM_JUDGE_MODEL or the generation model)"
        )
        parser.add_argument("--force", action="store_true", help="regenerate cached summaries")
        add_bounded_arguments(parser, RUN_OPTIONS)
        parser.add_argument("--timeout", type=float, default=7200.0, help="seconds to wait")

    def handle(self, *args: Any, **options: Any) -> None:
        # rich writes raw text; Django's OutputWrapper would add newlines to progress updates
        console = Console(file=cast(IO[str], self.stdout._out), highlight=False)
        params = bounded_values(options, RUN_OPTIONS, stderr=self.stderr)
        eager = settings.CELERY_TASK_ALWAYS_EAGER
        try:
            run = pipeline_start(
                dataset_slug=options["dataset"],
                params=params,
                provider=options["provider"],
                model=options["model"],
                judge_model=options["judge_model"],
                force=options["force"],
                enqueue=not eager,
            )
        except InvalidParameters as exc:
            usage_exit(exc, self.stderr)
        except ActiveRunConflict as exc:
            self.stderr.write(
                f"error: --dataset: run {exc.run_id} of {options['dataset']} is still active; "
                "wait for it or cancel it"
            )
            sys.exit(2)
        except (UnknownDatasetError, ProviderNotConfigured) as exc:
            self.stderr.write(f"error: {exc}")
            sys.exit(2)
        worker: threading.Thread | None = None
        failure: list[BaseException] = []
        if eager:
            # Eager Celery runs the chain in the calling thread; run it beside the progress bar.
            def target() -> None:
                try:
                    pipeline_chain(run_id=run.pk).apply_async()
                except BaseException as exc:  # shown after the bar
                    failure.append(exc)
                finally:
                    connection.close()

            if connection.vendor == "sqlite":
                connection.close()  # the worker thread gets its own connection
            worker = threading.Thread(target=target, daemon=True)
            worker.start()
        job = self._follow(run.pk, console, options["timeout"], worker)
        if failure:
            raise failure[0]
        run.refresh_from_db()
        if run.status != RunStatus.SUCCEEDED:
            self.stderr.write(f"error: clustering run {run.pk} failed: {run.error.splitlines()[0]}")
            sys.exit(1)
        if job is None:
            self.stderr.write("error: the summary job did not start; is a worker running?")
            sys.exit(1)
        self._print(job, console)
        ok, outcome = job_outcome(job)
        if not ok:
            self.stdout.flush()
            self.stderr.write(f"error: {outcome}")
            sys.exit(1)
        console.print(f"ok: {outcome}")

    def _follow(
        self, run_id: int, console: Console, timeout: float, worker: threading.Thread | None
    ) -> GenerationJob | None:
        deadline = time.monotonic() + timeout
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=not console.is_terminal,
        ) as bar:
            task = bar.add_task("Clustering", total=6)
            while time.monotonic() < deadline:
                close_old_connections()
                run = ClusteringRun.objects.get(pk=run_id)
                job = GenerationJob.objects.filter(run_id=run_id, scope="run").first()
                if job is not None and job.progress_total:
                    bar.update(
                        task,
                        completed=job.progress_current,
                        total=job.progress_total,
                        description=job.progress_message or "Summarising",
                    )
                elif run.status in (RunStatus.PENDING, RunStatus.RUNNING):
                    bar.update(
                        task,
                        completed=run.progress_current,
                        total=max(run.progress_total, 1),
                        description=run.progress_message or "Clustering",
                    )
                if run.status == RunStatus.FAILED:
                    return job
                if job is not None and job.status in FINAL_JOB:
                    return job
                if worker is not None and not worker.is_alive():
                    return GenerationJob.objects.filter(run_id=run_id, scope="run").first()
                time.sleep(0.3)
        self.stderr.write(f"error: gave up waiting after {timeout:.0f} s")
        sys.exit(1)

    def _print(self, job: GenerationJob, console: Console) -> None:
        tasks = list(
            SummaryTask.objects.filter(job=job)
            .select_related("cluster", "summary")
            .order_by("cluster__number")
        )
        table = Table(title=f"Run {job.run_id}: summaries by {job.provider} ({job.model})")
        table.add_column("cluster", justify="right")
        table.add_column("size", justify="right")
        table.add_column("task")
        table.add_column("status")
        table.add_column("verdict")
        table.add_column("stability", justify="right")
        table.add_column("confidence")
        table.add_column("top evidence (FDR)")
        table.add_column("summary (first sentence) or reason")
        shown = cluster_display_terms(clusters=[t.cluster for t in tasks], limit=2)
        for t in tasks:
            summary = t.summary
            if summary is not None:
                text = summary.summary_text.split(". ")[0][:160]
                status, verdict = summary.validation_status, summary.judge_verdict or "-"
            else:
                text, status, verdict = t.last_error[:160], "-", "-"
            terms = "; ".join(f"{x.term_name} ({x.fdr:.0e})" for x in shown[t.cluster.pk])
            stability = t.cluster.stability
            table.add_row(
                str(t.cluster.number),
                str(t.cluster.size),
                t.state,
                status,
                verdict,
                "-" if stability is None else f"{stability:.2f}",
                t.cluster.derived_confidence or "-",
                terms,
                text,
            )
        console.print(table)
        console.print(
            f"total {job.total}: succeeded {job.succeeded}, rejected {job.rejected}, "
            f"failed {job.failed}, skipped {job.skipped} | tokens in {job.input_tokens}, "
            f"out {job.output_tokens} | cost ${job.cost_usd:.4f}"
        )
        if job.message:
            console.print(f"note: {job.message}")
        run = job.run
        if run.redrives:
            intent = run.intent or {}
            console.print(
                f"note: the reconciler re-drove run {run.pk} {run.redrives} time(s) after it "
                f"stalled; it kept its intent (provider {intent.get('provider', job.provider)}, "
                f"force {'on' if intent.get('force', job.force) else 'off'})"
            )
        console.print(f"Source: {job.run.dataset.release}. {job.run.dataset.licence}")
