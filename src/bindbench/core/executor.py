"""Running the jobs of a plan: in this process, in a pool of worker processes, or on Ray.

Only driving processes write to the store. A command leases the runs of each unit before it
trains them (`Store.claim`), so commands sharing a folder never train a run twice: runs
another command holds are waited for, and taken over if it gives them back or dies.
Workers get the experiment and its spec, run it, and hand back a plain dict; finished runs
are skipped on a rerun, and runs a killed command left unfinished are run again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context

from bindbench.core import checkpoints, trackers
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
    `on_eval(job, step, point)` at each evaluation of runs executed in this process (each
    member of an ensemble too).
    A run that another command sharing the folder finished is passed to `on_finish` with
    `outcome["elsewhere"]` true.
    `log_to`: trackers that mirror each run this command finishes (`core.trackers`: mlflow,
    tensorboard). `save_models`: keep each finished run's trained model in `<folder>/models/` (None: those
    of at most `core.checkpoints.DEFAULT_MAX_BYTES`); `outcome["checkpoint"]` is its path.
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
    save_models: bool | None = None
    log_to: tuple[str, ...] = ()

    @property
    def keep(self) -> int | None:
        """The largest model kept, in bytes (None: any; 0: none), as `run_unit` takes it."""
        return {True: None, False: 0, None: checkpoints.DEFAULT_MAX_BYTES}[self.save_models]

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise SpecError(f"--backend {self.backend!r}: allowed are {', '.join(BACKENDS)}")
        if self.workers < 1:
            raise SpecError(f"--workers {self.workers}: must be at least 1")
        trackers.check(self.log_to)
        if self.threads is not None and self.threads < 1:
            raise SpecError(f"--threads {self.threads}: must be at least 1")


# Above this many training FLOPs per run and step, a plain step on a CPU is bound by
# arithmetic and stacking runs gains nothing (BENCHMARKS.md: 4.5x at ~1.6 MFLOP per member
# step, 1.1x at 189 MFLOP, and slower than one by one at width 256); such runs train alone.
# On a GPU, small models are bound by kernel launches, so they are always stacked.
CPU_ENSEMBLE_MAX_FLOPS = 2e7
POLL_S = 1.0  # how often a command waiting for another command's runs looks again


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
    """Runs every job the store has not finished, as `options` say; returns the jobs this
    command ran (not those another command sharing the folder ran meanwhile)."""
    for job in jobs:
        store.add(job.run_id, job.experiment.name, spec_json(job.spec), job.position)
    pending = [job for job in jobs if store.status(job.run_id) not in FINISHED]
    if options.on_start is not None:
        options.on_start(pending)
    if not pending:  # everything finished before: no threads to choose (a 0.25 s measurement)
        return []
    device = options.device
    sinks = trackers.make(options.log_to, store.folder)
    with store.leases() as owner:
        claims = _Claims(store, owner, pending, options, resolve_device(device).type)

        def finish(unit: list[Job], outcomes: list[dict]) -> None:
            for job, outcome in zip(unit, outcomes):
                if "checkpoint" in outcome:  # written before the run is done: a done run has its file
                    outcome["checkpoint"] = str(
                        checkpoints.write(store.folder, job.run_id, outcome["checkpoint"])
                    )
                stored = store.finish(
                    job.run_id,
                    outcome["status"],
                    metrics=outcome.get("metrics"),
                    curve=outcome.get("curve", ()),
                    extra=outcome.get("extra"),
                    error=outcome.get("error"),
                    seconds=outcome["seconds"],
                    device=outcome["device"],
                    owner=owner,
                )
                if stored and sinks:
                    spec = job.spec.model_dump(mode="json")
                    trackers.mirror(sinks, job.experiment.name, job.run_id, spec, outcome)
                if options.on_finish is not None:
                    options.on_finish(job, outcome)

        if options.backend == "ray":
            from bindbench.core.ray_backend import RayRunner

            runner = RayRunner(device, options.address, options.threads or 1, options.keep)
        else:
            workers = max(1, min(options.workers, len(claims.todo)))
            threads = options.threads or threads_per_worker(workers)
            inline = workers == 1
            if inline:
                runner = _Inline(device, threads, options.on_eval, options.keep)
            else:
                runner = _Pool(workers, device, threads, options.keep)
        _drive(claims, runner, finish)
    return claims.ran


class _Claims:
    """The units this command trains, each claimed when the command comes to it. Runs that
    another command holds are waited for: reported when it finishes them, claimed when it
    gives them back or dies."""

    def __init__(self, store: Store, owner: str, jobs: list[Job], options: RunOptions, kind: str):
        self.store, self.owner, self.options, self.kind = store, owner, options, kind
        self.info = versions()
        self.todo = units_of(jobs, options.ensemble, device=kind)
        self.waiting: list[Job] = []
        self.ran: list[Job] = []

    def next(self) -> list[Job] | None:
        """The next unit, claimed; [] while every run left is another command's; None at the end."""
        while self.todo:
            unit = self.todo.pop(0)
            mine = self._claim(unit, retry_failed=True)
            self.waiting += _without(unit, mine)
            if mine:
                return mine
        if not self.waiting:
            return None
        self._settle()
        free = self._claim(self.waiting, retry_failed=False)
        if free:
            self.waiting = _without(self.waiting, free)
            self.todo = units_of(free, self.options.ensemble, device=self.kind)
            return self.next()
        return [] if self.waiting else None

    def _claim(self, jobs: list[Job], retry_failed: bool) -> list[Job]:
        ids = [job.run_id for job in jobs]
        ids = set(self.store.claim(ids, self.owner, self.options.device, self.info, retry_failed))
        mine = [job for job in jobs if job.run_id in ids]
        self.ran += mine
        return mine

    def _settle(self) -> None:
        """Runs another command finished (or failed) are reported and no longer waited for."""
        still = []
        for job in self.waiting:
            run = self.store.run(job.run_id)
            if run["status"] in ("pending", "running"):
                still.append(job)
            elif self.options.on_finish is not None:
                outcome = {key: run[key] for key in ("status", "metrics", "error", "device")}
                self.options.on_finish(job, {**outcome, "seconds": run["seconds"] or 0.0, "elsewhere": True})
        self.waiting = still


