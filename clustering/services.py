"""Writes: datasets, dataset import, clustering runs (DESIGN.md: services are plain functions)."""

from __future__ import annotations

import csv
import io
import logging
import time
import traceback
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from clustering.datasets.registry import BUILTIN_DATASETS
from clustering.domain.annotations import AnnotationTable, annotation_table_build
from clustering.domain.params import CLUSTER_TYPES, ClusteringParams, InvalidParameters
from clustering.domain.pipeline import (
    TOTAL_STEPS,
    ClusteringResult,
    ClusterResult,
    cluster_table,
    library_versions,
)

from .liveness import RunCancelled, RunHeartbeat, progress_write
from .models import (
    ACTIVE_RUN_STATES,
    Cluster,
    ClusteringRun,
    Dataset,
    DatasetAnnotation,
    RunStatus,
    TermEnrichment,
)

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]

#: Largest file `dataset_import` accepts, in bytes.
MAX_IMPORT_BYTES = 200 * 1024 * 1024
IMPORT_COLUMNS = ("entity_id", "symbol", "term_id", "term_name", "category")
# Longest value per column: the database column's length (a longer one would fail the insert).
_COLUMN_LIMITS: dict[str, int] = {
    name: int(getattr(DatasetAnnotation._meta.get_field(name), "max_length", 0) or 0)
    for name in IMPORT_COLUMNS
}


class UnknownDatasetError(LookupError):
    """No dataset with that slug, neither built in nor imported."""

    def __init__(self, slug: str, known: list[str]) -> None:
        self.slug = slug
        self.known = known
        super().__init__(f"unknown dataset {slug!r}; known datasets: {', '.join(known) or 'none'}")


