"""The runs table, flat, for pandas, polars or DuckDB: CSV or Parquet."""

from __future__ import annotations

import csv
from pathlib import Path

from bindbench.core.config import SpecError, flatten
from bindbench.core.files import write_atomic
from bindbench.core.store import open_store

FORMATS = ("csv", "parquet")


def runs_table(folder: str | Path) -> list[dict]:
    """Returns one flat dict per run: id, experiment, status, timings, spec.*, metrics.*."""
    with open_store(folder) as store:
        runs = store.runs()
    rows = []
    for run in runs:
        row = {key: run[key] for key in ("id", "experiment", "status", "device", "seconds", "attempts")}
        row.update(flatten(run["spec"], "spec."))
        row.update(flatten(run["metrics"], "metrics."))
        rows.append(row)
    return rows


def export_runs(folder: str | Path, fmt: str, out: str | Path | None = None) -> Path:
    """Writes the runs table of `folder` as CSV or Parquet and returns the file's path."""
    if fmt not in FORMATS:
        raise SpecError(f"--format {fmt!r}: allowed are {', '.join(FORMATS)}")
    rows = runs_table(folder)
    path = Path(out) if out else Path(folder) / f"runs.{fmt}"
    if path.is_dir():
        example = path / f"runs.{fmt}"
        raise SpecError(f"--out {path}: is a folder; give the file to write (for example {example})")
    if not path.parent.is_dir():
        raise SpecError(f"--out {path}: the folder {path.parent} does not exist")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    if fmt == "csv":

        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)

    else:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise SpecError("--format parquet needs pyarrow: pip install 'bindbench[parquet]'") from None
        table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])

        def write(tmp: Path) -> None:
            pq.write_table(table, tmp)

    write_atomic(path, write)
    return path