def _without(jobs: list[Job], taken: list[Job]) -> list[Job]:
    ids = {job.run_id for job in taken}
    return [job for job in jobs if job.run_id not in ids]


def _drive(claims: _Claims, runner, finish: Callable[[list[Job], list[dict]], None]) -> None:
    """Keeps `runner.slots` units in flight until every run is finished here or elsewhere.

    `runner`: `submit(unit, specs) -> Future`, `outcomes(future, unit)` (None: its worker
    died, go on; raises WorkerDied: stop), `close(aborted)`."""
    running: dict[Future, list[Job]] = {}
    died: list[str] = []
    aborted = True
    try:
        while True:
            unit: list[Job] | None = []
            while len(running) < runner.slots and (unit := claims.next()):
                running[runner.submit(unit, [job.spec.model_dump(mode="json") for job in unit])] = unit
            if not running:
                if unit is None:
                    break
                time.sleep(POLL_S)  # every run left is another command's, in flight
                continue
            done, _ = wait(running, timeout=POLL_S if claims.waiting else None, return_when=FIRST_COMPLETED)
            for future in done:
                unit = running.pop(future)
                outcomes = runner.outcomes(future, unit)
                if outcomes is None:
                    died += [job.run_id for job in unit]
                else:
                    finish(unit, outcomes)
        aborted = False
    finally:
        # On an interrupt or a dead worker the runs in flight are not waited for: their
        # workers are stopped, and the leases given back (`pending`, run again next time).
        runner.close(aborted)
    if died:
        raise WorkerDied(died)


class _Inline:
    """Runs each unit in this process, one at a time (their evaluations watched)."""

    slots = 1

    def __init__(self, device: str, threads: int, on_eval: Callable | None, keep: int | None):
        self.device, self.threads, self.on_eval, self.keep = device, threads, on_eval, keep

    def submit(self, unit: list[Job], specs: list[dict]) -> Future:
        def watch(index: int, step: int, point: dict) -> None:  # index: the member of an ensemble
            self.on_eval(unit[index], step, point)

        future: Future = Future()
        watching = watch if self.on_eval is not None else None
        future.set_result(run_unit(unit[0].experiment, specs, self.device, self.threads, watching, self.keep))
        return future

    def outcomes(self, future: Future, unit: list[Job]) -> list[dict]:
        return future.result()

    def close(self, aborted: bool) -> None:
        pass


class _Pool:
    """Runs units in `slots` spawned worker processes, which die with this one."""

    def __init__(self, workers: int, device: str, threads: int, keep: int | None):
        self.slots, self.device, self.threads, self.keep = workers, device, threads, keep
        self.pool = ProcessPoolExecutor(
            workers, mp_context=get_context("spawn"), initializer=die_with_parent, initargs=(os.getpid(),)
        )

    def submit(self, unit: list[Job], specs: list[dict]) -> Future:
        return self.pool.submit(
            run_unit, unit[0].experiment, specs, self.device, self.threads, None, self.keep
        )

    def outcomes(self, future: Future, unit: list[Job]) -> list[dict]:
        try:
            return future.result()
        except BrokenProcessPool:
            raise WorkerDied([unit[0].run_id]) from None

    def close(self, aborted: bool) -> None:
        if aborted:  # stop the workers now, not after the runs in flight (a pool would wait)
            for process in list((getattr(self.pool, "_processes", None) or {}).values()):
                process.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)
