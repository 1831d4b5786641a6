import math

import pytest

from bindbench.core.claims import (
    HELD,
    NOT_HELD,
    NOT_MEASURED,
    Claim,
    exceeds,
    in_every,
    judge,
    per_setting,
    values,
)


def run(kind, seed, status="done", lr=1e-3, **metrics):
    return {
        "spec": {"model": {"kind": kind}, "seed": seed, "train": {"lr": lr}},
        "metrics": metrics,
        "status": status,
    }


def test_exceeds_needs_more_than_the_larger_seed_spread():
    # means 0.6 and 0.5, standard deviations 0.1 and 0.0: a difference of 0.1 is not more than 0.1
    assert exceeds([0.5, 0.7], [0.5, 0.5], "a", "b").status == NOT_HELD
    verdict = exceeds([0.65, 0.75], [0.5, 0.5], "a", "b")
    assert verdict.status == HELD
    assert verdict.numbers["difference"] == pytest.approx(0.2)
    assert verdict.numbers["a std"] == pytest.approx(0.05)
    assert exceeds([0.5, 0.7], [0.5, 0.5], "a", "b", margin="mean").status == HELD


def test_exceeds_with_one_run_each_says_there_is_no_spread():
    verdict = exceeds([0.6], [0.5], "a", "b")
    assert verdict.status == HELD and "no seed spread" in verdict.detail
    assert exceeds([0.4], [0.5], "a", "b").status == NOT_HELD


def test_exceeds_without_runs_is_not_measured():
    verdict = exceeds([], [0.5], "Slot Attention", "b")
    assert verdict.status == NOT_MEASURED and "Slot Attention" in verdict.detail


def test_values_match_dotted_keys_and_skip_missing_or_nan():
    runs = [run("sa", 0, fg_ari=0.5), run("sa", 1, fg_ari=math.nan), run("mlp", 0, fg_ari=0.3), run("sa", 2)]
    assert values(runs, "fg_ari", model__kind="sa") == [0.5]
    assert values(runs, "fg_ari") == [0.5, 0.3]


def test_per_setting_splits_on_what_varies_but_the_seed_and_the_compared_key():
    runs = [run("sa", 0), run("mlp", 0), run("sa", 1), run("sa", 0, lr=1e-2)]
    parts = per_setting(runs, ["model.kind"])
    assert sorted(parts) == ["train.lr=0.001", "train.lr=0.01"]
    assert len(parts["train.lr=0.001"]) == 3
    assert list(per_setting(runs[:3], ["model.kind"])) == [""]


def test_in_every_holds_only_where_every_measured_part_holds():
    def check(part):
        return exceeds(values(part, "x", model__kind="sa"), values(part, "x", model__kind="mlp"), "sa", "mlp")

    good = [run("sa", 0, x=0.9), run("mlp", 0, x=0.1)]
    bad = [run("sa", 0, lr=1e-2, x=0.1), run("mlp", 0, lr=1e-2, x=0.9)]
    unmeasured = [run("sa", 0, lr=1e-1, x=0.9)]
    assert in_every(per_setting(good + unmeasured, ["model.kind"]), check).status == HELD
    verdict = in_every(per_setting(good + bad, ["model.kind"]), check)
    assert verdict.status == NOT_HELD
    assert verdict.numbers["train.lr=0.01: difference"] == pytest.approx(-0.8)
    assert in_every(per_setting(unmeasured, ["model.kind"]), check).status == NOT_MEASURED


def test_judge_reads_finished_runs_only():
    claim = Claim(
        "c",
        "sa above mlp",
        "anchor",
        lambda runs: exceeds(values(runs, "x", model__kind="sa"), [0.5], "sa", "b"),
    )
    entry = judge(claim, [run("sa", 0, status="failed", x=0.9), run("sa", 1, x=0.4)])
    assert entry["verdict"] == NOT_HELD and entry["numbers"]["sa mean"] == 0.4
    assert {"claim", "sentence", "anchor", "verdict", "numbers", "detail"} <= set(entry)


def test_rises_with_needs_a_rise_at_every_step_in_every_part():
    from bindbench.core.claims import rises_with

    def r(width, frac, seed, score):
        return {
            "spec": {"model": {"width": width}, "task": {"frac": frac}, "seed": seed},
            "metrics": {"r2": score},
            "status": "done",
        }

    rising = [r(32, 0.5, s, 0.2 + s * 0.01) for s in (0, 1)] + [r(64, 0.5, 0, 0.4), r(128, 0.5, 0, 0.6)]
    verdict = rises_with(rising, "r2", "model.width")
    assert verdict.status == HELD and verdict.numbers["r2 at model.width=32"] == pytest.approx(0.205)
    flat_top = [r(32, 0.9, 0, 0.1), r(64, 0.9, 0, 0.3), r(128, 0.9, 0, 0.3)]
    verdict = rises_with(rising + flat_top, "r2", "model.width")
    assert verdict.status == NOT_HELD and "task.frac=0.9" in verdict.detail
    assert rises_with([r(32, 0.5, 0, 0.2)], "r2", "model.width").status == NOT_MEASURED


def test_beyond_compares_the_mean_to_a_bound_and_every_joins_parts():
    from bindbench.core.claims import beyond, every

    assert beyond([1.0, 0.8], 0.9, "simple").status == HELD  # the mean, 0.9, is at the bound
    assert beyond([0.95, 0.80], 0.9, "simple").status == NOT_HELD
    assert beyond([0.1], 0.25, "jump", above=False).status == HELD
    assert beyond([], 0.25, "jump", above=False).status == NOT_MEASURED
    held, failed = beyond([0.1], 0.25, "a", above=False), beyond([0.3], 0.25, "b", above=False)
    assert every({"a": held, "a2": held}).status == HELD
    assert every({"a": held, "b": failed}).status == NOT_HELD
    assert every({"a": held, "c": beyond([], 0.2, "c")}).status == NOT_MEASURED
    assert every({"a": held, "b": failed}).numbers["b: b mean"] == pytest.approx(0.3)
