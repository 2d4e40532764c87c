"""The apps depend one way: ``llm`` builds on ``clustering``, ``clustering`` knows nothing of
``llm`` (README, "Layout"). Run views, serializers and admin actions that show or start
summaries live in ``llm``; what clustering must ask of it (is a run still summarising?) goes
through a check ``llm`` registers (``clustering.services.active_run_check_register``).

The check reads the source, so a new import of ``llm`` anywhere under ``clustering/`` fails here
before it can grow into a cycle (migrations included: a clustering migration that depends on
llm would be the same wrong direction).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CLUSTERING = Path(__file__).resolve().parents[2] / "clustering"
FORBIDDEN = "llm"


def _is_forbidden(module: str) -> bool:
    return module == FORBIDDEN or module.startswith(FORBIDDEN + ".")


def forbidden_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of ``llm`` in ``source``: ``import llm...``,
    ``from llm... import ...``, and ``importlib.import_module`` / ``__import__`` with a literal
    ``llm...`` name. Relative imports stay inside their own package and are allowed."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _is_forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and _is_forbidden(node.module):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and _is_forbidden(first.value)
            ):
                found.append((node.lineno, first.value))
    return found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import llm\n", [(1, "llm")]),
        ("import os, llm.models as m\n", [(1, "llm.models")]),
        ("from llm.services.pipeline import pipeline_rerun\n", [(1, "llm.services.pipeline")]),
        ("def f():\n    from llm.models import GenerationJob\n", [(2, "llm.models")]),
        ("import importlib\nimportlib.import_module('llm.selectors')\n", [(2, "llm.selectors")]),
        ("__import__('llm')\n", [(1, "llm")]),
        ("from . import llm_like\nimport llmx\nfrom .models import Cluster\n", []),
        ('"""Mentions llm.selectors in prose only."""\n', []),
    ],
)
def test_the_checker_finds_every_form_of_import(
    source: str, expected: list[tuple[int, str]]
) -> None:
    assert forbidden_imports(source) == expected


def test_clustering_imports_nothing_from_llm() -> None:
    files = sorted(CLUSTERING.rglob("*.py"))
    assert len(files) > 20, "the clustering package was not found"
    offenders = [
        f"{path.relative_to(CLUSTERING.parent)}:{line}: {module}"
        for path in files
        for line, module in forbidden_imports(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "clustering must not import llm:\n" + "\n".join(offenders)


def test_clustering_templates_name_nothing_of_llm() -> None:
    # templates reach other apps through {% url %} names and context, which an import check
    # cannot see: templates that show summaries belong to llm/templates/
    offenders = [
        str(path.relative_to(CLUSTERING.parent))
        for path in sorted(CLUSTERING.rglob("*.html"))
        if "llm" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