class DatasetImportError(ValueError):
    """An import file has errors; nothing was imported. ``errors`` holds one line per problem,
    prefixed with the file's line number where there is one."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        shown = errors[:50]
        more = f"\n... and {len(errors) - 50} more" if len(errors) > 50 else ""
        super().__init__("\n".join(shown) + more)


def dataset_get(*, slug: str) -> Dataset:
    """The dataset with ``slug``; a built-in one is registered on first use.

    Raises:
        UnknownDatasetError: no such dataset.
    """
    existing = Dataset.objects.filter(slug=slug).first()
    if existing is not None:
        return existing
    spec = BUILTIN_DATASETS.get(slug)
    if spec is None:
        known = sorted(set(BUILTIN_DATASETS) | set(Dataset.objects.values_list("slug", flat=True)))
        raise UnknownDatasetError(slug, known)
    release = spec.release()
    dataset, _ = Dataset.objects.get_or_create(
        slug=slug,
        defaults={
            "name": spec.name,
            "kind": spec.kind,
            "builtin": True,
            "source": spec.source,
            "release": release,
            "licence": spec.licence.format(release=release),
        },
    )
    return dataset


def dataset_table_load(*, dataset: Dataset) -> AnnotationTable:
    """Load the annotation table of a dataset and refresh its release and counts.

    Built-in datasets come from their installed package; imported ones from the database.

    Raises:
        EmptyDatasetError: the dataset has no annotations.
    """
    if dataset.builtin:
        spec = BUILTIN_DATASETS[dataset.slug]
        table = spec.load()
        release = spec.release()
        licence = spec.licence.format(release=release)
    else:
        rows = DatasetAnnotation.objects.filter(dataset=dataset).values_list(
            "entity_id", "symbol", "term_id", "term_name", "category"
        )
        table = annotation_table_build(rows.iterator(chunk_size=10_000))
        release, licence = dataset.release, dataset.licence
    changed = (dataset.entity_count, dataset.term_count, dataset.release, dataset.licence) != (
        table.n_entities,
        table.n_terms,
        release,
        licence,
    )
    if changed:
        dataset.entity_count, dataset.term_count = table.n_entities, table.n_terms
        dataset.release, dataset.licence = release, licence
        dataset.save(
            update_fields=["entity_count", "term_count", "release", "licence", "updated_at"]
        )
    return table


#: Bidirectional formatting characters: embeddings and overrides U+202A-U+202E, isolates
#: U+2066-U+2069, marks U+200E, U+200F and U+061C. They can make a name display as another.
BIDI_CONTROLS = frozenset(
    [*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A)), *"\u200e\u200f\u061c"]
)


def unsafe_characters(value: str) -> str:
    """ "" when ``value`` is safe to show, else a description of its first forbidden characters
    (e.g. ``"control character U+000A"``): control characters (Unicode category Cc: NUL, line
    breaks, tabs, DEL, C1), line and paragraph separators (U+2028, U+2029) and the bidi
    formatting characters of :data:`BIDI_CONTROLS`."""
    for char in value:
        if unicodedata.category(char) == "Cc" or char in "\u2028\u2029":
            return f"control character U+{ord(char):04X}"
        if char in BIDI_CONTROLS:
            return f"bidirectional control character U+{ord(char):04X}"
    return ""


@dataclass(frozen=True)
class _ParsedImport:
    rows: list[tuple[str, str, str, str, str]]
    n_entities: int
    n_terms: int


def _parse_import_file(path: Path) -> _ParsedImport:
    errors: list[str] = []
    if not path.is_file():
        raise DatasetImportError([f"{path}: no such file"])
    size = path.stat().st_size
    if size == 0:
        raise DatasetImportError([f"{path}: the file is empty"])
    if size > MAX_IMPORT_BYTES:
        raise DatasetImportError(
            [f"{path}: {size} bytes is larger than the {MAX_IMPORT_BYTES} byte limit"]
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetImportError(
            [f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]
        ) from None
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if path.suffix.lower() in {".tsv", ".tab"} or "\t" in first_line else ","
    # newline="": line breaks inside quoted cells are kept, and only \n, \r and \r\n end a line
    # (str.splitlines would also split on \u2028, \x85, \x1c ... and drop quoted breaks)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except (StopIteration, csv.Error) as exc:
        raise DatasetImportError([f"line 1: cannot read the header ({exc})"]) from None
    missing = [c for c in IMPORT_COLUMNS if c not in header]
    if missing:
        raise DatasetImportError(
            [
                f"line 1: missing column(s) {', '.join(missing)}; "
                f"expected {', '.join(IMPORT_COLUMNS)}"
            ]
        )
    index = {c: header.index(c) for c in IMPORT_COLUMNS}
    symbol_of: dict[str, tuple[str, int]] = {}
    term_of: dict[str, tuple[str, str, int]] = {}
    seen: set[tuple[str, str]] = set()
    rows: list[tuple[str, str, str, str, str]] = []
    line_no = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(f"line {reader.line_num}: malformed CSV ({exc})")
            break
        line_no = reader.line_num
        if not record or all(not cell.strip() for cell in record):
            continue
        if len(record) != len(header):
            errors.append(f"line {line_no}: expected {len(header)} fields, found {len(record)}")
            continue
        values = {c: record[i].strip() for c, i in index.items()}
        empty = [c for c, v in values.items() if not v]
        if empty:
            errors.append(f"line {line_no}: empty {', '.join(empty)}")
            continue
        too_long = [c for c, v in values.items() if len(v) > _COLUMN_LIMITS[c]]
        if too_long:
            errors.append(
                f"line {line_no}: value too long in "
                + ", ".join(f"{c} (at most {_COLUMN_LIMITS[c]} characters)" for c in too_long)
            )
            continue
        unsafe = [f"{c} ({found})" for c, v in values.items() if (found := unsafe_characters(v))]
        if unsafe:
            errors.append(f"line {line_no}: forbidden character in {', '.join(unsafe)}")
            continue
        entity_id, symbol = values["entity_id"], values["symbol"]
        term_id, term_name, category = values["term_id"], values["term_name"], values["category"]
        prior = symbol_of.setdefault(entity_id, (symbol, line_no))
        if prior[0] != symbol:
            errors.append(
                f"line {line_no}: entity {entity_id} has symbol {symbol!r} but {prior[0]!r} "
                f"on line {prior[1]}"
            )
            continue
        prior_term = term_of.setdefault(term_id, (term_name, category, line_no))
        if prior_term[:2] != (term_name, category):
            errors.append(
                f"line {line_no}: term {term_id} is {term_name!r} ({category}) but "
                f"{prior_term[0]!r} ({prior_term[1]}) on line {prior_term[2]}"
            )
            continue
        if (entity_id, term_id) in seen:
            continue  # exact repeats are harmless
        seen.add((entity_id, term_id))
        rows.append((entity_id, symbol, term_id, term_name, category))
    if not errors and not rows:
        errors.append(f"{path}: no data rows after the header")
    if errors:
        raise DatasetImportError(errors)
    return _ParsedImport(rows=rows, n_entities=len(symbol_of), n_terms=len(term_of))


def dataset_import(
    *, path: Path, slug: str, kind: str, name: str = "", source: str = "", licence: str = ""
) -> Dataset:
    """Import a user's entity x term table from CSV or TSV (columns entity_id, symbol, term_id,
    term_name, category; any order, header required; ``.tsv``/tabs detected).

    All or nothing: a file with any bad row imports nothing, and an existing dataset is never
    touched (the slug must be new).

    Raises:
        DatasetImportError: every problem found, with line numbers.
    """
    problems: list[str] = []
    if kind not in CLUSTER_TYPES:
        problems.append(f"--type must be one of {', '.join(CLUSTER_TYPES)}, got {kind!r}")
    slug_limit = Dataset._meta.get_field("slug").max_length or 0
    if len(slug) > slug_limit:
        problems.append(f"slug {slug[:20]!r}... is longer than {slug_limit} characters")
    name_limit = Dataset._meta.get_field("name").max_length or 0
    if len(name) > name_limit:
        problems.append(f"name is longer than {name_limit} characters")
    for option, value in (("--name", name), ("--source", source), ("--licence", licence)):
        if found := unsafe_characters(value.replace("\n", "") if option == "--licence" else value):
            problems.append(f"{option}: forbidden {found}")
    if slug in BUILTIN_DATASETS or Dataset.objects.filter(slug=slug).exists():
        problems.append(f"a dataset with slug {slug!r} already exists; choose another slug")
    from django.core.validators import validate_slug

    try:
        validate_slug(slug)
    except Exception:
        problems.append(f"slug {slug!r} must use letters, digits, hyphens and underscores only")
    if problems:
        raise DatasetImportError(problems)
    parsed = _parse_import_file(path)
    with transaction.atomic():
        dataset = Dataset.objects.create(
            slug=slug,
            name=name or slug,
            kind=kind,
            builtin=False,
            source=source or f"imported from {path.name}",
            release=timezone.now().date().isoformat(),
            licence=licence,
            entity_count=parsed.n_entities,
            term_count=parsed.n_terms,
        )
        DatasetAnnotation.objects.bulk_create(
            (
                DatasetAnnotation(
                    dataset=dataset,
                    entity_id=e,
                    symbol=s,
                    term_id=t,
                    term_name=n,
                    category=c,
                )
                for e, s, t, n, c in parsed.rows
            ),
            batch_size=5000,
        )
    return dataset


class ActiveRunConflict(Exception):
    """A run of the same dataset and cluster type is still active; ``run_id`` names it."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id} on the same dataset and cluster type is still active")


