"""The registry of experiments and suites.

Experiments register themselves when `bindbench.experiments` is imported; core only looks
them up by name, so it never imports an experiment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bindbench.core.claims import Claim
from bindbench.core.config import Spec, SpecError

PROFILES = ("quick", "full", "paper")


@dataclass(frozen=True)
class RunResult:
    """What an experiment's `run` gives back for one spec."""

    metrics: dict[str, float]
    curve: list[dict[str, float]] = field(default_factory=list)  # one dict per evaluation, with "step"
    diverged: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # JSON-able details (per-task values, ...)
    model: Any = None  # the trained torch module, kept as a checkpoint (core.checkpoints)


@dataclass(frozen=True)
class Experiment:
    """A claim made runnable: a Spec, a run function, profiles, and the report's view of it.

    `profiles` maps a profile name to dotted overrides in `--set` form (a list is a sweep),
    or to a list of such blocks, whose grids are joined (e.g. a main sweep plus controls).
    `check` validates a resolved spec before anything runs (e.g. an impossible split).
    `columns` are the spec keys the report's table shows; `metrics` the result columns,
    the first of which is the headline (plotted against swept settings).
    `plots(runs) -> [report.Plot]` adds experiment-specific figures to the report, and
    `claims` (core.claims.Claim) say what it tests, each checked on the stored runs.
    `run_group(specs, ctx) -> [RunResult]` trains runs with equal `group_key(spec)` together
    as one vectorized ensemble, each result equal to what `run` would give alone;
    `step_flops(spec)` (training FLOPs of one step) lets the executor stack only where
    that pays. `make_model(spec)` builds the untrained module a run's `RunResult.model`
    is (its architecture), so that `load_model` can load a checkpoint into it. `tiny` holds
    dotted overrides that make a run of about a second: the checks every registered
    experiment must pass (tests/experiments/test_contract.py) run it.
    """

    name: str
    title: str
    spec: type[Spec]
    run: Callable[..., RunResult]
    profiles: dict[str, dict[str, Any] | list[dict[str, Any]]]
    columns: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    check: Callable[[Spec], None] | None = None
    plots: Callable[[list[dict]], list] | None = None
    run_group: Callable[..., list[RunResult]] | None = None
    group_key: Callable[[Spec], str] | None = None
    step_flops: Callable[[Spec], float] | None = None
    make_model: Callable[[Spec], Any] | None = None
    tiny: dict[str, Any] = field(default_factory=dict)
    claims: tuple[Claim, ...] = ()


@dataclass(frozen=True)
class Suite:
    """A named list of experiments, each with extra overrides per profile."""

    name: str
    description: str
    entries: tuple[tuple[str, dict[str, dict[str, Any]]], ...]  # (experiment, {profile: overrides})


EXPERIMENTS: dict[str, Experiment] = {}
SUITES: dict[str, Suite] = {}


def register(experiment: Experiment) -> Experiment:
    for profile in experiment.profiles:
        if profile not in PROFILES:
            raise ValueError(f"experiment {experiment.name}: unknown profile {profile!r}")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def register_suite(suite: Suite) -> Suite:
    SUITES[suite.name] = suite
    return suite


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise SpecError(f"unknown experiment '{name}': known are {', '.join(sorted(EXPERIMENTS))}")
    return EXPERIMENTS[name]
