"""Claims: what an experiment tests, the published figure it answers to, and a check on its runs.

A check reads an experiment's finished runs (the store's dicts: spec, metrics) and gives a
Verdict: *held*, *not held*, or *not measured at this profile* when the runs lack what it
needs (a model, a second seed, a metric), always with the numbers behind it. Runs that
differ in a setting other than the compared one and the seed are never averaged together:
`per_setting` splits them, and a claim holds only where it holds in every part.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from bindbench.core.config import flatten, varying

HELD, NOT_HELD, NOT_MEASURED = "held", "not held", "not measured at this profile"


@dataclass(frozen=True)
class Verdict:
    status: str  # HELD, NOT_HELD or NOT_MEASURED
    numbers: dict[str, float] = field(default_factory=dict)  # the figures behind it
    detail: str = ""  # one line: why, in words


@dataclass(frozen=True)
class Claim:
    """A sentence an experiment tests, its anchor (the published figure and its source), and
    `check(runs) -> Verdict` on the experiment's finished runs."""

    name: str
    sentence: str
    anchor: str
    check: Callable[[list[dict]], Verdict]


def judge(claim: Claim, runs: list[dict]) -> dict:
    """The claim's entry for the report: the sentence, anchor, verdict and its numbers."""
    verdict = claim.check([r for r in runs if r["status"] == "done"])
    numbers = {k: round(v, 4) if isinstance(v, float) else v for k, v in verdict.numbers.items()}
    return {
        "claim": claim.name,
        "sentence": claim.sentence,
        "anchor": claim.anchor,
        "verdict": verdict.status,
        "numbers": numbers,
        "detail": verdict.detail,
    }


def values(runs: Iterable[dict], metric: str, **where) -> list[float]:
    """The metric of each run whose spec has the given values (dotted keys spelt with __:
    model__kind="slot_mlp"); runs without the metric, or with NaN, are left out."""
    wanted = {k.replace("__", "."): v for k, v in where.items()}
    found = []
    for run in runs:
        flat = flatten(run["spec"])
        value = run["metrics"].get(metric)
        if all(flat.get(k) == v for k, v in wanted.items()) and value is not None and not math.isnan(value):
            found.append(float(value))
    return found


def per_setting(runs: list[dict], compared: Iterable[str] = ()) -> dict[str, list[dict]]:
    """The runs split by every setting that differs between them, but the seed and the
    `compared` keys: {"key=value, ...": runs} ({"": runs} when nothing else differs)."""
    keys = varying([r["spec"] for r in runs], ignore={"seed", *compared})
    parts: dict[str, list[dict]] = {}
    for run in runs:
        flat = flatten(run["spec"])
        parts.setdefault(", ".join(f"{k}={flat.get(k)}" for k in keys), []).append(run)
    return parts


def exceeds(
    high: list[float], low: list[float], high_name: str, low_name: str, margin: str = "spread"
) -> Verdict:
    """Whether the mean of `high` is above the mean of `low`: by more than the larger standard
    deviation of the two (margin "spread"; one value each: by anything), or at all ("mean")."""
    if not high or not low:
        missing = high_name if not high else low_name
        return Verdict(NOT_MEASURED, {}, f"no finished run gives {missing}")
    mean_high, mean_low = float(np.mean(high)), float(np.mean(low))
    spread = max(float(np.std(high)), float(np.std(low))) if margin == "spread" else 0.0
    numbers = {
        f"{high_name} mean": mean_high,
        f"{high_name} std": float(np.std(high)),
        f"{low_name} mean": mean_low,
        f"{low_name} std": float(np.std(low)),
        "difference": mean_high - mean_low,
        "runs": len(high) + len(low),
    }
    held = mean_high - mean_low > spread
    if margin != "spread":
        how = "on the mean"
    elif len(high) == 1 and len(low) == 1:
        how = "(one run each: no seed spread)"
    else:
        how = f"by more than the seed spread {spread:.3f}"
    verb = "above" if held else "not above"
    detail = f"{high_name} {mean_high:.3f} is {verb} {low_name} {mean_low:.3f} {how}"
    return Verdict(HELD if held else NOT_HELD, numbers, detail)


