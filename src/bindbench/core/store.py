"""The run store: one SQLite database per output folder.

WAL mode, and every write is one transaction, so a killed process leaves each run either
finished (with all its metrics and curve) or unfinished, to be run again. Only driving
processes write; workers hand their results back to them.

Several commands may share a folder: a command trains a run only under a lease it took in
one transaction (`claim`: owner = host, pid and a token; an expiry it renews while it
works). A finished run is never claimed again, and a lease whose owner died (its pid gone
on this host, or its expiry passed) is taken over. Statuses: `pending` (planned, or given
back), `running` (leased), `done`, `failed`, `diverged`.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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
STATUSES = ("pending", "running", "done", "failed", "diverged")
SCHEMA_VERSION = 1  # PRAGMA user_version; 0: the stores before leases (no owner, no `pending`)
LEASE_S = 60.0  # a lease not renewed for this long is taken over (renewed every LEASE_S / 6)

_RUNS = """
CREATE TABLE IF NOT EXISTS {name} (
    id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed', 'diverged')),
    metrics TEXT,
    extra TEXT,
    error TEXT,
    device TEXT,
    versions TEXT,
    position INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL,
    finished REAL,
    seconds REAL,
    owner TEXT,
    lease REAL
);
"""
_SCHEMA = (
    _RUNS.format(name="runs")
    + """
CREATE TABLE IF NOT EXISTS curves (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    values_json TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
)


_RUN_COLUMNS = ("id", "experiment", "spec", "status", "metrics", "extra", "error", "device", "versions")
_RUN_COLUMNS += ("position", "attempts", "started", "finished", "seconds")
_LEASE_COLUMNS = ("owner", "lease")


def new_owner() -> str:
    """A lease owner's name: host, pid and a token (two commands in one process differ)."""
    return f"{socket.gethostname()} {os.getpid()} {uuid.uuid4().hex[:8]}"


