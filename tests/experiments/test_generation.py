import base64
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from bindbench.cli import main
from bindbench.core.claims import HELD, NOT_HELD, NOT_MEASURED
from bindbench.core.worker import RunContext
from bindbench.experiments import generation
from bindbench.tasks.prompts import Prompts


def test_the_generator_trains_on_training_combinations_only_and_the_judge_on_all(monkeypatch, tiny_spec):
    torch.set_num_threads(1)
    drawn = []
    original = Prompts.sample

    def recording(self, batch_size, gen, split="train", render=True):
        batch = original(self, batch_size, gen, split, render)
        drawn.append((split, batch.held_out.clone()))
        return batch

    monkeypatch.setattr(Prompts, "sample", recording)
    spec = tiny_spec(
        "generation", "train.steps=6", "judge.steps=6", "judge.max_steps=6", "judge.batch_size=32"
    )
    generation.run(spec, RunContext(torch.device("cpu")))
    training = [held for split, held in drawn if split == "train"]
    judging = [held for split, held in drawn if split == "all"]
    assert len(judging) == 6 and torch.cat(judging).any()  # the judge sees held-out combinations
    assert len(training) >= 6 and not torch.cat(training).any()  # the generator never does


def _planted(concept_sizes, rows_per_prompt, gen, mixing, code: bool):
    """Activations of two blocks at one time, a linear code of the concepts (or noise) and noise,
    and the prompt encoder's, a linear code always."""
    values = torch.stack([torch.randint(k, (400,), generator=gen) for k in concept_sizes], 1)
    values = values.repeat_interleave(rows_per_prompt, 0)
    hot = torch.cat([torch.nn.functional.one_hot(values[:, i], k) for i, k in enumerate(concept_sizes)], 1)
    linear = hot.double() @ mixing
    noise = torch.randn(len(values), 16, generator=gen, dtype=torch.float64)
    first = linear if code else noise
    acts = {1.0: {"a": first, "b": torch.randn_like(noise)}, "text": {"prompt": linear}}
    return {"values": values, "acts": acts}


@pytest.mark.parametrize("code", [True, False])
def test_decodability_of_a_planted_linear_code_is_1_and_of_noise_is_at_chance(code):
    gen, sizes = torch.Generator().manual_seed(0), (3, 4)
    mixing = torch.randn(sum(sizes), 16, generator=gen, dtype=torch.float64)  # one code for both splits
    seen, held = (_planted(sizes, 2, gen, mixing, code) for _ in range(2))
    metrics, extra = generation.decodability(seen, held, sizes, samples=2)
    assert len(extra["prompt_decodability"]) == 400 and set(extra["probes"]) == {"a@1.0", "b@1.0", "prompt"}
    assert metrics["decodability_text_f1"] == 1.0  # reported beside, never chosen as the best
    if code:
        assert extra["best_probe"] == "a@1.0"
        assert metrics["decodability_f1"] == 1.0 and metrics["decodability_exact"] == 1.0
    else:  # weighted F1 at chance is about 1/k per concept; exact match about 1/12
        assert metrics["decodability_f1"] < 0.42 and metrics["decodability_exact"] < 0.15


def test_rank_correlation_is_scipy_s_spearman_with_fisher_s_interval():
    x = [0.1, 0.4, 0.35, 0.8, 0.9, 0.2, 0.6]
    y = [0.0, 0.5, 0.2, 0.7, 1.0, 0.3, 0.4]
    rho, low, high = generation.rank_correlation(x, y)
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic)
    half = 1.96 * 1.06 / math.sqrt(len(x) - 3)  # by hand: tanh(atanh(rho) -+ half)
    assert (low, high) == pytest.approx(
        (math.tanh(math.atanh(rho) - half), math.tanh(math.atanh(rho) + half))
    )
    assert low < rho < high
    assert all(math.isnan(v) for v in generation.rank_correlation([1, 2, 3], [1, 2, 3]))
    assert all(math.isnan(v) for v in generation.rank_correlation([1, 2, 3, 4], [5, 5, 5, 5]))


def _run(width, held_out, seed, seen, held, decodability):
    return {
        "id": f"{width}-{held_out}-{seed}",
        "status": "done",
        "spec": {"seed": seed, "generator": {"width": width}, "prompts": {"held_out": held_out}},
        "metrics": {
            "success_seen": seen,
            "success_held_out": held,
            "decodability_f1": decodability,
            "judge_accuracy": 0.99,
            "coverage": 1 - held_out,
            "prompt_spearman": 0.3,
        },
    }


