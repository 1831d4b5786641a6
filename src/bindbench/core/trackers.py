"""Mirrors of finished runs in the trackers researchers already use: MLflow and TensorBoard.

The SQLite store stays the source of truth; a sink copies each run this command finishes
(its spec as parameters, its curve and final metrics) when the run is stored. Sinks are
optional extras: `bindbench[mlflow]` (the MLflow tracking client, `mlflow-skinny`) and
`bindbench[tensorboard]`. `--log-to mlflow` writes to `$MLFLOW_TRACKING_URI` when set (a
server, a database, or a file store: MLflow 3.7 and later refuse `./mlruns` folders unless
`MLFLOW_ALLOW_FILE_STORE=true`), else to a local SQLite store, `<folder>/mlflow.db`
(`mlflow ui --backend-store-uri sqlite:///<folder>/mlflow.db`);
`--log-to tensorboard` writes one event folder per run under `<folder>/tensorboard/`
(`tensorboard --logdir <folder>/tensorboard`).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import sys
import time
from pathlib import Path

from bindbench.core.config import flatten
from bindbench.core.errors import SpecError

SINKS = {"mlflow": ("mlflow", "sqlalchemy", "alembic"), "tensorboard": ("tensorboard",)}  # modules needed


def check(names: str | tuple[str, ...] | list[str]) -> list[str]:
    """The sinks named (one name or several), or one line for an unknown sink or one whose
    package is missing, before anything runs."""
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        if name not in SINKS:
            raise SpecError(f"--log-to {name!r}: allowed are {', '.join(SINKS)}")
        missing = [module for module in SINKS[name] if importlib.util.find_spec(module) is None]
        if missing:
            raise SpecError(f"--log-to {name} needs {', '.join(missing)}: pip install 'bindbench[{name}]'")
    return list(dict.fromkeys(names))


def _finite(values: dict) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def _points(outcome: dict) -> tuple[list[tuple[int, dict[str, float]]], int]:
    """The curve as (step, values), and the step the final metrics are logged at (the last)."""
    curve = [
        (int(p["step"]), _finite({k: v for k, v in p.items() if k != "step"}))
        for p in outcome.get("curve", ())
    ]
    return curve, max((step for step, _ in curve), default=0)


class MLflowSink:
    name = "mlflow"
    """Each run as an MLflow run of the experiment `bindbench/<experiment>`, named by its
    short id and tagged with its full id, folder and status."""

    def __init__(self, folder: Path):
        from mlflow.tracking import MlflowClient

        for chatty in ("mlflow.store.db.utils", "alembic"):  # a line per table migration otherwise
            logging.getLogger(chatty).setLevel(logging.WARNING)
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(folder).resolve() / 'mlflow.db'}"
        self.client, self.folder, self.experiments = MlflowClient(tracking_uri=uri), folder, {}

    def _experiment(self, name: str) -> str:
        if name not in self.experiments:
            found = self.client.get_experiment_by_name(f"bindbench/{name}")
            ident = found.experiment_id if found else self.client.create_experiment(f"bindbench/{name}")
            self.experiments[name] = ident
        return self.experiments[name]

    def log(self, experiment: str, run_id: str, spec: dict, outcome: dict) -> None:
        from mlflow.entities import Metric, Param, RunTag

        tags = {
            "bindbench.run_id": run_id,
            "bindbench.folder": str(self.folder),
            "bindbench.status": outcome["status"],
        }
        run = self.client.create_run(self._experiment(experiment), run_name=run_id[:8], tags=tags)
        now = int(time.time() * 1000)
        curve, last = _points(outcome)
        metrics = [Metric(key, value, now, step) for step, values in curve for key, value in values.items()]
        metrics += [
            Metric(key, value, now, last) for key, value in _finite(outcome.get("metrics", {})).items()
        ]
        params = [Param(key, str(value)) for key, value in flatten(spec).items()]
        for start in range(0, max(len(metrics), len(params), 1), 100):  # MLflow's batch limits
            self.client.log_batch(
                run.info.run_id, metrics=metrics[start : start + 100], params=params[start : start + 100]
            )
        self.client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(run.info.run_id, "FINISHED" if outcome["status"] == "done" else "FAILED")


class TensorBoardSink:
    name = "tensorboard"
    """Each run as an event folder `<folder>/tensorboard/<experiment>-<short id>/`: the curve
    as scalars by step, the final metrics at the last step under `final/`, the spec as text."""

    def __init__(self, folder: Path):
        self.root = Path(folder) / "tensorboard"

    def log(self, experiment: str, run_id: str, spec: dict, outcome: dict) -> None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(self.root / f"{experiment}-{run_id[:8]}"))
        try:
            curve, last = _points(outcome)
            for step, values in curve:
                for key, value in values.items():
                    writer.add_scalar(key, value, step)
            final = _finite(outcome.get("metrics", {}))
            for key, value in final.items():
                writer.add_scalar(f"final/{key}", value, last)
            params = {
                k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flatten(spec).items()
            }
            writer.add_text("spec", "\n".join(f"    {k} = {v}" for k, v in params.items()), last)
        finally:
            writer.close()


def mirror(sinks: list, experiment: str, run_id: str, spec: dict, outcome: dict) -> None:
    """Logs a stored run to every sink; a sink that fails says so in one line and the sweep
    goes on (the store holds the run either way)."""
    for sink in sinks:
        try:
            sink.log(experiment, run_id, spec, outcome)
        except Exception as err:  # a tracker down must not stop the training
            first = (str(err).splitlines() or [""])[0]
            sys.stderr.write(
                f"bindbench: warning: --log-to {sink.name}: run {run_id[:8]}: {type(err).__name__}: {first}\n"
            )


def make(names: str | tuple[str, ...] | list[str], folder: Path) -> list:
    """The sinks `names` asks for (checked), writing beside `folder`'s store."""
    kinds = {"mlflow": MLflowSink, "tensorboard": TensorBoardSink}
    return [kinds[name](folder) for name in check(names)]
