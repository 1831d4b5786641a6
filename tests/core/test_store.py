import json
import math
import sqlite3

import pytest

from bindbench.core.config import SpecError
from bindbench.core.store import Store, open_store, strict_dumps


def test_the_store_uses_wal_and_keeps_spec_status_metrics_curve(tmp_path):
    with Store(tmp_path) as store:
        store.add("r1", "composition", '{"seed": 0}', 0)
        assert store.status("r1") == "pending"
        assert store.claim(["r1"], "me", "cpu", {"torch": "x"}) == ["r1"]
        assert store.status("r1") == "running"
        store.finish(
            "r1",
            "done",
            metrics={"ood_r2": 0.5},
            curve=[{"step": 10, "ood_r2": 0.4}],
            seconds=1.5,
            device="cpu (2 cores)",
        )
        run = store.runs()[0]
        assert run["status"] == "done" and run["metrics"] == {"ood_r2": 0.5}
        assert run["spec"] == {"seed": 0} and run["versions"] == {"torch": "x"}
        assert run["device"] == "cpu (2 cores)" and run["attempts"] == 1
        assert store.curve("r1") == [{"step": 10, "ood_r2": 0.4}]
    mode = sqlite3.connect(tmp_path / "runs.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_adding_a_finished_run_again_keeps_it(tmp_path):
    with Store(tmp_path) as store:
        store.add("r1", "e", "{}", 0)
        store.finish("r1", "done", metrics={"a": 1.0})
        store.add("r1", "e", "{}", 0)
        assert store.status("r1") == "done" and store.runs()[0]["metrics"] == {"a": 1.0}


def test_a_failed_write_leaves_nothing_half_written(tmp_path):
    with Store(tmp_path) as store:
        store.add("r1", "e", "{}", 0)
        with pytest.raises(TypeError):  # a curve point that is not JSON fails mid-transaction
            store.finish("r1", "done", metrics={"a": 1.0}, curve=[{"step": 1}, {"step": 2, "x": object()}])
        assert store.status("r1") == "pending" and store.curve("r1") == []


def test_missing_or_corrupt_stores_are_one_line_errors(tmp_path):
    with pytest.raises(SpecError, match="no run store"):
        open_store(tmp_path / "nowhere")
    (tmp_path / "runs.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SpecError, match="not a readable run store"):
        open_store(tmp_path)


def _filled(folder, runs: int = 300) -> None:
    with Store(folder) as store:
        for i in range(runs):
            store.add(f"run{i:04d}", "toy", json.dumps({"seed": i, "pad": "x" * 200}), i)
            store.finish(f"run{i:04d}", "done", metrics={"score": float(i)}, curve=[{"step": 1, "loss": 0.5}])


@pytest.mark.parametrize("create", [True, False])
def test_an_empty_damaged_or_foreign_file_is_refused_in_one_line_before_any_write(tmp_path, create):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "runs.db").write_bytes(b"")
    with pytest.raises(SpecError, match=r"is empty \(0 bytes\)"):
        Store(tmp_path / "empty", create=create)

    _filled(tmp_path / "damaged")
    path = tmp_path / "damaged" / "runs.db"
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    for k in (3, 5, 7):  # the b-tree headers of three pages
        data[k * page : k * page + 12] = b"\x0d\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):  # SQLite's own verdict
        sqlite3.connect(path).execute("PRAGMA integrity_check").fetchall()
    before = path.read_bytes()
    with pytest.raises(SpecError, match="is damaged|disk image is malformed") as info:
        Store(tmp_path / "damaged", create=create)
    assert "\n" not in str(info.value) and path.read_bytes() == before

    (tmp_path / "foreign").mkdir()
    sqlite3.connect(tmp_path / "foreign" / "runs.db").execute("CREATE TABLE photos (name TEXT)")
    with pytest.raises(SpecError, match=r"database of something else \(tables: photos\)"):
        Store(tmp_path / "foreign", create=create)


def test_bad_json_in_a_column_names_the_run_and_column(tmp_path):
    _filled(tmp_path, runs=2)
    db = sqlite3.connect(tmp_path / "runs.db")
    db.execute("UPDATE runs SET metrics = '{\"score\": 1.' WHERE id = 'run0001'")
    db.commit()
    with (
        open_store(tmp_path) as store,
        pytest.raises(SpecError, match="run run0001's metrics in the store is not valid JSON"),
    ):
        store.runs()


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_stored_as_null_and_read_back_as_nan(tmp_path):
    """A diverged run's NaN and infinities must not make the store or report.json invalid JSON."""
    with Store(tmp_path) as store:
        store.add("r1", "toy", "{}", 0)
        store.claim(["r1"], "me", "cpu", {})
        curve = [{"step": 1, "train_loss": math.inf}, {"step": 2, "train_loss": math.nan}]
        store.finish(
            "r1",
            "diverged",
            metrics={"loss": math.nan, "score": 1.5},
            curve=curve,
            extra={"trials": [math.nan]},
        )
        db = sqlite3.connect(tmp_path / "runs.db")
        assert db.execute(
            "SELECT json_extract(metrics, '$.loss'), json_extract(metrics, '$.score') FROM runs"
        ).fetchone() == (None, 1.5)
        for (text,) in db.execute("SELECT values_json FROM curves UNION ALL SELECT extra FROM runs"):
            _strict(text)
        (run,) = store.runs()
        assert math.isnan(run["metrics"]["loss"]) and run["metrics"]["score"] == 1.5
        # an infinity comes back as NaN too: null has no sign
        assert all(math.isnan(point["train_loss"]) for point in store.curve("r1"))
        assert run["extra"] == {"trials": [None]}
    assert strict_dumps({"a": [1.0, -math.inf, {"b": math.nan}]}) == '{"a": [1.0, null, {"b": null}]}'
