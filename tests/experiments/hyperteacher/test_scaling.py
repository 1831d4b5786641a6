import math

import pytest
import torch
from scipy import stats

from bindbench.core.plan import make_plan
from bindbench.core.worker import RunContext
from bindbench.experiments.hyperteacher.scaling import (
    controls_plot,
    correlation_plot,
    heatmap_plot,
    run,
    run_group,
)


@pytest.fixture
def probed(tiny):
    return [*tiny, "probe.tasks=64"]


def test_a_run_stores_per_layer_decodability_and_per_task_values(tiny):
    spec = make_plan("scaling", sets=[*tiny, "probe.tasks=512"]).jobs[0].spec
    result = run(spec, RunContext(torch.device("cpu")))
    m = result.metrics
    for layer in ("encoding", "hidden.0", "readout"):
        assert {f"decodability_test_{layer}", f"decodability_ood_{layer}"} <= set(m)
    assert m["decodability_r2"] == m["decodability_ood_hidden.0"]
    # the identity encoding is z itself: the probe must read it back almost perfectly
    assert m["decodability_test_encoding"] > 0.99 and m["decodability_ood_encoding"] > 0.99
    assert len(result.extra["ood_task_r2"]) == len(result.extra["ood_task_decodability"]) == 512
    assert m["task_spearman"] == pytest.approx(
        stats.spearmanr(result.extra["ood_task_decodability"], result.extra["ood_task_r2"]).statistic,
        abs=1e-9,
    )


def test_the_cg10_probe_changes_only_the_decodability_figures(probed):
    exact = run(make_plan("scaling", sets=probed).jobs[0].spec, RunContext(torch.device("cpu"))).metrics
    spec = make_plan("scaling", sets=[*probed, "probe.solver=cg10"]).jobs[0].spec
    cg10 = run(spec, RunContext(torch.device("cpu"))).metrics
    assert exact.keys() == cg10.keys()
    assert exact["ood_r2"] == cg10["ood_r2"]  # the same student: only the probe differs
    probes = [k for k in exact if k.startswith("decodability_")]
    assert all(cg10[k] != exact[k] for k in probes)


def test_ensembled_scaling_runs_equal_runs_alone(probed):
    specs = [j.spec for j in make_plan("scaling", sets=[*probed, "seed=[0,1]", "task.support=random"]).jobs]
    ctx = RunContext(torch.device("cpu"))
    for spec, member in zip(specs, run_group(specs, ctx)):
        alone = run(spec, ctx).metrics
        for key in ("ood_r2", "decodability_r2", "decodability_test_hidden.0"):
            assert member.metrics[key] == pytest.approx(alone[key], rel=1e-3, abs=1e-4)


def test_the_quick_profile_joins_a_coverage_grid_and_the_controls():
    jobs = make_plan("scaling", "quick").jobs
    random = {(j.spec.model.width, j.spec.task.frac_ood) for j in jobs if j.spec.task.support == "random"}
    controls = {(j.spec.task.support, j.spec.task.frac_ood) for j in jobs if j.spec.task.support != "random"}
    assert len(random) >= 6 and len({w for w, _ in random}) >= 3 and len({f for _, f in random}) >= 2
    assert {s for s, _ in controls} == {"non_compositional", "pseudo_random_disconnected"}
    assert "scaling" in {j.experiment.name for j in make_plan().jobs}  # in the default suite


def _fake(width, frac_ood, support, ood, decod):
    spec = {
        "model": {"width": width, "depth": 2},
        "task": {"frac_ood": frac_ood, "support": support},
        "seed": 0,
    }
    metrics = {"ood_r2": ood, "decodability_r2": decod, "task_spearman": 0.5}
    return {"status": "done", "spec": spec, "metrics": metrics}


def test_report_plots_carry_the_correlation_the_heatmap_and_the_controls():
    runs = [
        _fake(w, f, "random", ood=w / 100 - f / 10, decod=w / 90 - f / 8)
        for w in (16, 32, 64)
        for f in (0.5, 0.9)
    ] + [_fake(w, 0.5, "non_compositional", ood=-0.5, decod=-3.0) for w in (16, 32, 64)]
    corr = correlation_plot(runs).data
    xs = [r["metrics"]["decodability_r2"] for r in runs]
    ys = [r["metrics"]["ood_r2"] for r in runs]
    assert corr["spearman"] == pytest.approx(stats.spearmanr(xs, ys).statistic)
    assert corr["pearson"] == pytest.approx(stats.pearsonr(xs, ys).statistic)
    grid = heatmap_plot(runs).data["depth=2"]
    assert grid["widths"] == [16, 32, 64] and grid["coverages"] == [0.1, 0.5]
    assert grid["ood_r2"][1][2] == pytest.approx(64 / 100 - 0.05)
    controls = controls_plot(runs).data
    assert controls["non_compositional"]["ood_r2"] == [-0.5, -0.5, -0.5]
    assert all(math.isfinite(v) for v in controls["random"]["ood_r2"])
