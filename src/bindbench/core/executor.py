"""Running the jobs of a plan: in this process, or in a pool of worker processes.

Only this (the driving) process writes to the store. Workers get the experiment and its
spec, run it, and hand back a plain dict; finished runs are skipped on a rerun, and runs
left `running` by a killed process are run again.
"""

from __future__ import annotations

import functools
import platform
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
import torch

from bindbench.core.config import spec_json
from bindbench.core.device import describe_device, resolve_device, threads_per_worker
from bindbench.core.plan import Job
from bindbench.core.registry import Experiment
from bindbench.core.store import FINISHED, Store


@dataclass(frozen=True)
class RunContext:
    """What a run gets from its executor besides its spec.

    `on_eval(step, point)` is called at every evaluation when the run is watched from this
    process (progress); experiments pass it on to `train`.
    """

    device: torch.device
    on_eval: Callable[[int, dict], None] | None = None


def versions() -> dict[str, str]:
    from bindbench import __version__

    return {
        "bindbench": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def run_job(
    experiment: Experiment,
    spec: dict,
    device: str,
    threads: int,
    on_eval: Callable[[int, dict], None] | None = None,
) -> dict:
    """Runs one spec and returns its outcome as plain data (never raises)."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    outcome: dict = {"device": device}
    try:
        torch_device = resolve_device(device)
        outcome["device"] = describe_device(torch_device)
        result = experiment.run(experiment.spec.model_validate(spec), RunContext(torch_device, on_eval))
        outcome.update(
            status="diverged" if result.diverged else "done",
            metrics=result.metrics,
            curve=result.curve,
            extra=result.extra,
        )
    except Exception as err:  # a failing run must not stop the sweep
        outcome.update(status="failed", error=f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
    outcome["seconds"] = time.perf_counter() - start
    return outcome


def execute(
    jobs: list[Job],
    store: Store,
    device: str = "cpu",
    workers: int = 1,
    on_start: Callable[[list[Job]], None] | None = None,
    on_finish: Callable[[Job, dict], None] | None = None,
    on_eval: Callable[[Job, int, dict], None] | None = None,
) -> list[Job]:
    """Runs every job the store has not finished; returns the jobs that were run.

    Callbacks: `on_start(pending)` once, `on_finish(job, outcome)` after each run, and
    `on_eval(job, step, point)` at each evaluation of runs executed in this process.
    """
    for job in jobs:
        store.add(job.run_id, job.experiment.name, spec_json(job.spec), job.position)
    pending = [job for job in jobs if store.status(job.run_id) not in FINISHED]
    info = versions()
    if on_start is not None:
        on_start(pending)

    def finish(job: Job, outcome: dict) -> None:
        store.finish(
            job.run_id,
            outcome["status"],
            metrics=outcome.get("metrics"),
            curve=outcome.get("curve", ()),
            extra=outcome.get("extra"),
            error=outcome.get("error"),
            seconds=outcome["seconds"],
            device=outcome["device"],
        )
        if on_finish is not None:
            on_finish(job, outcome)

    workers = max(1, min(workers, len(pending)))
    threads = threads_per_worker(workers)
    if workers == 1:
        for job in pending:
            store.start(job.run_id, device, info)
            watch = None if on_eval is None else functools.partial(on_eval, job)
            finish(job, run_job(job.experiment, job.spec.model_dump(mode="json"), device, threads, watch))
        return pending

    queue = list(pending)
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
    running = {}

    def submit() -> None:
        job = queue.pop(0)
        store.start(job.run_id, device, info)
        spec = job.spec.model_dump(mode="json")
        running[pool.submit(run_job, job.experiment, spec, device, threads)] = job

    try:
        while queue and len(running) < workers:
            submit()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    raise WorkerDied(
                        f"a worker process died (killed, or out of memory) during run {job.run_id}; "
                        "its runs are left unfinished: rerun the command to finish them"
                    ) from None
                finish(job, outcome)
                if queue:
                    submit()
    finally:
        # On an interrupt or a dead worker, do not wait for the other runs: they stay
        # `running` in the store and are run again next time.
        pool.shutdown(wait=not running, cancel_futures=True)
    return pending


class WorkerDied(RuntimeError):
    """A worker process vanished; the runs it held are left unfinished in the store."""
