"""The Ray backend: the same units of work as the local executor, submitted as Ray tasks.

Ray is an optional dependency (`pip install 'bindbench[ray]'`). Without an address a local
Ray instance is started (and stopped at the end); with one, BindBench connects to that
cluster. Results come back to this process, which alone writes the store. A task whose
worker dies is not retried: its runs stay unfinished, to be run again by a later command.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from bindbench.core import reaper
from bindbench.core.config import SpecError
from bindbench.core.worker import run_unit

HANDSHAKE_S = 5.0  # how long a cluster has to answer each step of the handshake


def _check_reachable(address: str, label: str = "") -> None:
    """Fails fast with one line unless a Ray cluster answers at the address: a port where
    nothing listens, or something other than Ray, would make `ray.init` hang or fail late."""
    if address == "auto":
        found = _find_auto()
        _check_reachable(found, f"--address auto (the cluster last started here, {found})")
        return
    label = label or f"--address {address}"
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    try:
        port = parsed.port  # raises on a port that is not a number
    except ValueError:
        port = None
    if not parsed.hostname or not port:
        raise SpecError(f"--address {address!r}: expected host:port, ray://host:port or auto")
    try:
        speaks = _speaks_http2(parsed.hostname, port)
    except OSError as err:
        raise SpecError(f"{label}: no Ray cluster answers there ({err.strerror or err})") from None
    if not speaks:
        raise SpecError(f"{label}: something listens there, but it is not Ray (no gRPC handshake)")
    if "://" not in address:
        _check_gcs(address, label)


def _speaks_http2(host: str, port: int) -> bool:
    """Whether the server at host:port answers an HTTP/2 connection preface with a SETTINGS
    frame, as every gRPC server does (Ray's GCS and its client server are gRPC servers)."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + empty SETTINGS
    with socket.create_connection((host, port), timeout=HANDSHAKE_S) as conn:
        try:
            conn.sendall(preface)
            head = b""
            while len(head) < 9 and (chunk := conn.recv(9 - len(head))):
                head += chunk
        except (TimeoutError, ConnectionError):
            return False
    return len(head) == 9 and head[3] == 4 and head[5:9] == bytes(4)  # a SETTINGS frame on stream 0


def _check_gcs(address: str, label: str) -> None:
    """Asks the GCS at `address` for its nodes, in a child process that is killed after a
    few seconds (Ray's client retries for minutes in C++, past any Python timeout)."""
    probe = (
        "import sys\nfrom ray._raylet import GcsClient\nfrom ray.exceptions import AuthenticationError\n"
        f"try: nodes = GcsClient(address=sys.argv[1]).get_all_node_info(timeout={HANDSHAKE_S})\n"
        "except AuthenticationError: sys.exit('token')\n"
        "print(sum(1 for node in nodes.values() if node.state == 0))\n"
    )
    try:
        answer = subprocess.run(
            [sys.executable, "-c", probe, address], capture_output=True, text=True, timeout=4 * HANDSHAKE_S
        )
    except subprocess.TimeoutExpired:
        answer = None
    if answer is not None and answer.stderr.strip().endswith("token"):
        raise SpecError(
            f"{label}: the Ray cluster there wants its token: set RAY_AUTH_MODE=token "
            "(and RAY_AUTH_TOKEN, or the token in ~/.ray/auth_token)"
        )
    if answer is None or answer.returncode != 0:
        raise SpecError(f"{label}: a gRPC server answers there, but not a Ray cluster's GCS")
    if answer.stdout.strip() == "0":
        raise SpecError(f"{label}: the Ray cluster there has no node alive")


def _find_auto() -> str:
    """The address `--address auto` means: the cluster last started on this machine, by
    Ray's own lookup (its address file may name a cluster that has stopped since)."""
    from ray._private.services import canonicalize_bootstrap_address_or_die

    try:
        return canonicalize_bootstrap_address_or_die("auto")
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


def runtime_env() -> dict:
    """What a cluster's workers get: this BindBench, shipped by Ray as a Python module (so the
    code that trains is the code that planned). Its dependencies (torch, numpy, ...) must
    be installed on every node, in the versions this machine has."""
    package = Path(__file__).resolve().parents[1]
    return {"py_modules": [str(package)], "excludes": ["__pycache__", "*.pyc"]}


def connect(address: str | None) -> None:
    import ray

    kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address is None:  # a local instance runs this very package: nothing to ship
            ray.init(num_cpus=os.cpu_count(), **kwargs)
        else:
            ray.init(address=address, runtime_env=runtime_env(), **kwargs)
    except ConnectionError as err:
        raise SpecError(f"--address {address}: {str(err).splitlines()[0]}") from None


class RayRunner:
    """The executor's runner on Ray: each unit a Ray task of `threads` CPUs (and threads), as
    many in flight as the cluster has room for. A task whose worker or node died is not
    retried: its runs stay unfinished, to be run again by a later command."""

    def __init__(self, device: str, address: str | None, threads: int = 1, keep: int | None = 0):
        import ray

        connect(address)
        # a local instance's agents would outlive a kill -9 of this process (core.reaper)
        self.reaper = reaper.start(os.getpid()) if address is None else None
        self.ray, self.device, self.threads, self.keep = ray, device, threads, keep
        gpus = 1 if device.startswith("cuda") else 0
        self.task = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=0)(run_unit)
        room = ray.cluster_resources()
        self.slots = max(1, int(room.get("GPU", 0)) if gpus else int(room.get("CPU", 1) // threads))
        self.refs: dict = {}

    def submit(self, unit: list, specs: list[dict]):
        ref = self.task.remote(unit[0].experiment, specs, self.device, self.threads, None, self.keep)
        future = ref.future()
        self.refs[future] = ref
        return future

    def outcomes(self, future, unit: list) -> list[dict] | None:
        self.refs.pop(future, None)
        try:
            return future.result()
        except (self.ray.exceptions.WorkerCrashedError, self.ray.exceptions.NodeDiedError):
            return None

    def close(self, aborted: bool) -> None:
        try:
            if aborted:  # the tasks in flight are stopped, not left to run on the cluster
                for ref in self.refs.values():
                    self.ray.cancel(ref, force=True)
        finally:
            self.ray.shutdown()
            if self.reaper is not None:
                self.reaper.terminate()
                self.reaper.wait()
