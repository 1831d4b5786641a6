import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from bindbench.api import run as run_api
from bindbench.core.config import Spec, SpecError
from bindbench.core.executor import RunOptions, execute
from bindbench.core.plan import make_plan
from bindbench.core.registry import EXPERIMENTS, Experiment, RunResult, register
from bindbench.core.store import Store
from bindbench.core.worker import WorkerDied, run_unit


class ToySpec(Spec):
    seed: int = 0
    mode: str = "ok"


def toy_run(spec: ToySpec, ctx) -> RunResult:
    if spec.mode == "die":
        os._exit(3)  # what an out-of-memory kill looks like to the pool
    if spec.mode == "boom":
        raise RuntimeError("deliberate failure")
    return RunResult(metrics={"score": float(spec.seed)}, diverged=spec.mode == "nan")


def _toy() -> Experiment:
    if "toy" not in EXPERIMENTS:
        register(Experiment("toy", "toy", ToySpec, toy_run, {"quick": {}}, metrics=("score",)))
    return EXPERIMENTS["toy"]


def test_failed_and_diverged_runs_are_marked_and_the_sweep_goes_on(tmp_path):
    _toy()
    plan = make_plan("toy", sets=["mode=[ok, boom, nan]"])
    with Store(tmp_path) as store:
        execute(plan.jobs, store)
        statuses = {r["spec"]["mode"]: r["status"] for r in store.runs()}
        errors = {r["spec"]["mode"]: r["error"] for r in store.runs()}
    assert statuses == {"ok": "done", "boom": "failed", "nan": "diverged"}
    assert "deliberate failure" in errors["boom"]


def test_a_rerun_skips_finished_runs_and_retries_failed_ones(tmp_path):
    _toy()
    plan = make_plan("toy", sets=["mode=[ok, boom]"])
    with Store(tmp_path) as store:
        execute(plan.jobs, store)
        rerun = execute(plan.jobs, store)
    assert [j.spec.mode for j in rerun] == ["boom"]


def test_a_worker_that_dies_leaves_its_run_unfinished_and_stops_with_a_clear_error(tmp_path):
    _toy()
    plan = make_plan("toy", sets=["mode=[die, ok]"])
    with Store(tmp_path) as store:
        with pytest.raises(WorkerDied, match="rerun"):
            execute(plan.jobs, store, RunOptions(workers=2))
        statuses = {r["spec"]["mode"]: r["status"] for r in store.runs()}
    assert statuses["die"] == "pending"  # given back: not shown as running


def test_the_same_spec_and_seed_give_the_same_metrics(tiny):
    job = make_plan("composition", sets=tiny).jobs[0]
    spec = job.spec.model_dump(mode="json")
    (a,) = run_unit(job.experiment, [spec], "cpu", 1)
    (b,) = run_unit(job.experiment, [spec], "cpu", 1)
    assert a["status"] == "done", a.get("error")
    assert a["metrics"]["ood_r2"] == b["metrics"]["ood_r2"]
    assert [p["ood_r2"] for p in a["curve"]] == [p["ood_r2"] for p in b["curve"]]


def test_a_process_pool_gives_the_same_results_as_running_in_process(tmp_path, tiny):
    sets = [*tiny, "seed=[0,1]"]
    one = run_api("composition", sets=sets, out=tmp_path / "one", workers=1, ensemble=False)
    two = run_api("composition", sets=sets, out=tmp_path / "two", workers=2, ensemble=False)
    with Store(one) as a, Store(two) as b:
        assert {r["id"]: r["metrics"]["ood_r2"] for r in a.runs()} == {
            r["id"]: r["metrics"]["ood_r2"] for r in b.runs()
        }


def test_a_sweep_killed_part_way_reruns_only_the_missing_runs(tmp_path, tiny):
    out = tmp_path / "sweep"
    sets = [s for s in tiny if not s.startswith("train.steps")] + ["train.steps=400", "seed=[0,1,2]"]
    args = [
        sys.executable,
        "-m",
        "bindbench",
        "run",
        "composition",
        "--out",
        str(out),
        "--quiet",
        "--no-ensemble",
    ]
    args += [w for s in sets for w in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = out / "runs.db"
    deadline = time.time() + 120
    finished = []
    while time.time() < deadline and not finished:
        time.sleep(0.05)
        if db.exists():
            try:
                finished = (
                    sqlite3.connect(db)
                    .execute("SELECT id, finished FROM runs WHERE status = 'done'")
                    .fetchall()
                )
            except sqlite3.OperationalError:
                pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stderr = proc.stderr.read().decode()[-800:]
    assert len(finished) == 1, f"the first run should have finished before the kill: {stderr}"
    with Store(out) as store:
        statuses = [r["status"] for r in store.runs()]
    assert statuses.count("done") == 1 and statuses.count("running") + statuses.count("pending") == 2

    reran = []
    run_api(
        "composition",
        sets=sets,
        out=out,
        ensemble=False,
        on_finish=lambda job, outcome: reran.append(job.run_id),
    )
    with Store(out) as store:
        runs = {r["id"]: r for r in store.runs()}
    assert finished[0][0] not in reran and len(reran) == 2
    assert runs[finished[0][0]]["finished"] == finished[0][1]  # untouched
    assert all(r["status"] == "done" for r in runs.values())


def test_threads_can_be_pinned_and_must_be_positive(tmp_path, tiny):
    with pytest.raises(SpecError, match="--threads 0"):
        RunOptions(threads=0)
    folder = run_api("composition", sets=tiny, out=tmp_path / "pinned", threads=1)
    with Store(folder) as store:
        (stored,) = store.runs()
    assert stored["device"].endswith(", 1 threads)")