#: Checks other apps register (:func:`active_run_check_register`), each called as
#: ``check(dataset=..., cluster_type=...)`` -> a run it keeps busy after clustering, or None.
_active_run_checks: list[Callable[..., ClusteringRun | None]] = []


def active_run_check_register(check: Callable[..., ClusteringRun | None]) -> None:
    """Count ``check``'s runs as active in :func:`active_run` too (once, however often it is
    registered): how ``llm`` (a run is active while it summarises, registered in its
    ``AppConfig.ready``) extends the one-active-run rule without clustering knowing it."""
    if check not in _active_run_checks:
        _active_run_checks.append(check)


def active_run(*, dataset: Dataset, cluster_type: str) -> ClusteringRun | None:
    """The run of this dataset and type that is still clustering (pending, running) or that a
    registered check finds busy (with llm: its generation job pending or running), if any."""
    running = ClusteringRun.objects.filter(
        dataset=dataset, cluster_type=cluster_type, status__in=ACTIVE_RUN_STATES
    ).first()
    if running is not None:
        return running
    for check in _active_run_checks:
        busy = check(dataset=dataset, cluster_type=cluster_type)
        if busy is not None:
            return busy
    return None


def _entity_count(dataset: Dataset) -> int:
    """The dataset's number of entities; a built-in dataset never loaded is loaded once."""
    if dataset.entity_count == 0 and dataset.builtin:
        dataset_table_load(dataset=dataset)
    return dataset.entity_count


