import math

import pytest
import torch
from pydantic import ValidationError

from bindbench.core.config import SpecError, build_spec
from bindbench.core.training import TrainSpec, lr_factor, make_optimizer, train


def test_weight_decay_is_off_for_one_dimensional_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 1))
    optimizer = make_optimizer(model, lr=1e-3, weight_decay=0.1)
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    for p in model.parameters():
        assert (id(p) in decayed) == (p.ndim >= 2)


def test_schedules_warm_up_linearly_then_stay_flat_or_follow_a_cosine():
    constant = TrainSpec(steps=100, warmup_steps=10, schedule="constant")
    cosine = TrainSpec(steps=110, warmup_steps=10, schedule="cosine")
    assert lr_factor(0, constant) == pytest.approx(0.1)
    assert lr_factor(9, constant) == 1.0 and lr_factor(99, constant) == 1.0
    assert lr_factor(10, cosine) == 1.0
    assert lr_factor(60, cosine) == pytest.approx(0.5)
    assert lr_factor(110, cosine) == pytest.approx(0.0, abs=1e-12)


def test_halving_decays_from_step_zero_and_multiplies_the_warm_up():
    spec = TrainSpec(steps=1000, warmup_steps=10, schedule="halving", half_life=100)
    assert lr_factor(0, spec) == pytest.approx(0.1 * 0.5**0)
    assert lr_factor(5, spec) == pytest.approx(0.6 * 0.5**0.05)
    assert lr_factor(9, spec) == pytest.approx(1.0 * 0.5**0.09)
    assert lr_factor(10, spec) == pytest.approx(0.5**0.1)
    assert lr_factor(100, spec) == pytest.approx(0.5)
    assert lr_factor(200, spec) == pytest.approx(0.25)
    after = [lr_factor(s, spec) for s in range(spec.warmup_steps, spec.steps + 1)]
    assert all(a > b for a, b in zip(after, after[1:]))  # strictly falling once warm
    reference = TrainSpec(schedule="halving")  # 0.5^(step/100k), not tied to spec.steps
    assert reference.half_life == 100_000
    assert lr_factor(100_000, reference) == pytest.approx(0.5)
    assert lr_factor(0, TrainSpec(schedule="halving", half_life=1)) == 1.0  # no warm-up


def test_half_life_must_be_positive():
    with pytest.raises(ValidationError):
        TrainSpec(schedule="halving", half_life=0)
    with pytest.raises(SpecError, match="half_life"):
        build_spec(TrainSpec, overrides={"half_life": 0})


def _regression(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 1)
    true_w = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
    gen = torch.Generator().manual_seed(seed)

    def sample(step):
        x = torch.randn(32, 4, generator=gen)
        return x, x @ true_w.T

    def loss_fn(m, batch):
        return torch.nn.functional.mse_loss(m(batch[0]), batch[1])

    x_eval = torch.randn(64, 4, generator=torch.Generator().manual_seed(99))

    def evaluate(m):
        return {"mse": float(torch.nn.functional.mse_loss(m(x_eval), x_eval @ true_w.T))}

    return model, sample, loss_fn, evaluate


def test_training_reduces_the_loss_and_evaluates_every_n_steps():
    model, sample, loss_fn, evaluate = _regression()
    with torch.no_grad():
        before = evaluate(model)["mse"]
    result = train(model, TrainSpec(steps=200, lr=0.05, eval_every=50), sample, loss_fn, evaluate)
    assert [p["step"] for p in result.curve] == [50, 100, 150, 200]
    assert result.final["mse"] < 0.01 * before
    assert not result.diverged and result.steps == 200


def test_same_seed_gives_the_same_curve():
    spec = TrainSpec(steps=30, lr=0.01, eval_every=10)
    a = train(*_regression(3)[:1], spec, *_regression(3)[1:])
    b = train(*_regression(3)[:1], spec, *_regression(3)[1:])
    strip = lambda curve: [{k: v for k, v in p.items() if k != "seconds"} for p in curve]  # noqa: E731
    assert strip(a.curve) == strip(b.curve)


