"""The data behind the figures as CSV tables, for readers who want to re-plot without re-running.

A chapter's results JSON holds its `series` as nested dicts of arrays, laid out as the
chapters agree: per snapshot `[K]` (e.g. `epochs`, `train_acc`), per layer and snapshot
`[L][K]` (e.g. `i_xt`), per layer `[L]` (e.g. `compression`) with the layer names in
`layers`. `tables` turns every dict of that tree into flat tables, one per row count:

- 1-D numeric arrays of one length n become columns of the n-row table;
- a list of n strings (e.g. `layers`) becomes a label column of the n-row table;
- a 2-D array `[m][n]` becomes m columns of the n-row table, named `name[label]` when a list
  of m strings sits beside it (`i_xt[layer 1]`), else `name[0]`, `name[1]`, ...;
- nested dicts (and lists of dicts) give their own tables; scalars and arrays of other shapes
  stay in the JSON only.

Tables are named by their path in the tree (`tanh`, `sweep_0`, `fig21_sgd__grad_epochs`).
The table with the most columns in a dict keeps the dict's name; the others add the name of
their first column.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from numbers import Real
from pathlib import Path


@dataclass(frozen=True)
class Table:
    """A flat table: `columns` names, `rows` of values (floats, ints, strings; None is empty)."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]

    def csv(self) -> str:
        """The table as CSV text (header line, then one line per row; floats in full precision)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row])
        return out.getvalue()


def _is_number(v) -> bool:
    return v is None or (isinstance(v, Real) and not isinstance(v, bool))


def _column(values: list) -> list:
    """A column's cells: ints stay ints, other numbers become floats, None (a stored NaN) stays None."""
    if all(isinstance(v, int) for v in values):
        return list(values)
    return [None if v is None or math.isnan(v) else float(v) for v in values]


def _numeric(values) -> list[list] | None:
    """`values` as a list of columns if it is a non-empty 1-D (one column) or rectangular 2-D
    (one column per row) list of numbers, else None."""
    if not isinstance(values, list) or not values:
        return None
    if all(_is_number(v) for v in values):
        return [_column(values)]
    if all(isinstance(v, list) and v and all(_is_number(x) for x in v) for v in values):
        if len({len(v) for v in values}) != 1:
            return None
        return [_column(v) for v in values]
    return None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "series"


def _dict_tables(path: str, node: dict, root: str) -> list[Table]:
    name = path or root
    labels: dict[int, list[tuple[str, list[str]]]] = {}  # row count -> [(key, strings)]
    for key, value in node.items():
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            labels.setdefault(len(value), []).append((str(key), value))
    groups: dict[int, list[tuple[str, list]]] = {}  # row count -> [(column name, cells)]
    for key, value in node.items():
        columns = _numeric(value)
        if columns is None:
            continue
        if not isinstance(value[0], list):  # 1-D: one column
            groups.setdefault(len(columns[0]), []).append((str(key), columns[0]))
            continue
        names = next((strings for _, strings in labels.get(len(columns), [])), None)
        names = names or [str(i) for i in range(len(columns))]
        groups.setdefault(len(columns[0]), []).extend(
            (f"{key}[{label}]", cells) for label, cells in zip(names, columns))
    found = []
    for n, columns in groups.items():
        if n < 2:
            continue
        label_columns = labels.get(n, [])
        header = tuple(k for k, _ in label_columns) + tuple(c for c, _ in columns)
        rows = tuple(tuple(strings[i] for _, strings in label_columns) + tuple(cells[i] for _, cells in columns)
                     for i in range(n))
        found.append(Table(name, header, rows))
    if len(found) > 1:
        main = max(range(len(found)), key=lambda i: len(found[i].columns))
        found = [t if i == main else Table(f"{name}__{t.columns[0]}", t.columns, t.rows)
                 for i, t in enumerate(found)]
    for key, value in node.items():
        child = f"{path}__{key}" if path else str(key)
        if isinstance(value, dict):
            found += _dict_tables(child, value, root)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                found += _dict_tables(f"{child}_{i}", item, root)
    return found


def tables(series: dict, name: str = "") -> list[Table]:
    """Flat tables from a results JSON `series` tree (see the module docstring).

    `name` names the tables built from the top level (the chapter id, say); table names are
    made safe for file names. A list of dicts is read as `{"series": [...]}`. Raises ValueError
    when `series` is neither a dict nor a list of dicts.
    """
    if isinstance(series, list) and all(isinstance(v, dict) for v in series):
        series = {"series": series}
    if not isinstance(series, dict):
        raise ValueError(f"series must be a dict of arrays and dicts, got {type(series).__name__}")
    out = _dict_tables("", series, name or "series")
    seen: dict[str, int] = {}
    unique = []
    for t in out:
        safe = _safe(t.name)
        seen[safe] = seen.get(safe, 0) + 1
        unique.append(Table(safe if seen[safe] == 1 else f"{safe}-{seen[safe]}", t.columns, t.rows))
    return unique


def write_tables(record: dict, folder: Path | str) -> list[Path]:
    """Write the CSV tables of a results `record` (its `series`) into `folder`; return their paths."""
    if "chapter" not in record or "series" not in record:
        raise ValueError("record must be a results JSON record with 'chapter' and 'series'")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for table in tables(record["series"], name=record["chapter"]):
        path = folder / f"{table.name}.csv"
        path.write_text(table.csv(), encoding="utf-8")
        paths.append(path)
    return paths
