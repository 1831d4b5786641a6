import math

import numpy as np
import pytest
import torch

from bindbench.tasks.hyperteacher import (
    ENCODINGS,
    PAIR_SUPPORTS,
    SUPPORTS,
    TASK_DISTRIBUTIONS,
    HyperTeacher,
    all_combinations,
    is_compositional,
    is_connected,
    num_tasks,
    split_combinations,
)

M, K, N = 16, 3, 696  # the paper's hyperteacher: 696 combinations of 1..3 of 16 modules
FRACTION_SUPPORTS = [s for s in SUPPORTS if s not in PAIR_SUPPORTS]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rows(sets, num_modules):
    """0/1 combination rows from lists of module indices."""
    out = torch.zeros(len(sets), num_modules)
    for r, members in enumerate(sets):
        out[r, list(members)] = 1.0
    return out


def as_set(combos: torch.Tensor) -> set:
    return {tuple(row) for row in combos.long().tolist()}


@pytest.fixture(scope="module")
def splits():
    """(train, ood) for every support at frac_ood 0.25 and 0.5, computed once."""
    return {
        (support, frac): split_combinations(M, K, support, frac, gen(0))
        for support in FRACTION_SUPPORTS
        for frac in (0.25, 0.5)
    }


# ----------------------------------------------------------------------------- combinations


def test_num_tasks_is_the_sum_of_binomials_up_to_num_hot():
    assert num_tasks(16, 3) == 696
    assert num_tasks(32, 7) == 4_514_872
    assert num_tasks(5, 1) == 5


def test_all_combinations_are_the_unique_rows_with_one_to_num_hot_active_modules():
    combos = all_combinations(M, K)
    assert combos.shape == (N, M)
    assert len(as_set(combos)) == N
    sizes = combos.sum(1)
    assert set(sizes.tolist()) == {1.0, 2.0, 3.0}
    assert bool((sizes[1:] >= sizes[:-1]).all())  # ordered by size first
    assert combos[:3].argmax(1).tolist() == [0, 1, 2]
    assert combos[M].nonzero().squeeze(1).tolist() == [0, 1]  # then itertools order


def test_compositional_and_connected_checks_on_hand_made_cases():
    two_islands = rows([{0, 1}, {2, 3}], 4)
    assert is_compositional(two_islands)
    assert not is_connected(two_islands)
    chain = rows([{0, 1}, {1, 2}, {2, 3}], 4)
    assert is_compositional(chain) and is_connected(chain)
    unused_module = rows([{0, 1}, {1, 2}], 4)
    assert not is_compositional(unused_module)
    assert not is_connected(unused_module)
    unused_first_module = rows([{1, 2}, {2, 3}], 4)
    assert not is_connected(unused_first_module)


# ----------------------------------------------------------------------------- supports


@pytest.mark.parametrize("frac", [0.25, 0.5])
@pytest.mark.parametrize("support", FRACTION_SUPPORTS)
def test_every_support_partitions_all_combinations(splits, support, frac):
    train, ood = splits[support, frac]
    assert len(train) > 0 and len(ood) > 0
    assert len(train) + len(ood) == N
    assert as_set(train) | as_set(ood) == as_set(all_combinations(M, K))
    assert not as_set(train) & as_set(ood)


@pytest.mark.parametrize("frac", [0.25, 0.5])
@pytest.mark.parametrize("support", ["random", "equal", "popular_modules", "unpopular_modules"])
def test_valid_supports_train_on_a_compositional_connected_set(splits, support, frac):
    train, _ = splits[support, frac]
    assert is_compositional(train)
    assert is_connected(train)


@pytest.mark.parametrize("frac", [0.25, 0.5])
def test_random_support_holds_out_int_n_frac_ood_combinations(splits, frac):
    train, ood = splits["random", frac]
    assert len(ood) == int(N * frac)
    assert len(train) == N - int(N * frac)


@pytest.mark.parametrize("frac", [0.25, 0.5])
def test_equal_support_balances_module_usage(splits, frac):
    train, ood = splits["equal", frac]
    usage = train.sum(0)
    assert usage.max() - usage.min() <= 1
    assert len(ood) == int(N * frac)


def test_non_compositional_support_never_trains_the_last_module(splits):
    train, ood = splits["non_compositional", 0.25]
    assert (train[:, M - 1] == 0).all()
    assert (ood[:, M - 1] == 1).all()
    assert not is_compositional(train)


