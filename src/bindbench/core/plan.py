"""From a command (target, profile, overrides) to the list of runs it stands for."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bindbench.core.config import (
    Spec,
    SpecError,
    build_spec,
    expand_grid,
    flatten,
    load_yaml,
    parse_override,
    run_id,
    short_hash,
    split_sweep,
)
from bindbench.core.registry import EXPERIMENTS, PROFILES, SUITES, Experiment, get_experiment

DEFAULT_TARGET = "default"


@dataclass(frozen=True)
class Job:
    """One run: an experiment at one fully resolved spec."""

    experiment: Experiment
    spec: Spec
    run_id: str
    position: int
    label: dict[str, Any] = field(default_factory=dict)  # the swept values of this run


@dataclass
class Plan:
    target: str
    profile: str
    jobs: list[Job]
    sweeps: dict[str, list[str]]  # experiment -> swept keys

    def default_out(self, root: str | Path = "runs") -> Path:
        """`runs/<target>-<profile>-<hash of the run ids>`: the same command, the same folder."""
        name = Path(self.target).stem if self.target.endswith((".yaml", ".yml")) else self.target
        return Path(root) / f"{name}-{self.profile}-{short_hash(j.run_id for j in self.jobs)}"


def _entries(target: str, profile: str) -> list[tuple[Experiment, dict[str, Any]]]:
    """Returns (experiment, overrides) for a target: an experiment, a suite or a YAML file."""
    if target in EXPERIMENTS:
        return [(EXPERIMENTS[target], {})]
    if target in SUITES:
        return [
            (get_experiment(name), dict(per_profile.get(profile, {})))
            for name, per_profile in SUITES[target].entries
        ]
    if target.endswith((".yaml", ".yml")):
        data = load_yaml(target)
        unknown = set(data) - {"experiment", "set"}
        if unknown or "experiment" not in data:
            raise SpecError(
                f"spec file {target} must have the keys 'experiment' and optionally 'set' "
                f"(got {', '.join(sorted(data)) or 'none'})"
            )
        values = data.get("set") or {}
        if not isinstance(values, dict):
            raise SpecError(f"spec file {target}: 'set' must be a mapping of keys to values")
        return [(get_experiment(str(data["experiment"])), flatten(values))]
    known = sorted(EXPERIMENTS) + sorted(SUITES)
    raise SpecError(f"unknown experiment or suite '{target}': known are {', '.join(known)}")


def _assign_sets(
    entries: list[tuple[Experiment, dict]], sets: Iterable[str]
) -> list[tuple[Experiment, dict]]:
    """Adds `--set` values: `exp.key=v` targets one experiment, `key=v` all that have the key."""
    names = {exp.name for exp, _ in entries}
    for item in sets:
        key, value = parse_override(item)
        head, _, rest = key.partition(".")
        targets = [(exp, over) for exp, over in entries if head == exp.name and rest]
        if targets:
            key = rest
        else:
            targets = [(exp, over) for exp, over in entries if _has_key(exp, key)]
        if not targets:
            build_spec(entries[0][0].spec, {}, {key: value})  # raises naming the bad key
            raise SpecError(
                f"--set {key}: no experiment of this run has that key ({', '.join(sorted(names))})"
            )
        for _, over in targets:
            over[key] = value
    return entries


def _has_key(experiment: Experiment, key: str) -> bool:
    try:
        split_sweep(experiment.spec, {key: None})
    except SpecError:
        return False
    return True


def make_plan(
    target: str | None = None,
    profile: str = "quick",
    sets: Iterable[str] = (),
    seed: int | None = None,
) -> Plan:
    """Resolves a command into runs; every bad input raises SpecError before anything runs."""
    target = target or DEFAULT_TARGET
    if profile not in PROFILES:
        raise SpecError(f"--profile {profile!r}: allowed are {', '.join(PROFILES)}")
    entries = []
    for experiment, overrides in _entries(target, profile):
        if profile not in experiment.profiles:
            raise SpecError(
                f"experiment '{experiment.name}' has no profile '{profile}': "
                f"it has {', '.join(experiment.profiles)}"
            )
        entries.append((experiment, dict(overrides)))
    entries = _assign_sets(entries, sets)

    jobs: list[Job] = []
    sweeps: dict[str, list[str]] = {}
    seen: set[str] = set()
    for experiment, overrides in entries:
        if seed is not None:
            overrides["seed"] = seed
        swept: dict[str, None] = {}
        try:
            _add_jobs(experiment, experiment.profiles[profile], overrides, jobs, swept, seen)
        except SpecError as err:  # in a suite, say whose spec it is
            raise SpecError(f"{experiment.name}: {err}" if len(entries) > 1 else str(err)) from None
        sweeps[experiment.name] = list(swept)
    return Plan(target, profile, jobs, sweeps)


def _add_jobs(experiment, blocks, overrides: dict, jobs: list, swept: dict, seen: set) -> None:
    """Appends the jobs of one experiment's profile blocks with `overrides` to `jobs`."""
    for block in blocks if isinstance(blocks, list) else [blocks]:
        fixed, axes = split_sweep(experiment.spec, {**block, **overrides})
        swept.update(dict.fromkeys(axes))
        for point in expand_grid(axes):
            spec = build_spec(experiment.spec, {}, {**fixed, **point})
            rid = run_id(experiment.name, spec)
            if rid in seen:
                continue
            if experiment.check is not None:
                _check(experiment, spec)
            seen.add(rid)
            jobs.append(Job(experiment, spec, rid, len(jobs), point))


def _check(experiment: Experiment, spec: Spec) -> None:
    try:
        experiment.check(spec)
    except SpecError:
        raise
    except ValueError as err:
        raise SpecError(str(err).splitlines()[0]) from None