def test_the_claims_read_the_smallest_coverage_and_the_correlation_across_runs():
    claims = {c.name: c.check for c in generation.CLAIMS}
    runs = [_run(16, 0.7, s, 0.8, 0.2 + 0.01 * s, 0.5 + 0.01 * s) for s in range(3)]
    runs += [_run(16, 0.3, s, 0.9, 0.95, 0.9 + 0.01 * s) for s in range(3)]  # held out is high here
    verdict = claims["held_out_below_seen"](runs)
    assert verdict.status == HELD and verdict.numbers["coverage"] == pytest.approx(0.3)
    assert claims["judge_reliable"](runs).status == HELD
    one_bad = [*runs[:-1], {**runs[-1], "metrics": {**runs[-1]["metrics"], "judge_accuracy": 0.9}}]
    verdict = claims["judge_reliable"](one_bad)  # the mean is 0.975, but one run's judge is off
    assert verdict.status == NOT_HELD and verdict.numbers["runs below"] == 1
    assert claims["decodability_predicts_success"](runs).status == HELD
    flipped = [
        {**r, "metrics": {**r["metrics"], "decodability_f1": 1 - r["metrics"]["decodability_f1"]}}
        for r in runs
    ]
    assert claims["decodability_predicts_success"](flipped).status == NOT_HELD
    assert claims["decodability_predicts_success"](runs[:3]).status == NOT_MEASURED


def test_a_run_is_reproducible_and_its_report_draws_its_samples(tmp_path, tiny_spec):
    torch.set_num_threads(1)
    spec = tiny_spec("generation")
    first = generation.run(spec, RunContext(torch.device("cpu")))
    second = generation.run(spec, RunContext(torch.device("cpu")))
    assert first.metrics.keys() == second.metrics.keys()
    for key, value in first.metrics.items():
        if key != "seconds_training":
            assert value == second.metrics[key] or (math.isnan(value) and math.isnan(second.metrics[key])), (
                key
            )
    assert first.extra["grid"] == second.extra["grid"]
    grid = first.extra["grid"]["held_out"]
    pixels = np.frombuffer(base64.b64decode(grid["base64"]), np.uint8).reshape(grid["shape"])
    assert pixels.shape == (len(grid["prompts"]) * grid["columns"], 16, 16, 3)
    stored = json.loads(
        json.dumps({"id": "r", "status": "done", "spec": spec.model_dump(), **vars(first)}, default=str)
    )
    titles = [p.title for p in generation.plots([stored])]
    assert len(titles) == 4 and "Samples" in titles[0]


def test_a_split_that_holds_nothing_out_exits_2_with_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    sets = ["prompts.colours=2", "prompts.shapes=2", "prompts.held_out=0.05"]
    code = main(["run", "generation", "--out", str(out), "--quiet", *sum((["--set", s] for s in sets), [])])
    error = capsys.readouterr().err
    assert code == 2 and len(error.strip().splitlines()) == 1 and "holds out none" in error, error
    assert not out.exists()


@pytest.mark.parametrize(
    "override, words",
    [
        ("generator.width=12", ["generator.width", "multiple of 8"]),
        ("prompts.resolution=20", ["prompts.resolution", "multiple of 8"]),
        ("sampling.times=[0.5,2]", ["sampling.times", "fractions"]),
    ],
)
def test_sizes_the_generator_cannot_take_exit_2_naming_the_key(override, words, tmp_path, capsys):
    code = main(["run", "generation", "--out", str(tmp_path / "out"), "--quiet", "--set", override])
    error = capsys.readouterr().err
    assert code == 2 and len(error.strip().splitlines()) == 1 and all(w in error for w in words), error


def test_the_two_object_form_runs_end_to_end_with_its_four_concepts(tiny_spec):
    torch.set_num_threads(1)
    result = generation.run(tiny_spec("generation", "prompts.form=pair"), RunContext(torch.device("cpu")))
    assert set(result.extra["concept_success"]["seen"]) == {
        "left colour",
        "left shape",
        "right colour",
        "right shape",
    }
    assert "left of" in result.extra["grid"]["held_out"]["prompts"][0]
    assert 0 <= result.metrics["success_held_out"] <= 1 and 0 <= result.metrics["decodability_f1"] <= 1


def test_a_judge_below_its_target_trains_on_in_half_rounds_up_to_its_most_steps(monkeypatch, tiny_spec):
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    spec = tiny_spec(
        "generation", "judge.steps=4", "judge.max_steps=9", "judge.target=1.0"
    )  # unreachable in 9 steps
    prompts = generation.make_prompts(spec)
    _, accuracy, steps = generation.fit_judge(spec, prompts, cpu)
    assert steps == 9 and accuracy < 1.0  # 4, then 2 + 2 + 1
    monkeypatch.setattr(
        generation, "_judged", lambda judge, images, values: torch.ones(len(images), dtype=bool)
    )
    assert generation.fit_judge(spec, prompts, cpu)[1:] == (1.0, 4)  # at its target: no more steps
    # at its defaults the rule stays out of the run id: runs stored before it keep theirs
    assert "target" not in json.loads(generation.GenerationSpec().model_dump_json())["judge"]


def test_the_judge_is_the_run_s_whatever_the_process_drew_before(tiny_spec):
    torch.set_num_threads(1)
    spec = tiny_spec("generation")
    prompts = generation.make_prompts(spec)
    judges = []
    for state in (1, 2):  # a worker's global generator after different earlier runs
        torch.manual_seed(state)
        judges.append(generation.fit_judge(spec, prompts, torch.device("cpu"))[0].state_dict())
    assert all(torch.equal(judges[0][k], judges[1][k]) for k in judges[0])