@pytest.mark.parametrize("frac", [0.25, 0.5])
def test_pseudo_random_disconnected_support_is_not_connected(splits, frac):
    train, _ = splits["pseudo_random_disconnected", frac]
    assert not is_connected(train)


def test_connected_and_disconnected_supports_share_their_held_out_pairs():
    """The reference's K = 2 pair: a ring of neighbours vs two halves, same OOD set."""
    (ring, ood_ring), (halves, ood_halves) = (split_combinations(8, 2, s, 0.0, gen(0)) for s in PAIR_SUPPORTS)
    singles = {tuple(int(i == m) for i in range(8)) for m in range(8)}
    pairs = lambda sets: as_set(rows(sets, 8))  # noqa: E731
    ring_pairs = [{i, (i + d) % 8} for i in range(8) for d in (1, 2)]
    half_pairs = [{a, b} for h in (range(4), range(4, 8)) for a in h for b in h if a < b]
    assert as_set(ring) == singles | pairs(ring_pairs) and len(ring) == 3 * 8
    assert as_set(halves) == singles | pairs(half_pairs) and len(halves) == 8 + 2 * 6
    assert as_set(ood_ring) == as_set(ood_halves)
    assert as_set(ood_ring) == as_set(all_combinations(8, 2)) - as_set(ring) - as_set(halves)
    assert is_connected(ring) and not is_connected(halves)


@pytest.mark.parametrize("num_modules, num_hot, why", [(8, 3, "needs num_hot=2"), (7, 2, "even num_modules")])
def test_pair_supports_reject_other_shapes(num_modules, num_hot, why):
    with pytest.raises(ValueError, match=why):
        split_combinations(num_modules, num_hot, "connected", 0.0, gen(0))


def test_popular_modules_support_trains_every_combination_of_the_first_module(splits):
    train, _ = splits["popular_modules", 0.25]
    with_first = all_combinations(M, K)[:, 0] == 1
    assert as_set(all_combinations(M, K)[with_first]) <= as_set(train)
    assert len(train) == int(N * 0.75)


def test_unpopular_support_trains_each_later_peripheral_module_once(splits):
    train, _ = splits["unpopular_modules", 0.25]
    target = int(N * 0.75)
    full = [sum(math.comb(n, k) for k in range(1, K + 1)) for n in range(M + 1)]
    n_core = max(n for n in range(2, M) if full[n] + (M - n) <= target)
    usage = train.sum(0)
    assert (usage[n_core + 1 :] == 1).all()
    assert usage[n_core] >= 1
    within_core = all_combinations(M, K)[:, n_core:].sum(1) == 0
    assert as_set(all_combinations(M, K)[within_core]) <= as_set(train)
    peripheral_per_row = train[:, n_core:].sum(1)
    assert (peripheral_per_row <= 1).all()  # no training task pairs two peripheral modules


def test_split_is_deterministic_for_a_generator_seed():
    a, _ = split_combinations(M, K, "random", 0.25, gen(3))
    b, _ = split_combinations(M, K, "random", 0.25, gen(3))
    c, _ = split_combinations(M, K, "random", 0.25, gen(4))
    assert torch.equal(a, b)
    assert as_set(a) != as_set(c)


def test_impossible_split_raises_a_one_line_value_error():
    with pytest.raises(ValueError) as info:
        split_combinations(4, 1, "random", 0.5, gen(0))
    message = str(info.value)
    assert "\n" not in message
    for part in ("'random'", "num_modules=4", "num_hot=1", "frac_ood=0.5", "connected"):
        assert part in message


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(frac_ood=1.2), "frac_ood=1.2 must be in [0, 1)"),
        (dict(frac_ood=0.001), "holds out no combination"),
        (dict(support="everything"), "support='everything'"),
        (dict(encoding="bits"), "encoding='bits'"),
        (dict(task_distribution="gaussian"), "task_distribution='gaussian'"),
        (dict(num_modules=5, support="pseudo_random_disconnected"), "must be even"),
        (dict(num_hot=17), "num_hot=17"),
        (dict(num_modules=8, num_hot=1, support="unpopular_modules"), "peripheral module"),
    ],
)
def test_bad_arguments_are_rejected_with_a_message_naming_them(kwargs, words):
    with pytest.raises(ValueError) as info:
        HyperTeacher(**kwargs)
    assert words in str(info.value)


