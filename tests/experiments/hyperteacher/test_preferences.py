import pytest
import torch
from scipy import stats

from bindbench.core.claims import HELD, NOT_HELD
from bindbench.core.plan import make_plan
from bindbench.core.worker import RunContext
from bindbench.experiments.hyperteacher.preferences import (
    CLAIMS,
    TINY,
    PreferenceSetup,
    plots,
    run,
    run_group,
)

SETS = [f"{k}={v}" for k, v in TINY.items()]
CTX = RunContext(torch.device("cpu"))


def spec_of(*more: str):
    return make_plan("preferences", sets=[*SETS, *more]).jobs[0].spec


def test_acc_and_acc_all_on_a_hand_built_case():
    # two episodes of three steps; the second ended after its second step (-1 after)
    actions = torch.tensor([[1, 2, 0], [3, 0, -1]])
    chosen = torch.tensor([[1, 2, 0], [3, 4, 2]])  # episode 2 is wrong at its NOTHING
    logits = torch.nn.functional.one_hot(chosen, 5).float()
    scores = PreferenceSetup.scores(logits, actions)
    assert scores["acc"].item() == pytest.approx(4 / 5)  # 4 of the 5 reached steps
    assert scores["acc_all"].item() == pytest.approx(1 / 2)
    assert PreferenceSetup.per_task(logits, actions).tolist() == pytest.approx([1.0, 0.5])
    # the step after an episode ended never counts, right or wrong
    chosen[1, 1] = 0
    assert PreferenceSetup.scores(torch.nn.functional.one_hot(chosen, 5).float(), actions)["acc_all"] == 1.0


def test_the_loss_is_cross_entropy_over_the_reached_steps():
    logits = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0))
    actions = torch.tensor([[1, 2, 0, -1], [4, 4, 4, 4], [0, -1, -1, -1]])
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), actions.flatten(), ignore_index=-1)
    assert PreferenceSetup.loss(logits, actions).item() == pytest.approx(expected.item(), rel=1e-6)
    stacked = PreferenceSetup.loss(torch.stack([logits, logits]), torch.stack([actions, actions]))
    assert stacked.shape == (2,)  # one loss per ensemble member


def test_a_run_scores_both_splits_and_probes_z_from_every_layer():
    result = run(spec_of("probe.tasks=512"), CTX)
    m = result.metrics
    assert {"id_acc", "id_acc_all", "ood_acc", "ood_acc_all", "train_loss"} <= set(m)
    assert 0 <= m["ood_acc_all"] <= 1 and 0 <= m["ood_acc"] <= 1
    for layer in ("encoding", "hidden.0", "readout"):
        assert {f"decodability_test_{layer}", f"decodability_ood_{layer}"} <= set(m)
    assert m["decodability_test_encoding"] > 0.99  # z is in the input as it is
    per_task, decodable = result.extra["ood_task_acc"], result.extra["ood_task_decodability"]
    assert len(per_task) == len(decodable) == 512
    assert m["task_spearman"] == pytest.approx(stats.spearmanr(decodable, per_task).statistic, abs=1e-9)


def test_a_run_learns_the_demonstrations():
    # a few hundred steps take the per-step accuracy well above always saying NOTHING
    spec = spec_of("model.width=64", "train.steps=300", "train.lr=3e-3", "eval_tasks=256")
    setup = PreferenceSetup(spec, torch.device("cpu"))
    actions = setup.eval_targets["id"]
    nothing = ((actions == 0).sum() / (actions >= 0).sum()).item()
    assert run(spec, CTX).metrics["id_acc"] > nothing + 0.1


def test_ensembled_runs_equal_runs_alone():
    specs = [j.spec for j in make_plan("preferences", sets=[*SETS, "seed=[0,1]"]).jobs]
    for spec, member in zip(specs, run_group(specs, CTX)):
        alone = run(spec, CTX).metrics
        for key in ("ood_acc", "id_acc_all", "decodability_r2", "train_loss"):
            assert member.metrics[key] == pytest.approx(alone[key], rel=1e-3, abs=1e-4)


def test_the_profiles_sweep_width_and_coverage_beside_the_controls():
    for profile in ("quick", "full"):
        jobs = make_plan("preferences", profile).jobs
        random = {(j.spec.model.width, j.spec.task.frac_ood) for j in jobs if j.spec.task.support == "random"}
        controls = {j.spec.task.support for j in jobs} - {"random"}
        assert len({w for w, _ in random}) >= 2 and len({f for _, f in random}) >= 2
        assert controls == {"non_compositional", "pseudo_random_disconnected"}
    assert len({j.spec.seed for j in make_plan("preferences", "full").jobs}) >= 3
    assert "preferences" in {j.experiment.name for j in make_plan().jobs}  # in the default suite


def fake(width, frac_ood, support, ood, decodability, seed=0):
    task = {"frac_ood": frac_ood, "support": support}
    spec = {"model": {"width": width, "depth": 2}, "task": task, "seed": seed}
    metrics = {"ood_acc_all": ood, "decodability_r2": decodability, "task_spearman": 0.3}
    return {"status": "done", "spec": spec, "metrics": metrics}


def claim(name):
    return next(c for c in CLAIMS if c.name == name)


def test_a_control_fails_only_when_it_stays_below_random_support_at_every_width():
    main = [fake(w, f, "random", ood=0.5 + w / 1000 + s / 100, decodability=w / 100, seed=s)
            for w in (32, 128) for f in (0.25, 0.75) for s in range(3)]  # fmt: skip

    def control(ood):
        return [
            fake(w, 0.25, "non_compositional", ood + s / 100, 0.0, s) for w in (32, 128) for s in range(3)
        ]

    low = control(0.1)
    assert claim("non_compositional_fails").check(main + low).status == HELD
    high = control(0.55)
    assert claim("non_compositional_fails").check(main + high).status == NOT_HELD
    assert claim("width").check(main).status == HELD
    assert claim("decodability").check(main).status == HELD
    figures = {p.title: p.data for p in plots(main + low)}
    heat = figures["OOD acc_all over width x coverage (random support)"]["depth=2"]
    assert heat["widths"] == [32, 128] and heat["coverages"] == [0.25, 0.75]
    assert heat["ood_acc_all"][1][0] == pytest.approx(0.5 + 0.032 + 0.01)  # coverage 0.75 = frac_ood 0.25
    for r in main:
        r["metrics"]["id_acc_all"] = r["metrics"]["ood_acc_all"] + 0.1
    beside = {p.title: p.data for p in plots(main)}["ID beside OOD acc_all against width"]["frac_ood=0.75"]
    assert beside["widths"] == [32, 128]
    assert beside["id_acc_all"] == pytest.approx([o + 0.1 for o in beside["ood_acc_all"]])
    assert beside["ood_acc_all"][1] == pytest.approx(0.5 + 0.128 + 0.01)
