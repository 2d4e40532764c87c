"""`python manage.py dataset_import PATH --slug S --type phenotype|functional`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from clustering.services import DatasetImportError, dataset_import


class Command(BaseCommand):
    help = (
        "Import an entity x term table (CSV or TSV with columns entity_id, symbol, term_id, "
        "term_name, category). A file with any bad row imports nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--slug", required=True)
        parser.add_argument("--type", required=True, dest="kind", help="phenotype or functional")
        parser.add_argument("--name", default="")
        parser.add_argument("--source", default="")
        parser.add_argument("--licence", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            dataset = dataset_import(
                path=options["path"],
                slug=options["slug"],
                kind=options["kind"],
                name=options["name"],
                source=options["source"],
                licence=options["licence"],
            )
        except DatasetImportError as exc:
            self.stderr.write(f"error: nothing imported from {options['path']}:")
            for line in str(exc).splitlines():
                self.stderr.write(f"  {line}")
            sys.exit(2)
        self.stdout.write(
            f"Imported dataset {dataset.slug} ({dataset.kind}): {dataset.entity_count} entities, "
            f"{dataset.term_count} terms."
        )