def _owner_gone(owner: str) -> bool:
    """Whether a lease's owner is known dead: a process of this host whose pid has gone."""
    host, pid, _ = (owner.split(" ") + ["", "", ""])[:3]
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another host's process: only its lease's expiry tells
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    return False


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
        if create and not self.path.exists():
            self._create()
        existed = self.path.is_file()
        if existed and self.path.stat().st_size == 0:
            raise SpecError(f"{self.path} is empty (0 bytes), not a run store: remove it to start afresh")
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            if existed:
                self._check()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            if create:
                self._upgrade()
        except BaseException as err:
            self._db.close()  # nothing left open (nor its -wal and -shm files)
            if isinstance(err, sqlite3.DatabaseError):
                raise SpecError(f"{self.path} is not a readable run store: {err}") from None
            raise
        self._db.row_factory = sqlite3.Row

    def _create(self) -> None:
        """Makes a new store whole under a temporary name, then links it into place: a command
        never sees a half-made store, and of two commands starting on one folder at once, one
        store is kept (a link does not replace what is there)."""
        tmp = self.path.with_name(f".{DB_NAME}.{uuid.uuid4().hex[:8]}")
        self._db = sqlite3.connect(tmp, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._upgrade()
            self._db.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another command made it first: that one is the store
            except OSError:  # a file system without hard links
                if not self.path.exists():
                    os.replace(tmp, self.path)
        except sqlite3.DatabaseError as err:
            raise SpecError(f"cannot make a run store in {self.folder}: {err}") from None
        finally:
            self._db.close()
            for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
                leftover.unlink(missing_ok=True)

    def _version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _upgrade(self) -> None:
        """Creates the tables of a new store, or brings a store of schema 0 to this one: the
        runs table rebuilt with the lease columns, its unfinished runs `pending`."""
        with self._transaction() as db:
            if self._version() == SCHEMA_VERSION:
                return
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "runs" in tables:  # schema 0
                columns = ", ".join(_RUN_COLUMNS)
                old = columns.replace("status", "CASE status WHEN 'running' THEN 'pending' ELSE status END")
                db.execute(_RUNS.format(name="runs_upgraded"))
                db.execute(f"INSERT INTO runs_upgraded ({columns}) SELECT {old} FROM runs")
                db.execute("DROP TABLE runs")
                db.execute("ALTER TABLE runs_upgraded RENAME TO runs")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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
        version = self._version()
        if version > SCHEMA_VERSION:
            raise SpecError(
                f"{self.path} was written by a newer BindBench (store schema {version}, this one reads "
                f"up to {SCHEMA_VERSION}): upgrade BindBench to use it"
            )
        if "runs" in tables:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
            missing = sorted(set(_RUN_COLUMNS + (_LEASE_COLUMNS if version else ())) - columns)
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
        """Records a planned run as `pending` (keeping it as it is if the store already has it)."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs (id, experiment, spec, status, position) "
                "VALUES (?, ?, ?, 'pending', ?)",
                (run_id, experiment, spec, position),
            )

    def claim(
        self, run_ids: Iterable[str], owner: str, device: str, versions: dict, retry_failed: bool = True
    ) -> list[str]:
        """Leases the given runs that are free to `owner`, in one transaction, and returns them.

        Free: `pending`, `failed` (when `retry_failed`), or `running` under a lease that
        expired or whose owner is gone. A finished run is never claimed."""
        ids = list(run_ids)
        free = ("pending", "failed") if retry_failed else ("pending",)
        with self._transaction() as db:
            now = time.time()
            claimed = []
            for i in range(0, len(ids), 500):  # SQLite's limit on parameters
                part = ids[i : i + 500]
                marks = ", ".join("?" * len(part))
                rows = db.execute(
                    f"SELECT id, status, owner, lease FROM runs WHERE id IN ({marks})", part
                ).fetchall()
                claimed += [
                    run_id
                    for run_id, status, holder, lease in rows
                    if status in free
                    or (status == "running" and (not holder or (lease or 0) < now or _owner_gone(holder)))
                ]
            db.executemany(
                "UPDATE runs SET status = 'running', owner = ?, lease = ?, started = ?, device = ?, "
                "versions = ?, attempts = attempts + 1, error = NULL WHERE id = ?",
                [(owner, now + LEASE_S, now, device, json.dumps(versions), run_id) for run_id in claimed],
            )
        order = {run_id: k for k, run_id in enumerate(ids)}
        return sorted(claimed, key=order.__getitem__)

    def renew(self, owner: str) -> None:
        """Extends every lease `owner` holds by LEASE_S."""
        with self._transaction() as db:
            until = time.time() + LEASE_S
            db.execute("UPDATE runs SET lease = ? WHERE owner = ? AND status = 'running'", (until, owner))

    def release(self, owner: str) -> int:
        """Gives back every run `owner` still holds (unfinished: `pending` again); returns how many."""
        with self._transaction() as db:
            return db.execute(
                "UPDATE runs SET status = 'pending', owner = NULL, lease = NULL "
                "WHERE owner = ? AND status = 'running'",
                (owner,),
            ).rowcount

    @contextmanager
    def leases(self) -> Iterator[str]:
        """A new owner's name, whose leases a thread renews until the block ends and which are
        then given back (an interrupt included): runs it did not finish are `pending` again."""
        owner, stop = new_owner(), threading.Event()

        def keep() -> None:
            with Store(self.folder, create=False) as mine:  # a connection of its own thread
                while not stop.wait(LEASE_S / 6):
                    mine.renew(owner)

        thread = threading.Thread(target=keep, name="bindbench-leases", daemon=True)
        thread.start()
        try:
            yield owner
        finally:
            stop.set()
            thread.join()
            self.release(owner)

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
        owner: str | None = None,
    ) -> bool:
        """Stores a run's outcome and its curve in one transaction, and ends its lease; with
        `owner`, only while that owner holds the run (else nothing is written: False)."""
        assert status in STATUSES and status not in ("pending", "running"), status
        with self._transaction() as db:
            if owner is not None:
                row = db.execute("SELECT status, owner FROM runs WHERE id = ?", (run_id,)).fetchone()
                if row is None or tuple(row) != ("running", owner):
                    return False
            db.execute("DELETE FROM curves WHERE run_id = ?", (run_id,))
            db.executemany(
                "INSERT INTO curves (run_id, step, values_json) VALUES (?, ?, ?)",
                [(run_id, int(point["step"]), strict_dumps(point)) for point in curve],
            )
            db.execute(
                "UPDATE runs SET status = ?, metrics = ?, extra = ?, error = ?, finished = ?, "
                "seconds = ?, device = COALESCE(?, device), owner = NULL, lease = NULL WHERE id = ?",
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
        return True

    def runs(self, experiment: str | None = None) -> list[dict]:
        """Returns every run as a dict (spec, metrics and extra decoded), in plan order."""
        query = "SELECT * FROM runs"
        args: tuple = ()
        if experiment is not None:
            query += " WHERE experiment = ?"
            args = (experiment,)
        return [_run(row) for row in self._db.execute(query + " ORDER BY position, id", args)]

    def run(self, run_id: str) -> dict | None:
        """One run as `runs` gives it, or None."""
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else _run(row)

    def curve(self, run_id: str) -> list[dict]:
        rows = self._db.execute(
            "SELECT values_json FROM curves WHERE run_id = ? ORDER BY step", (run_id,)
        ).fetchall()
        return [_numbers(_decoded(row["values_json"], f"run {run_id}'s curve")) for row in rows]


def _run(row: sqlite3.Row) -> dict:
    run = dict(row)
    for key in ("spec", "metrics", "extra", "versions"):
        run[key] = _decoded(run[key], f"run {run['id']}'s {key}")
    run["metrics"] = _numbers(run["metrics"])
    return run


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


__all__ = ["DB_NAME", "FINISHED", "LEASE_S", "SCHEMA_VERSION", "STATUSES", "Store", "new_owner", "open_store"]