def test_a_non_finite_loss_marks_the_run_diverged_and_stops_it():
    model, sample, loss_fn, evaluate = _regression()
    calls = []

    def exploding(m, batch):
        calls.append(1)
        loss = loss_fn(m, batch)
        return loss * float("inf") if len(calls) >= 5 else loss

    result = train(model, TrainSpec(steps=100, eval_every=10), sample, exploding, evaluate)
    assert result.diverged and result.steps == 10 and len(calls) == 10
    assert math.isnan(result.curve[-1]["train_loss"])


def test_a_clip_norm_in_the_spec_clips_the_gradient_the_optimizer_steps_with(monkeypatch):
    seen = []  # the global gradient norm at each optimizer step
    step = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    norms = {}
    for clip in (None, 0.1):
        seen.clear()
        model, sample, loss_fn, evaluate = _regression()
        train(model, TrainSpec(steps=20, lr=0.05, eval_every=10, clip_norm=clip), sample, loss_fn, evaluate)
        norms[clip] = list(seen)
    assert len(norms[None]) == len(norms[0.1]) == 20
    assert min(norms[None]) > 0.1  # unclipped, every step's gradient is above the clip
    assert max(norms[0.1]) <= 0.1 * (1 + 1e-5)


def test_a_halving_run_records_the_scheduled_rate_at_each_evaluation():
    model, sample, loss_fn, evaluate = _regression()
    spec = TrainSpec(steps=40, lr=0.05, eval_every=10, warmup_steps=15, schedule="halving", half_life=20)
    result = train(model, spec, sample, loss_fn, evaluate)
    assert [p["step"] for p in result.curve] == [10, 20, 30, 40]
    for point in result.curve:
        assert point["lr"] == pytest.approx(spec.lr * lr_factor(point["step"], spec), rel=1e-12)
    assert result.curve[-1]["lr"] == pytest.approx(0.05 * 0.25)
    assert not result.diverged


def test_bf16_precision_runs_the_forward_in_bfloat16_and_keeps_weights_and_evaluation_fp32():
    model, sample, loss_fn, evaluate = _regression()
    seen = []

    def watched(m, batch):
        seen.append(m(batch[0]).dtype)
        return loss_fn(m, batch)

    spec = TrainSpec(steps=200, lr=0.05, eval_every=100, precision="bf16")
    result = train(model, spec, sample, watched, evaluate)
    assert set(seen) == {torch.bfloat16}
    assert model.weight.dtype == torch.float32
    assert 0 < result.final["mse"] < 0.05  # still learns, to bfloat16's ~3 digits
    fp32 = train(*_regression()[:1], TrainSpec(steps=200, lr=0.05, eval_every=100), *_regression()[1:])
    assert result.final["mse"] != fp32.final["mse"]


def test_with_ema_the_model_ends_as_the_moving_average_of_its_weights_and_is_evaluated_so():
    # the weights after each of the first 39 steps, as a 40-step run's sample_batch sees them
    model, sample, loss_fn, evaluate = _regression()
    seen = []

    def recording(step):  # called before each step: the weights after the one before
        if step:
            seen.append(model.weight.detach().clone())
        return sample(step)

    train(model, TrainSpec(steps=40, lr=0.05, eval_every=40), recording, loss_fn, evaluate)
    # the same 39 steps with a moving average: the first step's weights, then
    # kept += (new - kept) (1 - min(0.9, (1 + n) / (10 + n))) for the n-th after it
    expected = seen[0]
    for n, weights in enumerate(seen[1:], start=1):
        expected = expected + (weights - expected) * (1 - min(0.9, (1 + n) / (10 + n)))
    model, sample, loss_fn, evaluate = _regression()
    evaluated = []

    def watching(m):
        evaluated.append(m.weight.detach().clone())
        return evaluate(m)

    spec = TrainSpec(steps=39, lr=0.05, eval_every=39, ema=0.9)
    result = train(model, spec, sample, loss_fn, watching)
    torch.testing.assert_close(model.weight.detach(), expected, rtol=0, atol=1e-6)
    assert not torch.allclose(model.weight, seen[-1], atol=1e-4)  # an average, not the last weights
    assert len(evaluated) == 1 and torch.equal(evaluated[0], model.weight.detach())  # evaluated = kept
    with torch.no_grad():
        assert result.final["mse"] == evaluate(model)["mse"]