# ----------------------------------------------------------------------------- the teacher


@pytest.fixture(scope="module")
def teacher():
    return HyperTeacher(seed=0)


def test_module_parameters_follow_the_papers_initialisation(teacher):
    std = math.sqrt(math.sqrt(3) / 16) / 0.87962566103423978
    assert teacher.module_weights.shape == (M, 16, 16)
    assert teacher.module_weights.abs().max() <= 2 * std
    assert abs(teacher.module_weights.std().item() - math.sqrt(math.sqrt(3) / 16)) < 0.02
    assert teacher.module_biases.min() >= 0 and teacher.module_biases.max() <= 0.5
    assert teacher.readout.shape == (16, 16)


def test_teacher_matches_a_hand_computation_for_one_task(teacher):
    z = torch.zeros(1, M)
    z[0, [2, 7, 11]] = torch.tensor([0.5, 0.8, 1.0])
    x = 2 * torch.rand(1, 5, 16, generator=gen(1)) - 1
    theta = teacher.module_weights.double().numpy()
    bias = teacher.module_biases.double().numpy()
    weights, b = np.zeros((16, 16)), np.zeros(16)
    for m in range(M):
        weights += z[0, m].item() / math.sqrt(K) * theta[m]
        b += z[0, m].item() / math.sqrt(K) * bias[m]
    hidden = np.maximum(x[0].double().numpy() @ weights + b, 0)
    expected = hidden @ teacher.readout.double().numpy()
    np.testing.assert_allclose(teacher.teacher(z, x)[0].numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("distribution", TASK_DISTRIBUTIONS)
def test_task_weights_follow_the_task_distribution(distribution):
    batch = HyperTeacher(task_distribution=distribution).sample(2048, "train", gen(1))
    active = batch.z != 0
    assert active.sum(1).min() >= 1 and active.sum(1).max() <= K
    values = batch.z[active]
    if distribution == "discrete":
        grid = torch.tensor([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
        assert ((values[:, None] - grid).abs().min(1).values < 1e-6).all()
        assert len(torch.unique(values)) == 6
    elif distribution == "khot":
        assert (values == 1).all()
    else:
        assert values.min() >= 0.5 and values.max() <= 1.0
        assert len(torch.unique(values)) > 100


@pytest.mark.parametrize("split", ["train", "ood"])
def test_samples_only_use_their_splits_combinations(teacher, split):
    batch = teacher.sample(1024, split, gen(2))
    used = as_set((batch.z != 0).float())
    own = teacher.train_combinations if split == "train" else teacher.ood_combinations
    other = teacher.ood_combinations if split == "train" else teacher.train_combinations
    assert used <= as_set(own)
    assert not used & as_set(other)


def test_inputs_are_uniform_in_the_cube_and_targets_come_from_the_teacher(teacher):
    batch = teacher.sample(64, "train", gen(2))
    assert batch.x.shape == (64, 16, 16) and batch.y.shape == (64, 16, 16)
    assert batch.x.min() >= -1 and batch.x.max() <= 1
    torch.testing.assert_close(batch.y, teacher.teacher(batch.z, batch.x))


def test_same_seed_and_generator_state_give_identical_batches():
    first = HyperTeacher(seed=5, encoding="fewshot").sample(32, "ood", gen(9))
    second = HyperTeacher(seed=5, encoding="fewshot").sample(32, "ood", gen(9))
    for name in ("encoding", "x", "y", "z"):
        assert torch.equal(getattr(first, name), getattr(second, name))


def test_different_generator_seeds_give_different_batches(teacher):
    first = teacher.sample(32, "train", gen(9))
    second = teacher.sample(32, "train", gen(10))
    assert not torch.equal(first.x, second.x)
    assert not torch.equal(first.z, second.z)


def test_different_teacher_seeds_give_different_teachers():
    a, b = HyperTeacher(seed=0), HyperTeacher(seed=1)
    assert not torch.equal(a.module_weights, b.module_weights)
    assert as_set(a.train_combinations) != as_set(b.train_combinations)


# ----------------------------------------------------------------------------- encodings


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_encoding_has_the_documented_shape(encoding):
    expected = {"fewshot": 1600, "tokens": 2 * M}.get(encoding, M)
    teacher = HyperTeacher(encoding=encoding)
    batch = teacher.sample(8, "train", gen(0))
    assert teacher.encoding_dim == expected
    assert batch.encoding.shape == (8, expected)
    assert batch.encoding.dtype == (torch.long if encoding == "tokens" else torch.float32)


def test_identity_encoding_is_z():
    batch = HyperTeacher(encoding="identity").sample(8, "train", gen(0))
    assert torch.equal(batch.encoding, batch.z)


def test_orthogonal_encoding_preserves_norms_and_is_not_the_identity():
    teacher = HyperTeacher(encoding="orthogonal")
    batch = teacher.sample(256, "train", gen(0))
    torch.testing.assert_close(batch.encoding.norm(dim=1), batch.z.norm(dim=1))
    assert not torch.allclose(batch.encoding, batch.z)
    eye = teacher.orthogonal @ teacher.orthogonal.T
    torch.testing.assert_close(eye, torch.eye(M), atol=1e-5, rtol=0)


def test_tokens_interleave_module_index_and_weight_bucket():
    teacher = HyperTeacher(encoding="tokens")
    z = torch.zeros(1, M)
    z[0, 0], z[0, 3] = 0.5, 1.0
    tokens = teacher.encode(z, gen(0))[0].tolist()
    assert tokens[0::2] == list(range(1, M + 1))
    assert tokens[1] == 5 + M + 1
    assert tokens[7] == 10 + M + 1
    assert tokens[3] == M + 1  # inactive module 1 has weight bucket 0


def test_interval_shuffle_keeps_one_and_permutes_the_interval_starts():
    teacher = HyperTeacher(encoding="interval_shuffle")
    starts = torch.arange(10, dtype=torch.float32) / 10
    z = torch.cat([starts, torch.tensor([1.0, 0.55, 0.95, 0.05, 0.15, 0.25])])[None]
    out = teacher.encode(z, gen(0))[0]
    assert out[10] == 1.0
    mapped = torch.round(out[:10] * 10).long()
    assert sorted(mapped.tolist()) == list(range(10))
    assert not torch.equal(mapped, torch.arange(10))  # a fixed seed gives a real shuffle
    # The position inside an interval is kept.
    frac = out[11:] - torch.floor(out[11:] * 10 + 1e-4) / 10
    torch.testing.assert_close(frac, torch.full((5,), 0.05), atol=1e-5, rtol=0)


def test_invertible_nn_encoding_is_injective_and_fixed_by_the_seed():
    teacher = HyperTeacher(encoding="invertible_nn", task_distribution="continuous")
    z = teacher.sample(512, "train", gen(0)).z
    z = torch.unique(z, dim=0)
    codes = teacher.encode(z, gen(0))
    distances = torch.cdist(codes.double(), codes.double())
    distances.fill_diagonal_(float("inf"))
    assert distances.min() > 1e-4
    assert not torch.allclose(codes, z)
    again = HyperTeacher(encoding="invertible_nn", task_distribution="continuous")
    assert torch.equal(again.encode(z, gen(1)), codes)


def test_fewshot_encoding_holds_fresh_pairs_from_the_same_task():
    teacher = HyperTeacher(encoding="fewshot")
    batch = teacher.sample(4, "train", gen(0))
    x = batch.encoding[:, : 50 * 16].reshape(4, 50, 16)
    y = batch.encoding[:, 50 * 16 :].reshape(4, 50, 16)
    torch.testing.assert_close(y, teacher.teacher(batch.z, x))
    assert not torch.equal(x[:, :16], batch.x)


def test_invertible_nn_encoding_is_undone_by_running_its_coupling_layers_backwards():
    teacher = HyperTeacher(encoding="invertible_nn", task_distribution="continuous")
    z = teacher.sample(64, "train", gen(0)).z
    code = teacher.encode(z, gen(0))
    half = M // 2
    for index in reversed(range(len(teacher.coupling_layers))):
        w1, w2, w3 = teacher.coupling_layers[index]
        if index % 2 == 1:
            code = code.flip(-1)
        kept, moved = code[:, :half], code[:, half:]
        log_scale, shift = (torch.sigmoid(torch.sigmoid(kept @ w1) @ w2) @ w3).chunk(2, dim=-1)
        code = torch.cat([kept, (moved - shift) / (torch.tanh(log_scale) * 0.5 + 1)], dim=-1)
        if index % 2 == 1:
            code = code.flip(-1)
    torch.testing.assert_close(code, z, atol=1e-5, rtol=0)
