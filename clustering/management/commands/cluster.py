"""`python manage.py cluster --dataset hpo-ndd [--resolution R] [--seed S] [--k K]`.

Options are checked against the bounds of :mod:`clustering.domain.bounds` (including those that
depend on the dataset) before anything is written: a bad one is one line naming it, exit 2.
"""

from __future__ import annotations

import sys
from typing import IO, Any, cast

from django.core.management.base import BaseCommand, CommandParser
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clustering.domain.bounds import PARAM_BOUNDS
from clustering.domain.params import InvalidParameters
from clustering.management.bounded import add_bounded_arguments, bounded_values, usage_exit
from clustering.models import ClusteringRun, RunStatus
from clustering.selectors import cluster_display_terms, cluster_list
from clustering.services import (
    ActiveRunConflict,
    UnknownDatasetError,
    clustering_run_create,
    clustering_run_execute,
)


class Command(BaseCommand):
    help = "Cluster a dataset (Leiden on a cosine k-NN graph) and print its clusters."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dataset", required=True, help="dataset slug, e.g. hpo-ndd, go-ndd")
        add_bounded_arguments(parser, PARAM_BOUNDS)
        add_bounded_arguments(parser, ("top",), defaults={"top": 3})

    def handle(self, *args: Any, **options: Any) -> None:
        # rich writes raw text; Django's OutputWrapper would add newlines to progress updates
        console = Console(file=cast(IO[str], self.stdout._out), highlight=False)
        params = bounded_values(options, PARAM_BOUNDS, stderr=self.stderr)
        top = bounded_values(options, ("top",), stderr=self.stderr)["top"]
        try:
            run = clustering_run_create(
                dataset_slug=options["dataset"], params=params, exclusive=True
            )
        except InvalidParameters as exc:
            usage_exit(exc, self.stderr)
        except UnknownDatasetError as exc:
            self.stderr.write(f"error: --dataset: {exc}")
            sys.exit(2)
        except ActiveRunConflict as exc:
            self.stderr.write(
                f"error: --dataset: run {exc.run_id} of {options['dataset']} is still active; "
                "wait for it or cancel it"
            )
            sys.exit(2)
        run = self._execute(run, console)
        if run.status != RunStatus.SUCCEEDED:
            self.stderr.write(f"error: run {run.pk} failed: {run.error.splitlines()[0]}")
            sys.exit(1)
        self._print(run, console, top=top)

    def _execute(self, run: ClusteringRun, console: Console) -> ClusteringRun:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=not console.is_terminal,
        ) as bar:
            task = bar.add_task(f"Clustering {run.dataset.slug}", total=6)

            def on_progress(current: int, total: int, message: str) -> None:
                bar.update(task, completed=current, total=total, description=message)

            run = clustering_run_execute(run_id=run.pk, progress=on_progress)
            bar.update(task, completed=6, total=6, description="Done")
        return run

    def _print(self, run: ClusteringRun, console: Console, *, top: int) -> None:
        clusters = list(cluster_list(run=run))
        shown = cluster_display_terms(clusters=clusters, limit=top)
        table = Table(
            title=(
                f"Run {run.pk}: {run.dataset.slug} ({run.cluster_type}), {len(clusters)} clusters, "
                f"modularity {run.modularity:.3f}"
            )
        )
        table.add_column("cluster", justify="right")
        table.add_column("size", justify="right")
        table.add_column(f"top {top} non-redundant terms (FDR)")
        table.add_column("hash", style="dim")
        for cluster in clusters:
            terms = "; ".join(f"{t.term_name} ({t.fdr:.1e})" for t in shown[cluster.pk])
            table.add_row(
                str(cluster.number), str(cluster.size), terms or "-", cluster.composition_hash[:12]
            )
        console.print(table)
        if run.unclustered:
            console.print(
                f"{len(run.unclustered)} unclustered entities (communities smaller than "
                f"{run.params['min_cluster_size']}): "
                + ", ".join(symbol for _, symbol in run.unclustered[:20])
                + (" ..." if len(run.unclustered) > 20 else "")
            )
        console.print(f"Source: {run.dataset.release}. {run.dataset.licence}")
