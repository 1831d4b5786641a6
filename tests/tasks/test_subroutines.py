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
    assert task.input_dim == 5 * 12 and task.chance == 0.01 and AndTask(symbols=6).chance == 0.5
    for kind, op in (("add", 0), ("mul", 1), ("+/-add", 0), ("+/-mul", 1)):
        x, y = task.sample(kind, 500, gen(6), split="test")
        tokens = x.view(500, 5, 12).argmax(-1)
        a, b = tokens[:, 0] * 10 + tokens[:, 1], tokens[:, 2] * 10 + tokens[:, 3]
        assert (tokens[:, 4] == 10 + op).all()
        assert torch.equal(y, (a + b) % 100 if op == 0 else (a * b) % 100)
    x, _ = task.sample("task", 2000, gen(7))
    assert 0.45 < (x.view(2000, 5, 12)[:, 4].argmax(-1) == 10).float().mean() < 0.55


def test_token_form_gives_the_ids_the_one_hot_form_encodes():
    for make in (lambda form: AndTask(symbols=6, form=form), lambda form: AddMulTask(form=form)):
        one_hot, tokens = make("one_hot"), make("tokens")
        x, y = one_hot.sample("task", 300, gen(8))
        ids, y2 = tokens.sample("task", 300, gen(8))
        assert ids.dtype == torch.long and ids.shape == (300, tokens.length) == (300, tokens.input_dim)
        assert torch.equal(y, y2) and torch.equal(x.view(300, one_hot.length, -1).argmax(-1), ids)


def test_related_tasks_label_other_functions_of_the_same_inputs():
    task = AndTask(symbols=6, form="tokens")
    c, y = task.sample("related", 4000, gen(9))
    x, z = c[:, 0] == c[:, 2], c[:, 1] == c[:, 3]
    assert torch.equal(y, (x & z).long()) and 0.45 < y.float().mean() < 0.55
    assert 0.4 < (~x[y == 0]).float().mean() < 0.6  # its negatives break one pair, as the task's
    addmul = AddMulTask(form="tokens")
    t, y = addmul.sample("related", 2000, gen(10))
    a, b = t[:, 0] * 10 + t[:, 1], t[:, 2] * 10 + t[:, 3]
    assert torch.equal(y, torch.where(t[:, 4] == 10, (a - b) % 100, a * b // 100))


@pytest.mark.parametrize("form", ["one_hot", "tokens"])
def test_masked_inputs_hide_one_position_and_are_labelled_by_its_token(form):
    task = AndTask(symbols=6, form=form)
    x, hidden = task.masked(1000, gen(11))
    if form == "one_hot":  # the mask token is all zeros: id 6 here
        x = torch.where(x.view(1000, 4, 6).sum(-1) == 0, 6, x.view(1000, 4, 6).argmax(-1))
    ids = x
    is_mask = ids == task.vocab
    assert torch.equal(is_mask.sum(1), torch.ones(1000, dtype=torch.long))  # exactly one position
    assert all(0.2 < is_mask[:, p].float().mean() < 0.3 for p in range(4))
    pairs = ids.clone()  # the hidden token completes an input of the task's distribution
    pairs[is_mask] = hidden
    a, b = pairs[:, 0] == pairs[:, 1], pairs[:, 2] == pairs[:, 3]
    assert (a | b).all()  # the task's items break at most one subroutine


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
        (lambda: AndTask(symbols=6, form="image"), "form='image'"),
    ],
)
def test_bad_arguments_are_value_errors_naming_the_parameter(make, message):
    with pytest.raises(ValueError, match=message):
        make()
