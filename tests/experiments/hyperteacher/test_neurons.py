import pytest
import torch

from bindbench.core.config import SpecError, build_spec
from bindbench.core.plan import make_plan
from bindbench.core.worker import RunContext
from bindbench.experiments.hyperteacher.neurons import NeuronsSpec, power_law, run, search, width_plot


@pytest.mark.parametrize("needed", [1, 8, 9, 20, 37, 64])
def test_search_doubles_then_bisects_to_the_smallest_passing_width(needed):
    width, tried = search(lambda w: w >= needed, start=8, maximum=64, refinements=10)
    assert width == max(needed, 8)
    first_pass = next(g for g in (8, 16, 32, 64) if g >= needed)
    doubling = [g for g in (8, 16, 32, 64) if g <= first_pass]
    assert tried[: len(doubling)] == doubling
    assert all(min(doubling[-2:]) < w < first_pass for w in tried[len(doubling) :])


def test_search_gives_up_above_the_maximum_and_limits_refinements():
    assert search(lambda w: False, 8, 64, 3) == (None, [8, 16, 32, 64])
    width, tried = search(lambda w: w >= 37, 8, 64, refinements=1)
    assert tried == [8, 16, 32, 64, 48] and width == 48


def test_power_law_recovers_a_known_exponent():
    a, b = power_law([4, 8, 16], [12, 24, 48])
    assert a == pytest.approx(3.0) and b == pytest.approx(1.0)
    runs = [
        {
            "status": "done",
            "spec": {"task": {"num_modules": m}},
            "metrics": {"reached": 1.0, "min_width": 5.0 * m**2},
        }
        for m in (4, 8, 16)
    ]
    data = width_plot(runs).data
    assert data["exponent"] == pytest.approx(2.0)
    # the least-squares line through (4, 80), (8, 320), (16, 1280), by hand:
    # slope = sum dx dy / sum dx^2 = 7680 / (672 / 9); intercept = 560 - slope * 28 / 3
    assert data["line_per_module"] == pytest.approx(720 / 7)
    assert data["line_intercept"] == pytest.approx(-400.0)


def test_a_run_stores_every_width_it_tried(tiny):
    sets = [s for s in tiny if s.startswith(("task.", "train.", "eval"))]
    spec = make_plan("neurons", sets=[*sets, "start_width=4", "max_width=8", "threshold=0.99"]).jobs[0].spec
    result = run(spec, RunContext(torch.device("cpu")))
    trials = result.extra["trials"]
    assert [t["width"] for t in trials] == [4, 8]  # 30 steps reach no R^2 of 0.99
    assert result.metrics["reached"] == 0.0 and result.metrics["min_width"] != result.metrics["min_width"]
    assert result.metrics["best_ood_r2"] == max(t["ood_r2"] for t in trials)


def test_widths_must_be_in_order():
    with pytest.raises(SpecError) as error:
        build_spec(NeuronsSpec, {}, {"start_width": 64, "max_width": 8})
    # a check across fields gives its own message, not the whole spec it was given
    assert str(error.value) == "max_width=8 must be >= start_width=64"
