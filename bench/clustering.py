"""Benchmark: cluster each built-in dataset end to end and print wall seconds per step and peak
memory.

    python bench/clustering.py                 # both datasets, each in a fresh process
    python bench/clustering.py --dataset hpo-ndd

Steps: load (package -> annotation table), features, graph (cosine k-NN), leiden, enrichment
(both tails, evidence selection, traits), stability (default 10 subsamples of 80%), null_model
(default 10 degree-preserving rewirings), store (database writes), total (load through store).
``--cluster-table`` also prints, per cluster, the quality figures of docs/quality.md. Peak
memory is the process's peak resident set size (ru_maxrss), measured in a fresh process per
dataset so the figures do not mix. Uses the configured database (DATABASE_URL; default: the
SQLite file) after migrating it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = (
    "load",
    "features",
    "graph",
    "leiden",
    "enrichment",
    "stability",
    "null_model",
    "store",
    "total",
)


def _one(slug: str) -> dict[str, object]:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from clustering.services import clustering_run_create, clustering_run_execute

    call_command("migrate", verbosity=0)
    run = clustering_run_create(dataset_slug=slug)
    run = clustering_run_execute(run_id=run.pk)
    if run.status != "succeeded":
        raise SystemExit(f"run failed: {run.error}")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = []
    for cluster in run.clusters.order_by("number"):
        top = cluster.terms.filter(direction="enriched", evidence_rank__isnull=False).order_by(
            "evidence_rank", "fdr"
        )[:2]
        syndromicity = (cluster.traits or {}).get("syndromicity") or {}
        rows.append(
            {
                "number": cluster.number,
                "size": cluster.size,
                "stability": cluster.stability,
                "modularity_z": cluster.modularity_z,
                "specificity": cluster.specificity,
                "derived_confidence": cluster.derived_confidence,
                "syndromicity": syndromicity.get("call", ""),
                "top": [t.term_name for t in top],
            }
        )
    return {
        "quality": run.quality,
        "rows": rows,
        "dataset": slug,
        "entities": run.dataset.entity_count,
        "terms": run.dataset.term_count,
        "clusters": run.clusters.count(),
        "timings": run.timings,
        "peak_rss_mib": round(peak_mib, 1),
    }


def main() -> None:
    """Parse arguments, run each dataset in its own process, print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", help="slug; repeatable (default: both)")
    parser.add_argument(
        "--cluster-table", action="store_true", help="also print the per-cluster quality table"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_one(args.child)))
        return
    slugs = args.dataset or ["hpo-ndd", "go-ndd"]
    header = ["dataset", "entities", "terms", "clusters", *STEPS, "peak MiB"]
    print(" | ".join(f"{h:>10}" for h in header))
    tables: list[tuple[str, dict[str, object]]] = []
    for slug in slugs:
        out = subprocess.run(
            [sys.executable, __file__, "--child", slug],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        timings = result["timings"]
        cells = [slug, result["entities"], result["terms"], result["clusters"]]
        cells += [f"{timings.get(step, 0.0):.2f}s" for step in STEPS]
        cells.append(result["peak_rss_mib"])
        print(" | ".join(f"{c!s:>10}" for c in cells))
        tables.append((slug, result))
    if args.cluster_table:
        for slug, result in tables:
            _print_table(slug, result)


def _print_table(slug: str, result: dict[str, object]) -> None:
    """One markdown row per cluster: size, stability, modularity z, specificity, derived
    confidence, syndromicity call and the first two evidence terms."""
    quality = result["quality"]
    assert isinstance(quality, dict)
    print(f"\n{slug}: run modularity z {quality.get('modularity_z')}")
    print("| cluster | size | stability | modularity z | specificity | derived confidence "
          "| syndromicity | first evidence terms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    rows = result["rows"]
    assert isinstance(rows, list)
    for row in rows:
        stability = "-" if row["stability"] is None else f"{row['stability']:.2f}"
        z = "-" if row["modularity_z"] is None else f"{row['modularity_z']:.0f}"
        print(
            f"| {row['number']} | {row['size']} | {stability} | {z} | {row['specificity']:.2f} "
            f"| {row['derived_confidence']} | {row['syndromicity'] or '-'} "
            f"| {'; '.join(row['top'])} |"
        )


if __name__ == "__main__":
    main()
