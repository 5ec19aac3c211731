"""Readers: a local file (CSV, TSV, JSON Lines, Parquet) or a hub dataset into a table of strings.

Every cell is read as a string: a review that says "NA" is text, not a missing value. Columns and
labels are resolved afterwards (``squeeze.data.examples``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from squeeze.core.errors import DataError, Problem, first_line
from squeeze.data.spec import _EXTENSIONS, FORMATS, DataSpec

Table = dict[str, list[str]]


def read_file(path: Path, spec: DataSpec) -> Table:
    if path.is_dir():
        raise DataError(f"{path} is a folder; give one CSV, TSV, JSON Lines or Parquet file")
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    fmt = spec.format or _format_of(path)
    if fmt == "jsonl":
        table = _read_jsonl(path)
    elif fmt == "parquet":
        table = _read_parquet(path)
    else:
        table = _read_delimited(path, fmt, spec.header)
    if not table or not next(iter(table.values())):
        raise DataError(f"{path.name} holds no rows")
    return table


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if suffix == ".txt":
        with path.open(encoding="utf-8-sig", errors="replace") as f:
            if "\t" in f.readline():
                return "tsv"
    raise DataError(
        Problem(
            f"cannot tell the format of {path.name} from its name; choose one with {{format}} "
            f"({', '.join(FORMATS)})"
        )
    )


def _read_delimited(path: Path, fmt: str, header: bool) -> Table:
    # GLUE and the Pang & Lee files hold stray quote characters, so TSV never treats quotes as
    # special; CSV keeps standard quoting for commas inside fields.
    options: dict[str, Any] = (
        {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {"delimiter": ","}
    )
    rows: list[tuple[int, list[str]]]
    try:
        # utf-8-sig drops a BOM; newline="" lets the csv module handle CRLF and quoted newlines.
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, **options)
            rows = [(reader.line_num, row) for row in reader if row]
    except UnicodeDecodeError as e:
        raise DataError(f"{path.name} is not UTF-8 text ({e.reason}); convert it first") from e
    except csv.Error as e:
        raise DataError(f"{path.name} is not valid {fmt.upper()}: {e}") from e
    if not rows:
        return {}
    if header:
        names, body, what = rows[0][1], rows[1:], "the header has"
        if len(set(names)) != len(names):
            raise DataError(f"{path.name} has repeated column names: {', '.join(names)}")
    else:
        names, body, what = [str(i) for i in range(len(rows[0][1]))], rows, "the first row has"
    for line, row in body:
        if len(row) != len(names):
            raise DataError(
                Problem(
                    f"{path.name} line {line} has {len(row)} fields but {what} {len(names)}; "
                    "check {format} and {header}"
                )
            )
    return {name: [row[i] for _, row in body] for i, name in enumerate(names)}


def _read_jsonl(path: Path) -> Table:
    records: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path.name} is not UTF-8 text ({e.reason}); convert it first") from e
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path.name} line {lineno} is not valid JSON ({e.msg}); JSON Lines files "
                "hold one object per line"
            ) from e
        if not isinstance(record, dict):
            raise DataError(f"{path.name} line {lineno} is not a JSON object")
        records.append(record)
    names = list(dict.fromkeys(key for record in records for key in record))
    return {name: [_cell(record.get(name)) for record in records] for name in names}


def _read_parquet(path: Path) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path.name} is not a readable Parquet file: {first_line(e)}") from e
    return {name: [_cell(v) for v in table.column(name).to_pylist()] for name in table.column_names}


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def read_hub(source: str, split: str) -> Table:
    try:
        import datasets
    except ImportError as e:
        raise DataError(
            f"reading hub dataset '{source}' needs the optional 'datasets' package: "
            "pip install 'squeeze[datasets]'"
        ) from e
    parts = source.split("/")
    # "glue/sst2" is a dataset and its config; "owner/name/config" keeps the owner.
    name, config = ("/".join(parts[:-1]), parts[-1]) if len(parts) > 1 else (source, None)
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except (OSError, datasets.exceptions.DatasetsError) as e:
        raise DataError(
            f"hub dataset '{source}' could not be loaded (not available offline?): {first_line(e)}"
        ) from e
    except ValueError as e:
        raise DataError(
            Problem(
                f"hub dataset '{source}' could not be loaded: {first_line(e)} (check the "
                "name, config and {split})"
            )
        ) from e
    table: Table = {}
    for column in ds.column_names:
        feature = ds.features[column]
        values = list(ds[column])
        if isinstance(feature, datasets.ClassLabel):
            # -1 marks an unlabelled row (GLUE test splits); it must not wrap to the last name.
            table[column] = [feature.names[v] if v is not None and v >= 0 else "" for v in values]
        else:
            table[column] = [_cell(v) for v in values]
    return table
