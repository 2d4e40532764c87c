"""Property-based tests of ``clustering.services.dataset_import`` (CSV/TSV, all or nothing).

Hypothesis writes whole files: a header with the five columns in any order (any case, padded,
extra columns), CSV or TSV, ``\\n`` or ``\\r\\n`` line ends, an optional BOM, blank and
whitespace-only lines, unicode everywhere (quotes, delimiters, line breaks and other line
separators inside quoted cells), padded cells, exact repeats, and a mix of bad rows (wrong
field count, empty cell, value longer than its column, a control or bidi formatting character
(NUL, line breaks, C0/C1 controls, U+2028/9, U+202A-E, U+2066-9, U+200E/F, U+061C), an
entity with two symbols, a term with two names, an unterminated quote). An independent oracle
knows which rows are good and on which line each bad row ends. The property: a file without
errors imports exactly its distinct good rows (values stripped, nothing altered); a file with
errors raises
``DatasetImportError`` naming the line of every bad row and leaves the database as it was;
nothing else is ever raised.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clustering.models import Dataset, DatasetAnnotation
from clustering.services import IMPORT_COLUMNS, DatasetImportError, dataset_import

pytestmark = [pytest.mark.security, pytest.mark.django_db]

#: Longest value per column: the model's max_length (what PostgreSQL accepts).
LIMITS: dict[str, int] = {
    name: int(getattr(DatasetAnnotation._meta.get_field(name), "max_length", 0))
    for name in IMPORT_COLUMNS
}
Row = tuple[str, str, str, str, str]
BAD_KINDS = ("fields", "empty", "long", "unsafe", "symbol", "term")
#: Characters a value may not hold (injected by the "unsafe" bad kind).
_UNSAFE = ["\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029"]
_UNSAFE += ["\u202a", "\u202e", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c"]


def _unsafe(value: str) -> bool:
    """The oracle's rule: control characters (category Cc), line/paragraph separators and
    bidirectional formatting characters are refused."""
    bidi = {*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}
    bidi |= {"\u200e", "\u200f", "\u061c"}
    return any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" or c in bidi for c in value)


_BREAKS = re.compile(r"\r\n|\r|\n")

# Cell text: any unicode (no lone surrogates), with the characters that matter to CSV mixed in.
_SPECIAL = ['"', ",", "\t", "\n", "\r\n", "\r", "\u2028", "\x85", "\x1c", "\x0c", "'", ";", "é"]
raw_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12
)
special_text = st.lists(st.sampled_from(_SPECIAL) | raw_text, min_size=1, max_size=4).map("".join)
values = (raw_text | special_text).map(str.strip).filter(bool)
padding = st.text(alphabet=" \t\u00a0\u3000", max_size=2)


@dataclass
class ImportCase:
    """A generated file and what the oracle expects of it."""

    content: str
    suffix: str
    good: set[Row] = field(default_factory=set)
    bad_lines: list[int] = field(default_factory=list)
    malformed: int = 0  # line of an unterminated quote, 0 when there is none

    @property
    def has_errors(self) -> bool:
        """True when the import must fail."""
        return bool(self.bad_lines or self.malformed or not self.good)


def _encode(cells: list[str], delimiter: str, terminator: str) -> str:
    """One CSV record as ``csv.writer`` quotes it, ending with ``terminator``."""
    out = io.StringIO()
    # "\r\n" as the writer's terminator makes it quote any cell holding "\r" or "\n"
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerow(cells)
    return out.getvalue()[:-2] + terminator


def _other_than(value: str) -> st.SearchStrategy[str]:
    """Cell values different from ``value``."""
    return values.filter(lambda candidate: candidate != value)


def _stored(row: Row) -> Row:
    """``row`` as the import stores it: the file is read with universal newlines, so a line
    break inside a quoted cell is kept as ``\n`` whether it was written ``\r\n`` or ``\r``."""
    fixed = tuple(_BREAKS.sub("\n", value) for value in row)
    return fixed[0], fixed[1], fixed[2], fixed[3], fixed[4]


@st.composite
def import_cases(draw: st.DrawFn) -> ImportCase:
    """A whole import file with its oracle (see the module docstring)."""
    delimiter = draw(st.sampled_from([",", "\t"]))
    suffix = draw(
        st.sampled_from([".csv", ".txt"] if delimiter == "," else [".tsv", ".tab", ".csv"])
    )
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    extras = draw(st.lists(st.sampled_from(["note", "source", "x_1"]), unique=True, max_size=2))
    columns = draw(st.permutations([*IMPORT_COLUMNS, *extras]))

    def header_cell(name: str) -> str:
        spaced = draw(st.sampled_from(["", " ", "  "]))
        return spaced + draw(st.sampled_from([name, name.upper(), name.title()])) + spaced

    entity_ids = draw(st.lists(values, min_size=1, max_size=5, unique=True))
    entities = {e: draw(values) for e in entity_ids}
    term_ids = draw(st.lists(values, min_size=1, max_size=5, unique=True))
    terms = {t: (draw(values), draw(values)) for t in term_ids}

    def cells_for(row: dict[str, str]) -> list[str]:
        cells = []
        for name in columns:
            if name in row:
                cells.append(draw(padding) + row[name] + draw(padding))
            else:
                cells.append(draw(st.text(max_size=6)))  # extra columns are not imported
        return cells

    case = ImportCase(content="", suffix=suffix)
    text = draw(st.sampled_from(["", "\ufeff"])) + _encode(
        [header_cell(c) for c in columns], delimiter, terminator
    )
    line = 1  # the last line written: the header's
    seen_entities: dict[str, str] = {}
    seen_terms: dict[str, tuple[str, str]] = {}
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        kind = draw(st.sampled_from(["good", "good", "good", "blank", *BAD_KINDS]))
        entity = draw(st.sampled_from(entity_ids))
        term = draw(st.sampled_from(term_ids))
        row = {
            "entity_id": entity,
            "symbol": entities[entity],
            "term_id": term,
            "term_name": terms[term][0],
            "category": terms[term][1],
        }
        column = draw(st.sampled_from(IMPORT_COLUMNS))
        if kind == "blank":
            record = draw(st.sampled_from(["", "   ", delimiter * 3, f" {delimiter} {delimiter}"]))
            text += record + terminator
            line += 1
            continue
        if kind == "empty":
            row[column] = ""
        elif kind == "long":
            row[column] = "x" * (LIMITS[column] + draw(st.integers(1, 20)))
        elif kind == "unsafe":
            # inside the value, so that stripping cannot remove it
            char = draw(st.sampled_from(_UNSAFE))
            row[column] = row[column][:1] + char + "x" + row[column][1:]
        elif kind == "symbol":
            if not seen_entities:
                kind = "good"
            else:
                row["entity_id"] = entity = draw(st.sampled_from(sorted(seen_entities)))
                row["term_id"], row["term_name"], row["category"] = term, *terms[term]
                row["symbol"] = draw(_other_than(entities[entity]))
        elif kind == "term":
            if not seen_terms or not seen_entities:
                kind = "good"
            else:
                row["entity_id"] = entity = draw(st.sampled_from(sorted(seen_entities)))
                row["symbol"] = entities[entity]
                row["term_id"] = term = draw(st.sampled_from(sorted(seen_terms)))
                name, category = terms[term]
                if draw(st.booleans()):
                    row["term_name"] = draw(_other_than(name))
                else:
                    row["category"] = draw(_other_than(category))
        cells = cells_for(row)
        if kind == "fields":
            if draw(st.booleans()):
                cells.append(draw(values))
            else:
                cells.pop(draw(st.integers(0, len(cells) - 1)))
        record = _encode(cells, delimiter, terminator)
        # a record ends on the line of its last quoted line break
        line += 1 + len(_BREAKS.findall(record[: -len(terminator)]))
        if kind == "good" and any(_unsafe(v) for v in _stored(tuple(row.values()))):  # type: ignore[arg-type]
            kind = "unsafe"  # a drawn value holds a forbidden character
        if kind == "good":
            case.good.add(_stored((row["entity_id"], row["symbol"], term, *terms[term])))
            seen_entities[row["entity_id"]] = row["symbol"]
            seen_terms[term] = terms[term]
        else:
            case.bad_lines.append(line)
        text += record
    if draw(st.integers(0, 9)) == 0:  # an unterminated quote on the last line
        text += delimiter.join(['"never closed', "b"]) + terminator
        case.malformed = line + 1
    if draw(st.booleans()) and text.endswith(terminator):
        text = text[: -len(terminator)]
    case.content = text
    return case


def _counts() -> tuple[int, int]:
    """(datasets, annotations) in the database."""
    return Dataset.objects.count(), DatasetAnnotation.objects.count()


def _check(case: ImportCase) -> None:
    """Import ``case`` and check the all-or-nothing property against its oracle."""
    before = _counts()
    slug = f"fuzz-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{case.suffix}"
        path.write_bytes(case.content.encode("utf-8"))
        if case.has_errors:
            with pytest.raises(DatasetImportError) as info:
                dataset_import(path=path, slug=slug, kind="functional")
            errors = info.value.errors
            assert errors and all(isinstance(e, str) and e for e in errors)
            for line in case.bad_lines:
                assert any(e.startswith(f"line {line}:") for e in errors), (line, errors)
            named = {int(m.group(1)) for e in errors if (m := re.match(r"line (\d+):", e))}
            assert named <= {*case.bad_lines, case.malformed}, (named, case.bad_lines, errors)
            if case.malformed:
                assert any("malformed CSV" in e for e in errors), errors
            assert _counts() == before
            assert not Dataset.objects.filter(slug=slug).exists()
            return
        dataset = dataset_import(path=path, slug=slug, kind="functional")
    stored = set(
        DatasetAnnotation.objects.filter(dataset=dataset).values_list(
            "entity_id", "symbol", "term_id", "term_name", "category"
        )
    )
    assert stored == case.good
    assert DatasetAnnotation.objects.filter(dataset=dataset).count() == len(case.good)
    assert dataset.entity_count == len({row[0] for row in case.good})
    assert dataset.term_count == len({row[2] for row in case.good})
    assert _counts() == (before[0] + 1, before[1] + len(case.good))


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(case=import_cases())
def test_import_is_exact_or_nothing(case: ImportCase) -> None:
    _check(case)


def _case(lines: list[str], *, good: set[Row] | None = None, bad: list[int] | None = None) -> None:
    """Check a hand-written file (header first) against the given oracle."""
    header = ",".join(IMPORT_COLUMNS)
    _check(
        ImportCase(
            content="\n".join([header, *lines]) + "\n",
            suffix=".csv",
            good=good or set(),
            bad_lines=bad or [],
        )
    )


def test_quoted_line_breaks_and_unicode_line_separators_are_line_errors() -> None:
    _case(
        ['E1,S1,T1,"two\r\nlines",CAT', "E2,S\u20282,T2,para\x85graph,CAT", "E3,S3,T3,ok,CAT"],
        good={("E3", "S3", "T3", "ok", "CAT")},
        bad=[3, 4],  # the quoted record ends on line 3
    )


def test_line_numbers_count_physical_lines() -> None:
    _case(
        ['E1,S1,T1,"two\nlines",CAT', "E2,S\u20282,T2,", "E3,S3,T1,two\nlines,CAT"],
        # line 3: the quoted break; line 4: empty category; the unquoted break: "...,two"
        # (4 fields), "lines,CAT" (2)
        bad=[3, 4, 5, 6],
    )


def test_value_longer_than_its_column_is_a_line_error() -> None:
    _case(["E1,S1,T1,name," + "c" * (LIMITS["category"] + 1), "E2,S2,T2,name2,CAT"], bad=[2])


def test_nul_character_is_a_line_error() -> None:
    _case(["E1,S1,T1,na\x00me,CAT", "E2,S2,T2,name2,CAT"], bad=[2])


@pytest.mark.parametrize(
    ("char", "kind"),
    [
        ("\n", "control character U+000A"),
        ("\x1b", "control character U+001B"),
        ("\x85", "control character U+0085"),
        ("\u2028", "control character U+2028"),
        ("\u200f", "bidirectional control character U+200F"),
        ("\u202e", "bidirectional control character U+202E"),
        ("\u2066", "bidirectional control character U+2066"),
        ("\u061c", "bidirectional control character U+061C"),
    ],
)
@pytest.mark.parametrize("column", IMPORT_COLUMNS)
def test_control_and_bidi_characters_are_refused_with_the_line(
    tmp_path: Path, char: str, kind: str, column: str
) -> None:
    row = {
        "entity_id": "E2",
        "symbol": "SCN2A",
        "term_id": "T2",
        "term_name": "n2",
        "category": "CA",
    }
    row[column] = row[column][:1] + char + row[column][1:]
    cells = ['"' + row[c] + '"' for c in IMPORT_COLUMNS]
    path = tmp_path / "bidi.csv"
    path.write_text(",".join(IMPORT_COLUMNS) + "\nE1,SCN1A,T1,n1,CA\n" + ",".join(cells) + "\n")
    before = _counts()
    with pytest.raises(DatasetImportError) as info:
        dataset_import(path=path, slug="bidi", kind="functional")
    last = 3 + (char == "\n")  # a quoted line break moves the record's end one line down
    assert info.value.errors == [f"line {last}: forbidden character in {column} ({kind})"]
    assert _counts() == before


@pytest.mark.parametrize("option", ["name", "source"])
def test_control_and_bidi_characters_in_the_dataset_name_are_refused(
    planted_csv: Path, option: str
) -> None:
    before = _counts()
    with pytest.raises(DatasetImportError, match=f"--{option}: forbidden bidirectional"):
        dataset_import(
            path=planted_csv, slug="named", kind="functional", **{option: "genes\u202etxt.exe"}
        )
    assert _counts() == before


@pytest.mark.parametrize(
    ("slug", "kind"),
    [("s" * 65, "functional"), ("ok-slug", "neither"), ("bad slug", "phenotype"), ("", "")],
)
def test_bad_arguments_are_import_errors(slug: str, kind: str, planted_csv: Path) -> None:
    before = _counts()
    with pytest.raises(DatasetImportError):
        dataset_import(path=planted_csv, slug=slug, kind=kind)
    assert _counts() == before


def test_name_longer_than_its_column_is_an_import_error(planted_csv: Path) -> None:
    before = _counts()
    with pytest.raises(DatasetImportError):
        dataset_import(path=planted_csv, slug="long-name", kind="functional", name="n" * 201)
    assert _counts() == before
