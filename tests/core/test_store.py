import json
import math
import sqlite3

import pytest

from bindbench.core.config import SpecError
from bindbench.core.store import Store, open_store, strict_dumps


def test_the_store_uses_wal_and_keeps_spec_status_metrics_curve(tmp_path):
    with Store(tmp_path) as store:
        store.add("r1", "composition", '{"seed": 0}', 0)
        assert store.status("r1") == "running"
        store.start("r1", "cpu", {"torch": "x"})
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
        assert store.status("r1") == "running" and store.curve("r1") == []


def test_missing_or_corrupt_stores_are_one_line_errors(tmp_path):
    with pytest.raises(SpecError, match="no run store"):
        open_store(tmp_path / "nowhere")
    (tmp_path / "runs.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SpecError, match="not a readable run store"):
        open_store(tmp_path)


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_stored_as_null_and_read_back_as_nan(tmp_path):
    """A diverged run's NaN and infinities must not make the store or report.json invalid JSON."""
    with Store(tmp_path) as store:
        store.add("r1", "toy", "{}", 0)
        store.start("r1", "cpu", {})
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