def clustering_run_create(
    *,
    dataset_slug: str,
    params: dict[str, Any] | None = None,
    cluster_type: str | None = None,
    exclusive: bool = False,
) -> ClusteringRun:
    """Validate and record a new run (status pending); it does not start it.

    ``cluster_type`` must be the dataset's kind (the default). Parameters are checked against
    their bounds (:mod:`clustering.domain.bounds`), including those that depend on the dataset's
    number of entities. With ``exclusive``, the dataset's row is locked (``SELECT ... FOR
    UPDATE``, held until the caller's transaction commits) and no run is created while another
    run of the same dataset and type is active: two simultaneous requests cannot both pass.

    Raises:
        UnknownDatasetError: unknown dataset.
        InvalidParameters: bad parameters or cluster type, one message per field.
        ActiveRunConflict: ``exclusive`` and a run of the dataset and type is active.
    """
    dataset = dataset_get(slug=dataset_slug)
    checked = ClusteringParams.from_dict(params or {})
    chosen_type = cluster_type or dataset.kind
    if chosen_type not in CLUSTER_TYPES:
        raise InvalidParameters(
            {"cluster_type": f"must be one of {', '.join(CLUSTER_TYPES)}, got {chosen_type!r}"}
        )
    if chosen_type != dataset.kind:
        raise InvalidParameters(
            {
                "cluster_type": f"dataset {dataset.slug} is {dataset.kind}: cluster_type must be "
                f"{dataset.kind!r} or omitted, got {chosen_type!r}"
            }
        )
    checked.dataset_check(n_entities=_entity_count(dataset))
    with transaction.atomic():
        if exclusive:
            Dataset.objects.select_for_update().get(pk=dataset.pk)
            busy = active_run(dataset=dataset, cluster_type=chosen_type)
            if busy is not None:
                raise ActiveRunConflict(busy.pk)
        return ClusteringRun.objects.create(
            dataset=dataset, cluster_type=chosen_type, params=checked.to_dict()
        )


def failure_reason(exc: BaseException) -> str:
    """One line saying why a clustering run failed; the worker's time and memory limits are
    named with the setting that sets them."""
    from celery.exceptions import SoftTimeLimitExceeded
    from django.conf import settings

    if isinstance(exc, SoftTimeLimitExceeded):
        return (
            "time limit: clustering took longer than the worker's soft time limit of "
            f"{settings.CELERY_TASK_SOFT_TIME_LIMIT} s (CELERY_TASK_TIME_LIMIT); use a smaller "
            "k, fewer stability_repeats or null_repeats, or raise the limit"
        )
    if isinstance(exc, MemoryError):
        limit = getattr(settings, "CELERY_WORKER_MEMORY_LIMIT_MB", 0)
        where = f" of {limit} MB (CELERY_WORKER_MEMORY_LIMIT_MB)" if limit else ""
        return (
            f"memory limit: clustering needed more memory than the worker's limit{where}; use a "
            "smaller k or raise the limit"
        )
    return f"{type(exc).__name__}: {exc}"


def _progress_writer(run_id: int, extra: ProgressCallback | None) -> ProgressCallback:
    def write(current: int, total: int, message: str) -> None:
        progress_write(run_id, current, total, message)  # raises RunCancelled
        logger.info("clustering run %s: step %s/%s %s", run_id, current, total, message)
        if extra is not None:
            extra(current, total, message)

    return write


def _store_result(run: ClusteringRun, result: ClusteringResult) -> None:
    def signature(c: ClusterResult) -> list[dict[str, Any]]:
        position = {index: i for i, index in enumerate(c.member_indices)}
        return [
            {
                "id": c.member_ids[position[index]],
                "symbol": c.member_symbols[position[index]],
                "strength": round(strength, 4),
            }
            for index, strength in c.signature
        ]

    clusters = Cluster.objects.bulk_create(
        Cluster(
            run=run,
            number=c.number,
            size=len(c.member_ids),
            members=[
                {"id": i, "symbol": s} for i, s in zip(c.member_ids, c.member_symbols, strict=True)
            ],
            composition_hash=c.composition_hash,
            quality=c.quality,
            stability=c.stability,
            modularity_z=c.modularity_z,
            specificity=c.specificity,
            specificity_term=c.specificity_term,
            derived_confidence=c.derived_confidence,
            signature_members=signature(c),
            traits=c.traits,
        )
        for c in result.clusters
    )
    TermEnrichment.objects.bulk_create(
        (
            TermEnrichment(
                cluster=row,
                category=t.category,
                term_id=t.term_id,
                term_name=t.term_name,
                overlap=t.overlap,
                term_size=t.term_size,
                p_value=t.p_value,
                fdr=t.fdr,
                fold_enrichment=t.fold_enrichment,
                overlap_members=t.overlap_members,
                ancestor_ids=t.ancestor_ids,
                direction=t.direction,
                elim_p_value=t.elim_p_value,
                evidence_rank=t.evidence_rank,
                represents=t.represents,
                hidden_by=t.hidden_by,
                branches=list(t.branches),
            )
            for row, c in zip(clusters, result.clusters, strict=True)
            for t in c.enrichment
        ),
        batch_size=2000,
    )


