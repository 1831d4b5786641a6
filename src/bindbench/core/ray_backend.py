"""The Ray backend: the same units of work as the local executor, submitted as Ray tasks.

Ray is an optional dependency (`pip install 'bindbench[ray]'`). Without an address a local
Ray instance is started (and stopped at the end); with one, BindBench connects to that
cluster. Results come back to this process, which alone writes the store. A task whose
worker dies is not retried: its runs stay unfinished, to be run again by a later command.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from urllib.parse import urlparse

from bindbench.core.config import SpecError
from bindbench.core.worker import WorkerDied, run_unit


def _check_reachable(address: str) -> None:
    """Fails fast with one line when nothing answers at host:port (Ray itself would hang)."""
    if address == "auto":
        _check_auto()
        return
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    try:
        port = parsed.port  # raises on a port that is not a number
    except ValueError:
        port = None
    if not parsed.hostname or not port:
        raise SpecError(f"--address {address!r}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((parsed.hostname, port), timeout=3).close()
    except OSError as err:
        raise SpecError(
            f"--address {address}: no Ray cluster answers there ({err.strerror or err})"
        ) from None


def _check_auto() -> None:
    """`--address auto` needs a running cluster here; Ray's own lookup says whether one is."""
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die
    except ImportError:  # a Ray without this helper: ray.init gives its own error later
        return
    try:
        canonicalize_bootstrap_address_or_die("auto")
    except ConnectionError:
        message = "--address auto: no Ray cluster is running here (`ray start --head` starts one)"
        raise SpecError(message) from None


def check_backend(address: str | None) -> None:
    """Validates `--backend ray [--address]` before anything is written."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise SpecError("--backend ray needs Ray: pip install 'bindbench[ray]'") from None
    if address is not None:
        _check_reachable(address)


def connect(address: str | None) -> None:
    import ray

    kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address is None:
            ray.init(num_cpus=os.cpu_count(), **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except ConnectionError as err:
        raise SpecError(f"--address {address}: {str(err).splitlines()[0]}") from None


def run_on_ray(
    units: list[list],
    device: str,
    address: str | None,
    start: Callable[[list], list[dict]],
    finish: Callable[[list, list[dict]], None],
    threads: int = 1,
) -> None:
    """Submits every unit as a Ray task of `threads` CPUs (and threads) and stores results as
    they arrive."""
    import ray

    connect(address)
    try:
        gpus = 1 if device.startswith("cuda") else 0
        task = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=0)(run_unit)
        pending = {task.remote(unit[0].experiment, start(unit), device, threads): unit for unit in units}
        died = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                unit = pending.pop(ref)
                try:
                    outcomes = ray.get(ref)
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError):
                    died += [job.run_id for job in unit]
                    continue
                finish(unit, outcomes)
        if died:
            raise WorkerDied(died)
    finally:
        ray.shutdown()
