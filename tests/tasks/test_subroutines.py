import pytest
import torch

from bindbench.tasks.subroutines import SPLITS, AddMulTask, AndTask


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def task():
    return AndTask(symbols=6)


def codes_of(task: AndTask, x: torch.Tensor) -> torch.Tensor:
    return x.view(len(x), 4, task.symbols).argmax(-1)  # (n, 4): a1 a2 b1 b2


def subroutines_of(task, x):
    c = codes_of(task, x)
    return c[:, 0] == c[:, 1], c[:, 2] == c[:, 3]


def test_inputs_are_four_one_hot_symbols(task):
    x, _ = task.sample("task", 500, gen())
    assert x.shape == (500, 24) and torch.equal(x.view(500, 4, 6).sum(-1), torch.ones(500, 4))


def test_task_labels_are_a_and_b_and_its_negatives_break_exactly_one_subroutine(task):
    x, y = task.sample("task", 4000, gen(1))
    a, b = subroutines_of(task, x)
    assert torch.equal(y, (a & b).long())
    assert 0.45 < y.float().mean() < 0.55
    negatives = y == 0
    assert torch.equal((~a[negatives]) ^ (~b[negatives]), torch.ones(int(negatives.sum()), dtype=torch.bool))
    assert 0.4 < (~a[negatives]).float().mean() < 0.6


def test_a_subroutine_set_is_labelled_by_it_alone_while_the_other_varies(task):
    for name, own, other in (("A", 0, 1), ("B", 1, 0)):
        x, y = task.sample(name, 4000, gen(2))
        props = subroutines_of(task, x)
        assert torch.equal(y, props[own].long())
        for label in (0, 1):  # the other subroutine is independent of the label
            assert 0.4 < props[other][y == label].float().mean() < 0.6


def test_in_a_vary_set_only_that_subroutine_changes(task):
    for name, own, other in (("+/-A", 0, 1), ("+/-B", 1, 0)):
        x, y = task.sample(name, 2000, gen(3), split="test")
        props = subroutines_of(task, x)
        assert props[other].all() and torch.equal(y, props[own].long())
        assert 0.45 < y.float().mean() < 0.55


def test_splits_are_disjoint_cover_every_input_and_are_seeded():
    task = AndTask(symbols=4)
    drawn = {}
    for split in SPLITS:
        x = torch.cat([task.sample(kind, 3000, gen(4), split)[0] for kind in task.kinds])
        drawn[split] = {tuple(c) for c in codes_of(task, x).tolist()}
    assert not drawn["train"] & drawn["test"] and not drawn["train"] & drawn["val"]
    assert not drawn["val"] & drawn["test"]
    assert len(drawn["train"] | drawn["val"] | drawn["test"]) == 4**4
    a, b = AndTask(symbols=4, seed=1), AndTask(symbols=4, seed=1)
    assert torch.equal(a.sample("task", 64, gen(5))[0], b.sample("task", 64, gen(5))[0])
    assert not torch.equal(a.sample("task", 64, gen(5))[0], task.sample("task", 64, gen(5))[0])


def test_add_mul_labels_by_hand_and_sets_hold_one_operation():
    task = AddMulTask()
    assert task.input_dim == 42 and task.chance == 0.01 and AndTask(symbols=6).chance == 0.5
    for kind, op in (("add", 0), ("mul", 1), ("+/-add", 0), ("+/-mul", 1)):
        x, y = task.sample(kind, 500, gen(6), split="test")
        digits = x[:, :40].view(500, 4, 10).argmax(-1)
        a, b = digits[:, 0] * 10 + digits[:, 1], digits[:, 2] * 10 + digits[:, 3]
        assert (x[:, 40 + op] == 1).all()
        assert torch.equal(y, (a + b) % 100 if op == 0 else (a * b) % 100)
    x, _ = task.sample("task", 2000, gen(7))
    assert 0.45 < x[:, 40].mean() < 0.55


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: AndTask(symbols=1), "symbols=1"),
        (lambda: AndTask(val=0.0), "val=0.0"),
        (lambda: AndTask(val=0.5, test=0.5), "must leave items"),
        (lambda: AndTask(symbols=2, val=0.1, test=0.1), "no item of kind"),
        (lambda: AndTask(symbols=6).sample("C", 4, gen()), "kind='C'"),
        (lambda: AndTask(symbols=6).sample("A", 4, gen(), split="dev"), "split='dev'"),
        (lambda: AndTask(symbols=6).sample("A", 0, gen()), "n=0"),
    ],
)
def test_bad_arguments_are_value_errors_naming_the_parameter(make, message):
    with pytest.raises(ValueError, match=message):
        make()
