"""Running the jobs of a plan: in this process, or in a pool of worker processes.

Only this (the driving) process writes to the store. Workers get the experiment and its
spec, run it, and hand back a plain dict; finished runs are skipped on a rerun, and runs
left `running` by a killed process are run again.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context

from bindbench.core.config import SpecError, spec_json
from bindbench.core.device import resolve_device, threads_per_worker
from bindbench.core.plan import Job
from bindbench.core.store import FINISHED, Store
from bindbench.core.worker import WorkerDied, die_with_parent, run_unit, versions

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class RunOptions:
    """How the jobs of a plan are run and watched; `bindbench.run(**options)` and the CLI's
    options of `bindbench run` are these.

    `ensemble`: jobs that can train together do so as vectorized ensembles.
    `threads`: torch threads per worker; None takes the cores other processes leave free,
    split between the workers (`core.device.threads_per_worker`).
    `backend="local"` runs them here or in `workers` processes; `backend="ray"` submits
    them as Ray tasks to the cluster at `address` (a local instance when None).
    Callbacks: `on_start(pending)` once, `on_finish(job, outcome)` after each run, and
    `on_eval(job, step, point)` at each evaluation of single runs executed in this process.
    """

    device: str = "cpu"
    workers: int = 1
    ensemble: bool = True
    backend: str = "local"
    address: str | None = None
    threads: int | None = None
    on_start: Callable[[list[Job]], None] | None = None
    on_finish: Callable[[Job, dict], None] | None = None
    on_eval: Callable[[Job, int, dict], None] | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise SpecError(f"--backend {self.backend!r}: allowed are {', '.join(BACKENDS)}")
        if self.workers < 1:
            raise SpecError(f"--workers {self.workers}: must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise SpecError(f"--threads {self.threads}: must be at least 1")


# Above this many training FLOPs per run and step, a plain step on a CPU is bound by
# arithmetic and stacking runs gains nothing (BENCHMARKS.md: 4.5x at ~1.6 MFLOP per member
# step, 1.1x at 189 MFLOP, and slower than one by one at width 256); such runs train alone.
# On a GPU, small models are bound by kernel launches, so they are always stacked.
CPU_ENSEMBLE_MAX_FLOPS = 2e7


def units_of(
    jobs: list[Job], ensemble: bool = True, max_members: int = 64, device: str = "cpu"
) -> list[list[Job]]:
    """Groups jobs into units of work: runs of one experiment with one `group_key` form an
    ensemble (up to `max_members`) where that pays on `device`; every other job is alone."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        experiment = job.experiment
        stackable = ensemble and experiment.run_group is not None and experiment.group_key is not None
        if stackable and device == "cpu" and experiment.step_flops is not None:
            stackable = experiment.step_flops(job.spec) <= CPU_ENSEMBLE_MAX_FLOPS
        key = (experiment.name, experiment.group_key(job.spec)) if stackable else (job.run_id,)
        groups.setdefault(key, []).append(job)
    return [jobs[i : i + max_members] for jobs in groups.values() for i in range(0, len(jobs), max_members)]


def execute(jobs: list[Job], store: Store, options: RunOptions = RunOptions()) -> list[Job]:
    """Runs every job the store has not finished, as `options` say; returns the jobs that were run."""
    for job in jobs:
        store.add(job.run_id, job.experiment.name, spec_json(job.spec), job.position)
    pending = [job for job in jobs if store.status(job.run_id) not in FINISHED]
    info = versions()
    device, on_eval = options.device, options.on_eval
    if options.on_start is not None:
        options.on_start(pending)
    units = units_of(pending, options.ensemble, device=resolve_device(device).type)

    def start(unit: list[Job]) -> list[dict]:
        for job in unit:
            store.start(job.run_id, device, info)
        return [job.spec.model_dump(mode="json") for job in unit]

    def finish(unit: list[Job], outcomes: list[dict]) -> None:
        for job, outcome in zip(unit, outcomes):
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
            if options.on_finish is not None:
                options.on_finish(job, outcome)

    if options.backend == "ray":
        from bindbench.core.ray_backend import run_on_ray

        run_on_ray(units, device, options.address, start, finish, options.threads or 1)
        return pending

    if not units:  # everything finished before: no threads to choose (a 0.25 s measurement)
        return pending
    workers = max(1, min(options.workers, len(units)))
    threads = options.threads or threads_per_worker(workers)
    if workers == 1:
        for unit in units:
            specs = start(unit)
            watch = None if on_eval is None or len(unit) > 1 else functools.partial(on_eval, unit[0])
            finish(unit, run_unit(unit[0].experiment, specs, device, threads, watch))
        return pending

    queue = list(units)
    pool = ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=die_with_parent, initargs=(os.getpid(),)
    )
    running: dict = {}

    def submit() -> None:
        unit = queue.pop(0)
        specs = start(unit)
        running[pool.submit(run_unit, unit[0].experiment, specs, device, threads)] = unit

    try:
        while queue and len(running) < workers:
            submit()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                unit = running.pop(future)
                try:
                    outcomes = future.result()
                except BrokenProcessPool:
                    raise WorkerDied([unit[0].run_id]) from None
                finish(unit, outcomes)
                if queue:
                    submit()
    finally:
        # On an interrupt or a dead worker, do not wait for the other runs: they stay
        # `running` in the store and are run again next time.
        pool.shutdown(wait=not running, cancel_futures=True)
    return pending