def clustering_run_execute(
    *, run_id: int, progress: ProgressCallback | None = None, task_id: str = ""
) -> ClusteringRun:
    """Run a clustering run to completion and store its clusters, idempotently.

    A run already succeeded, failed or cancelled is returned as it is (a redelivered task does
    nothing). A run left ``running`` by a dead worker is computed again; results are stored in
    one transaction under a row lock, so readers never see half a run and a second worker that
    finishes later finds the run done. While it computes, the run's heartbeat is renewed
    (:class:`~clustering.liveness.RunHeartbeat`) and, between steps, a cancelled run stops:
    nothing more is computed or stored and the run stays cancelled. ``task_id`` (the Celery
    task's id) is recorded so that a cancel can revoke the task. Failures are recorded on the
    run (status failed, error), not raised: a bad dataset must not make the broker redeliver
    forever.

    Raises:
        ClusteringRun.DoesNotExist: no run with that id.
    """
    run = ClusteringRun.objects.select_related("dataset").get(pk=run_id)
    if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
        return run
    now = timezone.now()
    claimed = ClusteringRun.objects.filter(pk=run_id, status__in=ACTIVE_RUN_STATES).update(
        status=RunStatus.RUNNING,
        started_at=now,
        heartbeat_at=now,
        task_id=task_id[:64],
        attempts=run.attempts + 1,
        error="",
    )
    if not claimed:  # finished or cancelled since it was read
        return ClusteringRun.objects.get(pk=run_id)
    try:
        with RunHeartbeat(run_id):
            return _compute(run, progress)
    except RunCancelled:
        logger.info("clustering run %s cancelled: stopped computing", run_id)
        return ClusteringRun.objects.get(pk=run_id)


def _compute(run: ClusteringRun, progress: ProgressCallback | None) -> ClusteringRun:
    run_id = run.pk
    write = _progress_writer(run_id, progress)
    started = time.perf_counter()
    try:
        params = ClusteringParams.from_dict(run.params)
        steps = TOTAL_STEPS + 1
        write(0, steps, f"Loading dataset {run.dataset.slug}")
        t0 = time.perf_counter()
        table = dataset_table_load(dataset=run.dataset)
        load_seconds = time.perf_counter() - t0
        params.dataset_check(n_entities=table.n_entities)

        def shifted(current: int, total: int, message: str) -> None:
            write(current + 1, total + 1, message)

        result = cluster_table(table, params, cluster_type=run.cluster_type, progress=shifted)
        t0 = time.perf_counter()
        with transaction.atomic():
            locked = ClusteringRun.objects.select_for_update().get(pk=run_id)
            if locked.status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED):
                return locked
            Cluster.objects.filter(run=locked).delete()  # leftovers of nothing: stored atomically
            _store_result(locked, result)
            timings = {"load": load_seconds, **result.timings}
            timings["store"] = time.perf_counter() - t0
            timings["total"] = time.perf_counter() - started
            locked.status = RunStatus.SUCCEEDED
            locked.modularity = result.modularity
            locked.n_features = result.n_features
            locked.n_edges = result.n_edges
            locked.unclustered = [list(pair) for pair in result.unclustered]
            locked.library_versions = library_versions()
            locked.timings = timings
            locked.quality = result.quality
            locked.evidence_method = result.evidence_method
            locked.progress_current = locked.progress_total = steps
            locked.progress_message = (
                f"Done: {len(result.clusters)} clusters, {len(result.unclustered)} unclustered"
            )
            locked.finished_at = timezone.now()
            locked.save()
            return locked
    except RunCancelled:
        raise
    except Exception as exc:  # MemoryError and SoftTimeLimitExceeded included
        logger.exception("clustering run %s failed", run_id)
        reason = failure_reason(exc)
        ClusteringRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
            status=RunStatus.FAILED,
            error=f"{reason}\n{traceback.format_exc(limit=5)}"[:10_000],
            finished_at=timezone.now(),
            progress_message=f"Failed: {reason}"[:300],
        )
        return ClusteringRun.objects.get(pk=run_id)
