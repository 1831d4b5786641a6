"""The Python entry point: `bindbench.run(...)` does what `bindbench run` does."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable
from pathlib import Path

from bindbench.core.config import SpecError
from bindbench.core.device import describe_device, resolve_device
from bindbench.core.executor import execute
from bindbench.core.plan import Job, Plan, make_plan
from bindbench.core.report import build_report
from bindbench.core.store import Store


def plan(
    target: str | None = None, profile: str = "quick", sets: Iterable[str] = (), seed: int | None = None
) -> Plan:
    """Resolves a target (experiment, suite or spec file) into its runs without running them."""
    import bindbench.experiments  # noqa: F401  (registers experiments and suites)

    return make_plan(target, profile, list(sets), seed)


def run(
    target: str | None = None,
    *,
    profile: str = "quick",
    sets: Iterable[str] = (),
    out: str | Path | None = None,
    workers: int = 1,
    ensemble: bool = True,
    backend: str = "local",
    address: str | None = None,
    device: str = "cpu",
    seed: int | None = None,
    on_start: Callable[[list[Job]], None] | None = None,
    on_finish: Callable[[Job, dict], None] | None = None,
    on_eval: Callable[[Job, int, dict], None] | None = None,
    command: str | None = None,
) -> Path:
    """Runs a target's missing runs, writes the report, and returns the output folder.

    `sets` are `key=value` overrides as on the command line (a list value sweeps).
    Everything is validated before the output folder is touched. The callbacks are those
    of `core.executor.execute` (progress and per-run lines in the CLI).
    """
    the_plan = plan(target, profile, sets, seed)
    described = describe_device(resolve_device(device))
    if backend not in ("local", "ray"):
        raise SpecError(f"--backend {backend!r}: allowed are local, ray")
    if backend == "ray":
        from bindbench.core.ray_backend import check_backend

        check_backend(address)
    folder = Path(out) if out else the_plan.default_out()
    with Store(folder) as store:
        store.set_meta(
            target=the_plan.target,
            profile=profile,
            sweeps=the_plan.sweeps,
            device=described,
            command=command or _as_command(target, profile, sets, seed, device),
        )
        execute(
            the_plan.jobs,
            store,
            device=device,
            workers=workers,
            ensemble=ensemble,
            backend=backend,
            address=address,
            on_start=on_start,
            on_finish=on_finish,
            on_eval=on_eval,
        )
    build_report(folder)
    return folder


def _as_command(target, profile, sets, seed, device) -> str:
    words = ["bindbench", "run"] + ([target] if target else [])
    words += ["--profile", profile] + [w for s in sets for w in ("--set", s)]
    words += ["--seed", str(seed)] if seed is not None else []
    words += ["--device", device] if device != "cpu" else []
    return shlex.join(words)
