"""The tracker sinks (`--log-to`): each finished run mirrored to MLflow and TensorBoard,
read back with the trackers' own readers."""

import importlib.util

import mlflow  # the extras, which `make test` installs: missing, these tests fail rather than skip
import pytest
from tensorboard.backend.event_processing import event_accumulator

import bindbench
from bindbench.cli import main
from bindbench.core import trackers
from bindbench.core.config import flatten
from bindbench.core.registry import EXPERIMENTS
from bindbench.core.store import Store


def _tiny(tmp_path, log_to, **sets):
    sets = {**EXPERIMENTS["composition"].tiny, **sets}
    folder = bindbench.run("composition", sets=sets, out=tmp_path / "out", quiet=True, log_to=log_to)
    with Store(folder, create=False) as store:
        return folder, [{**run, "curve": store.curve(run["id"])} for run in store.runs()]


def _check_mlflow(client, runs):
    experiment = client.get_experiment_by_name("bindbench/composition")
    logged = {r.data.tags["bindbench.run_id"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(logged) == {run["id"] for run in runs}
    for run in runs:
        mirrored = logged[run["id"]]
        assert mirrored.info.run_name == run["id"][:8] and mirrored.info.status == "FINISHED"
        assert mirrored.data.params == {k: str(v) for k, v in flatten(run["spec"]).items()}
        for key, value in run["metrics"].items():
            assert mirrored.data.metrics[key] == pytest.approx(value, rel=1e-12)
        history = client.get_metric_history(mirrored.info.run_id, "train_loss")
        expected = [(p["step"], p["train_loss"]) for p in run["curve"]]
        expected.append(
            (run["curve"][-1]["step"], run["metrics"]["train_loss"])
        )  # the final value, last step
        # a set: SQLite keeps one row where the final value repeats the last point (same time)
        assert {(m.step, round(m.value, 9)) for m in history} == {(st, round(v, 9)) for st, v in expected}


def test_the_mlflow_sink_holds_each_runs_params_and_metrics_in_a_local_file_store(tmp_path, monkeypatch):
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3.7+ refuses file stores without it
    _, runs = _tiny(tmp_path, ("mlflow",), seed=[0, 1])
    assert len(runs) == 2 and any(store.iterdir())  # a file store: folders, no database
    _check_mlflow(mlflow.tracking.MlflowClient(store.as_uri()), runs)


def test_the_mlflow_sinks_default_is_a_sqlite_store_beside_the_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    folder, runs = _tiny(tmp_path, "mlflow")
    _check_mlflow(mlflow.tracking.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}"), runs)


def test_the_tensorboard_sink_writes_event_files_that_tensorboards_reader_parses(tmp_path):
    folder, (run,) = _tiny(tmp_path, ("tensorboard",))
    (events,) = (folder / "tensorboard").iterdir()
    assert events.name == f"composition-{run['id'][:8]}"
    reader = event_accumulator.EventAccumulator(str(events))
    reader.Reload()
    scalars = reader.Tags()["scalars"]
    for key in ("ood_r2", "id_r2", "train_loss"):
        assert [e.step for e in reader.Scalars(key)] == [p["step"] for p in run["curve"]]
        assert [e.value for e in reader.Scalars(key)] == pytest.approx(
            [p[key] for p in run["curve"]], rel=1e-6
        )
        assert reader.Scalars(f"final/{key}")[0].value == pytest.approx(run["metrics"][key], rel=1e-6)
    assert {f"final/{k}" for k in run["metrics"]} <= set(scalars)
    assert "model.width" in reader.Tensors("spec/text_summary")[0].tensor_proto.string_val[0].decode()


def test_a_tracker_that_fails_warns_in_one_line_and_the_run_is_stored(tmp_path, monkeypatch, capsys):
    def down(self, *args):
        raise ConnectionError("tracking server unreachable\nmore lines")

    monkeypatch.setattr(trackers.TensorBoardSink, "log", down)
    _, (run,) = _tiny(tmp_path, ("tensorboard",))
    assert run["status"] == "done"
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("bindbench: warning: --log-to tensorboard") and "unreachable" in line


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--log-to", "wandb"], ["'wandb'", "mlflow, tensorboard"]),
        (["--log-to", "tensorboard"], ["bindbench[tensorboard]"]),
    ],
)
def test_an_unknown_or_missing_tracker_exits_2_with_one_line(capsys, tmp_path, monkeypatch, argv, words):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a)
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", "composition", *argv, "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and all(w in err for w in words), err
    assert not (tmp_path / "out").exists()