def in_every(parts: dict[str, list[dict]], check: Callable[[list[dict]], Verdict]) -> Verdict:
    """`check` on each part of `per_setting`: held where it holds in every measured part, not
    held where one part fails; the numbers of each part prefixed with its label."""
    verdicts = {label: check(runs) for label, runs in parts.items()}
    measured = {label: v for label, v in verdicts.items() if v.status != NOT_MEASURED}
    if not measured:
        return next(iter(verdicts.values()), Verdict(NOT_MEASURED, {}, "no finished runs"))
    if len(verdicts) == 1:
        return next(iter(verdicts.values()))
    numbers = {f"{label}: {k}": v for label, verdict in measured.items() for k, v in verdict.numbers.items()}
    failed = [label for label, v in measured.items() if v.status == NOT_HELD]
    detail = "; ".join(f"{label}: {v.detail}" for label, v in measured.items())
    return Verdict(NOT_HELD if failed else HELD, numbers, detail)


def rises_with(runs: list[dict], metric: str, key: str) -> Verdict:
    """Whether the mean `metric` over seeds rises at every step up in `key` (at least two
    values), in every part of the runs that differ in nothing else. Runs without `key` (a
    user's model has no width) take no part."""
    runs = [r for r in runs if flatten(r["spec"]).get(key) is not None]

    def one(part: list[dict]) -> Verdict:
        by_value: dict = {}
        for run in part:
            value = flatten(run["spec"]).get(key)
            by_value.setdefault(value, []).extend(values([run], metric))
        means = {v: float(np.mean(m)) for v, m in sorted(by_value.items()) if m}
        if len(means) < 2:
            return Verdict(NOT_MEASURED, {}, f"{metric} at fewer than two values of {key}")
        numbers = {f"{metric} at {key}={v}": m for v, m in means.items()}
        pairs = list(means.items())
        falls = [(a, b) for (a, ma), (b, mb) in zip(pairs, pairs[1:]) if mb <= ma]
        shown = ", ".join(f"{m:.3f}" for m in means.values())
        if falls:
            a, b = falls[0]
            return Verdict(NOT_HELD, numbers, f"{metric} {shown}: no higher at {key}={b} than at {a}")
        return Verdict(HELD, numbers, f"{metric} {shown} over {key}={', '.join(map(str, means))}")

    return in_every(per_setting(runs, [key]), one)


def beyond(found: list[float], bound: float, name: str, above: bool = True) -> Verdict:
    """Whether the mean of `found` is at or above `bound` (`above`), or below it."""
    if not found:
        return Verdict(NOT_MEASURED, {}, f"no finished run gives {name}")
    mean = float(np.mean(found))
    held = mean >= bound if above else mean < bound
    side = ">=" if above else "<"
    numbers = {f"{name} mean": mean, f"{name} std": float(np.std(found)), "bound": bound, "runs": len(found)}
    return Verdict(
        HELD if held else NOT_HELD, numbers, f"{name} {mean:.3f} {side if held else 'not ' + side} {bound}"
    )


def every(verdicts: dict[str, Verdict]) -> Verdict:
    """Verdicts on named parts of one claim joined: not measured if any part is, else held
    when all hold; numbers prefixed with the part's name."""
    numbers = {f"{name}: {k}": v for name, verdict in verdicts.items() for k, v in verdict.numbers.items()}
    detail = "; ".join(v.detail for v in verdicts.values())
    if any(v.status == NOT_MEASURED for v in verdicts.values()):
        return Verdict(NOT_MEASURED, numbers, detail)
    held = all(v.status == HELD for v in verdicts.values())
    return Verdict(HELD if held else NOT_HELD, numbers, detail)
