"""What a worker does with one unit of work, wherever it runs (this process, a pool, Ray).

Both executors import this module and nothing of each other: `run_unit` turns specs into
plain outcomes, `RunContext` is what a run gets besides its spec, and `WorkerDied` is how
an executor says that a worker vanished.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch

from bindbench.core import checkpoints
from bindbench.core.config import run_id, spec_json
from bindbench.core.device import describe_device, resolve_device, use_cpu
from bindbench.core.registry import Experiment


@dataclass(frozen=True)
class RunContext:
    """What a run gets from its executor besides its spec.

    `on_eval(step, point)` is called at every evaluation when the run is watched from this
    process (progress); experiments pass it on to `train`. For runs trained as one
    ensemble, `on_member_eval(member, step, point)` (to `train_ensemble`).
    """

    device: torch.device
    on_eval: Callable[[int, dict], None] | None = None
    on_member_eval: Callable[[int, int, dict], None] | None = None


class WorkerDied(RuntimeError):
    """A worker process vanished; the runs it held are left unfinished in the store."""

    def __init__(self, run_ids: list[str]):
        super().__init__(
            f"a worker died (killed, or out of memory) during run {', '.join(run_ids)}; "
            "its runs are left unfinished: rerun the command to finish them"
        )


def versions() -> dict[str, str]:
    """The versions a run is stored with (bindbench from the installed package's metadata)."""
    try:
        bindbench = version("bindbench")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        bindbench = "unknown"
    return {
        "bindbench": bindbench,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": machine(),
    }


def machine() -> str:
    """The CPU a run trained on: its model name where Linux says it, with the core count."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            name = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores"


_PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent(parent: int, interval: float = 0.5) -> None:
    """Pool initializer: this worker ends as soon as its driver (`parent`) is gone.

    A driver killed by SIGKILL or SIGTERM cannot shut its pool down, and its workers would
    finish their discarded run and then idle forever. On Linux the kernel kills the worker
    with its parent (PR_SET_PDEATHSIG); everywhere, a thread watches for the worker being
    handed to another parent and exits the process.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    if os.getppid() != parent:  # the driver died before this worker was ready
        os._exit(1)
    threading.Thread(target=watch, name="bindbench-parent-watch", daemon=True).start()


def _checkpoint(name: str, spec, result, keep: int | None) -> dict:
    """{"checkpoint": bytes} for a finished run's model that is kept, else {}."""
    model = result.model
    if model is None or result.diverged or keep == 0 or (keep is not None and checkpoints.size(model) > keep):
        return {}
    return {"checkpoint": checkpoints.encode(model, name, run_id(name, spec), spec_json(spec))}


def run_unit(
    experiment: Experiment,
    specs: list[dict],
    device: str,
    threads: int,
    on_eval: Callable[[int, int, dict], None] | None = None,
    keep: int | None = checkpoints.DEFAULT_MAX_BYTES,
) -> list[dict]:
    """Runs one spec, or several as one ensemble; returns one outcome (plain data) per spec.
    `on_eval(index of the spec, step, point)` is called at each evaluation. A trained model
    of at most `keep` bytes (None: any size; 0: none) comes back as a checkpoint's bytes.

    Never raises: a run that fails is an outcome with status `failed` and its traceback.
    """
    use_cpu(threads)
    start = time.perf_counter()
    described = device
    try:
        torch_device = resolve_device(device)
        described = describe_device(torch_device)
        alone = None if on_eval is None else functools.partial(on_eval, 0)
        ctx = RunContext(torch_device, alone, on_eval)
        resolved = [experiment.spec.model_validate(spec) for spec in specs]
        if len(resolved) == 1:
            results = [experiment.run(resolved[0], ctx)]
        else:
            results = experiment.run_group(resolved, ctx)
        outcomes = [
            {
                "status": "diverged" if result.diverged else "done",
                "metrics": result.metrics,
                "curve": result.curve,
                "extra": {**result.extra, "ensemble_size": len(specs)} if len(specs) > 1 else result.extra,
                **_checkpoint(experiment.name, spec, result, keep),
            }
            for spec, result in zip(resolved, results)
        ]
    except Exception as err:  # a failing run must not stop the sweep
        error = f"{type(err).__name__}: {err}\n{traceback.format_exc()}"
        outcomes = [{"status": "failed", "error": error} for _ in specs]
    seconds = time.perf_counter() - start
    return [{**outcome, "seconds": seconds, "device": described} for outcome in outcomes]
