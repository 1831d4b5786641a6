"""The run store: one SQLite database per output folder.

WAL mode, and every write is one transaction, so a killed process leaves each run either
finished (with all its metrics and curve) or marked `running`, to be run again.
Only the driving process writes; workers hand their results back to it.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bindbench.core.config import SpecError


def finite(value: Any) -> Any:
    """Plain data with every non-finite float (a diverged run's NaN loss, say) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def strict_dumps(value: Any, **options: Any) -> str:
    """JSON that every parser (and SQLite's json_extract) reads: NaN and infinities as null."""
    return json.dumps(finite(value), allow_nan=False, **options)


def _numbers(values: dict) -> dict:
    """A metrics or curve record back from JSON: null (a non-finite number stored) is NaN again."""
    return {k: math.nan if v is None else v for k, v in values.items()}


DB_NAME = "runs.db"
FINISHED = ("done", "diverged")
STATUSES = ("running", "done", "failed", "diverged")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'diverged')),
    metrics TEXT,
    extra TEXT,
    error TEXT,
    device TEXT,
    versions TEXT,
    position INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL,
    finished REAL,
    seconds REAL
);
CREATE TABLE IF NOT EXISTS curves (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    values_json TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


_RUN_COLUMNS = ("id", "experiment", "spec", "status", "metrics", "extra", "error", "device", "versions")
_RUN_COLUMNS += ("position", "attempts", "started", "finished", "seconds")


def _decoded(text: str | None, where: str) -> Any:
    """A JSON column's value, or one line naming the run and column (`where`) of bad JSON."""
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        raise SpecError(f"{where} in the store is not valid JSON") from None


class Store:
    """Runs, their curves and the invocation's metadata, in `<folder>/runs.db`."""

    def __init__(self, folder: str | Path, create: bool = True):
        self.folder = Path(folder)
        self.path = self.folder / DB_NAME
        if not create and not self.path.is_file():
            raise SpecError(f"{self.folder} holds no run store ({DB_NAME} is missing)")
        if create:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise SpecError(f"cannot make the output folder {self.folder}: {err.strerror}") from None
        existed = self.path.is_file()
        if existed and self.path.stat().st_size == 0:
            raise SpecError(f"{self.path} is empty (0 bytes), not a run store: remove it to start afresh")
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            if existed:
                self._check()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as err:
            raise SpecError(f"{self.path} is not a readable run store: {err}") from None
        self._db.row_factory = sqlite3.Row

    def _check(self) -> None:
        """An existing file must be a sound SQLite database holding this schema's tables."""
        problems = [row[0] for row in self._db.execute("PRAGMA quick_check")]  # may raise: malformed
        if problems != ["ok"]:
            raise SpecError(f"{self.path} is damaged (SQLite's check: {problems[0]}); it cannot be trusted")
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and not {"runs", "curves", "meta"} <= tables:
            raise SpecError(
                f"{self.path} is an SQLite database of something else (tables: {', '.join(sorted(tables))})"
            )
        if "runs" in tables:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
            missing = sorted(set(_RUN_COLUMNS) - columns)
            if missing:
                raise SpecError(
                    f"{self.path}: the runs table lacks {', '.join(missing)}: not this version's store"
                )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _transaction(self):
        return _Transaction(self._db)

    # --- metadata ----------------------------------------------------------------------
    def set_meta(self, **items: Any) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in items.items()],
            )

    def meta(self) -> dict[str, Any]:
        rows = self._db.execute("SELECT key, value FROM meta").fetchall()
        return {row["key"]: _decoded(row["value"], f"the metadata {row['key']!r}") for row in rows}

    # --- runs --------------------------------------------------------------------------
    def status(self, run_id: str) -> str | None:
        row = self._db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row["status"] if row else None

    def counts(self) -> dict[str, int]:
        """How many runs have each status ({status: n}, statuses with no run left out)."""
        rows = self._db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
        return {status: n for status, n in rows}

    def add(self, run_id: str, experiment: str, spec: str, position: int) -> None:
        """Records a planned run (keeping it as it is if the store already has it)."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs (id, experiment, spec, status, position) "
                "VALUES (?, ?, ?, 'running', ?)",
                (run_id, experiment, spec, position),
            )

    def start(self, run_id: str, device: str, versions: dict) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET status = 'running', started = ?, device = ?, versions = ?, "
                "attempts = attempts + 1, error = NULL WHERE id = ?",
                (time.time(), device, json.dumps(versions), run_id),
            )

    def finish(
        self,
        run_id: str,
        status: str,
        metrics: dict | None = None,
        curve: Iterable[dict] = (),
        extra: dict | None = None,
        error: str | None = None,
        seconds: float | None = None,
        device: str | None = None,
    ) -> None:
        """Stores a run's outcome and its curve in one transaction."""
        assert status in STATUSES and status != "running", status
        with self._transaction() as db:
            db.execute("DELETE FROM curves WHERE run_id = ?", (run_id,))
            db.executemany(
                "INSERT INTO curves (run_id, step, values_json) VALUES (?, ?, ?)",
                [(run_id, int(point["step"]), strict_dumps(point)) for point in curve],
            )
            db.execute(
                "UPDATE runs SET status = ?, metrics = ?, extra = ?, error = ?, finished = ?, "
                "seconds = ?, device = COALESCE(?, device) WHERE id = ?",
                (
                    status,
                    strict_dumps(metrics or {}),
                    strict_dumps(extra or {}),
                    error,
                    time.time(),
                    seconds,
                    device,
                    run_id,
                ),
            )

    def runs(self, experiment: str | None = None) -> list[dict]:
        """Returns every run as a dict (spec, metrics and extra decoded), in plan order."""
        query = "SELECT * FROM runs"
        args: tuple = ()
        if experiment is not None:
            query += " WHERE experiment = ?"
            args = (experiment,)
        rows = self._db.execute(query + " ORDER BY position, id", args).fetchall()
        decoded = []
        for row in rows:
            run = dict(row)
            for key in ("spec", "metrics", "extra", "versions"):
                run[key] = _decoded(run[key], f"run {run['id']}'s {key}")
            run["metrics"] = _numbers(run["metrics"])
            decoded.append(run)
        return decoded

    def curve(self, run_id: str) -> list[dict]:
        rows = self._db.execute(
            "SELECT values_json FROM curves WHERE run_id = ? ORDER BY step", (run_id,)
        ).fetchall()
        return [_numbers(_decoded(row["values_json"], f"run {run_id}'s curve")) for row in rows]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def open_store(folder: str | Path) -> Store:
    """Opens an existing store for reading, or fails with one line."""
    return Store(folder, create=False)


__all__ = ["DB_NAME", "FINISHED", "STATUSES", "Store", "open_store"]
