"""Benchmark: cluster each built-in dataset end to end and print wall seconds per step and peak
memory.

    python bench/clustering.py                 # both datasets, each in a fresh process
    python bench/clustering.py --dataset hpo-ndd

Steps: load (package -> annotation table), features, graph (cosine k-NN), leiden, enrichment,
store (database writes), total (load through store). Peak memory is the process's peak resident
set size (ru_maxrss), measured in a fresh process per dataset so the figures do not mix. Uses the
configured database (DATABASE_URL; default: the SQLite file) after migrating it.
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
STEPS = ("load", "features", "graph", "leiden", "enrichment", "store", "total")


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
    return {
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
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_one(args.child)))
        return
    slugs = args.dataset or ["hpo-ndd", "go-ndd"]
    header = ["dataset", "entities", "terms", "clusters", *STEPS, "peak MiB"]
    print(" | ".join(f"{h:>10}" for h in header))
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


if __name__ == "__main__":
    main()
