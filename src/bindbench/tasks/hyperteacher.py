"""The hyperteacher: a compositional regression task family (Schug et al. 2024).

Each of M modules owns a first-layer weight Θ_m (I, H) and bias b_m (H). A task is a sparse
weighting z of 1..K modules; its teacher is y = ReLU(x @ Σ_m ẑ_m Θ_m + Σ_m ẑ_m b_m) @ R with
ẑ = z / √K and one readout R shared by all tasks. The combinations of modules are split into
training and held-out (OOD) sets by a "support"; the student sees an encoding of z and x.

Axis letters in einsums: b task, s sample, m module, i input, h hidden, o output.
"""

import itertools
import math
from dataclasses import dataclass

import torch

SUPPORTS = (
    "random",
    "equal",
    "non_compositional",
    "pseudo_random_disconnected",
    "popular_modules",
    "unpopular_modules",
    "connected",
    "disconnected",
)
# K = 2 only, frac_ood does not apply: both train on their own set of 1- and 2-module
# combinations and share one held-out set, so they differ only in how training is connected
PAIR_SUPPORTS = ("connected", "disconnected")
ENCODINGS = ("identity", "orthogonal", "invertible_nn", "interval_shuffle", "fewshot", "tokens")
TASK_DISTRIBUTIONS = ("discrete", "khot", "continuous")
SPLITS = ("train", "ood")

MAX_SPLIT_TRIES = 1000  # random orders tried by `random` and `popular_modules`
MAX_EQUAL_ATTEMPTS = 50  # fresh starting subsets tried by the `equal` local search
EQUAL_CANDIDATES = 512  # rows per side scored in one swap step of the `equal` search
NUM_FEWSHOT = 50  # (x, y) pairs in a `fewshot` encoding; 50 * (16 + 16) = 1600 at defaults
NUM_INTERVALS = 10  # `interval_shuffle` permutes the tenths of [0, 1]
NUM_COUPLING_LAYERS = 3  # `invertible_nn`
TRUNC_NORMAL_STD = 0.87962566103423978  # std of a unit normal truncated to [-2, 2]


# ----------------------------------------------------------------------------- combinations


def _check_sizes(num_modules: int, num_hot: int) -> None:
    if not isinstance(num_modules, int) or num_modules < 1:
        raise ValueError(f"num_modules={num_modules} must be an integer >= 1")
    if not isinstance(num_hot, int) or not 1 <= num_hot <= num_modules:
        raise ValueError(f"num_hot={num_hot} must be an integer in [1, num_modules={num_modules}]")


def _count_up_to(n: int, k: int) -> int:
    """Number of non-empty subsets of at most k out of n items."""
    return sum(math.comb(n, j) for j in range(1, k + 1))


def num_tasks(num_modules: int, num_hot: int) -> int:
    """Number of module combinations with 1..num_hot active modules: Σ_k C(M, k)."""
    _check_sizes(num_modules, num_hot)
    return _count_up_to(num_modules, num_hot)


def all_combinations(num_modules: int, num_hot: int) -> torch.Tensor:
    """All module combinations as 0/1 rows (N, M), ordered by size, then lexicographically."""
    _check_sizes(num_modules, num_hot)
    blocks = []
    for k in range(1, num_hot + 1):
        members = torch.tensor(list(itertools.combinations(range(num_modules), k)))  # (C, k)
        rows = torch.zeros(len(members), num_modules)
        blocks.append(rows.scatter_(1, members, 1.0))
    return torch.cat(blocks)


def is_compositional(combos: torch.Tensor) -> bool:
    """True when every module appears in at least one combination."""
    return bool((combos.sum(0) > 0).all())


def is_connected(combos: torch.Tensor) -> bool:
    """True when the module co-occurrence graph of the combinations spans all M modules."""
    used = (combos > 0).float()
    adjacency = (used.T @ used) > 0  # (m, m); the diagonal marks modules that are used at all
    reached = adjacency[0].clone()
    while True:
        grown = reached | adjacency[reached].any(0)
        if torch.equal(grown, reached):
            return bool(reached.all())
        reached = grown


# ----------------------------------------------------------------------------- supports


def _split_error(support, num_modules, num_hot, frac_ood, why) -> ValueError:
    return ValueError(
        f"support {support!r} with num_modules={num_modules}, num_hot={num_hot}, frac_ood={frac_ood}: {why}"
    )


def _valid_training_set(train: torch.Tensor) -> bool:
    return is_compositional(train) and is_connected(train)


def _random_mask(combos, num_train, generator, fail):
    for _ in range(MAX_SPLIT_TRIES):
        perm = torch.randperm(len(combos), generator=generator)
        train = torch.zeros(len(combos), dtype=torch.bool)
        train[perm[:num_train]] = True
        if _valid_training_set(combos[train]):
            return train
    raise fail(f"no split is compositional and connected ({MAX_SPLIT_TRIES} tries)")


def _spread(usage: torch.Tensor) -> torch.Tensor:
    """Squared distance of module usage counts (..., m) from their own mean."""
    return ((usage - usage.mean(-1, keepdim=True)) ** 2).sum(-1)


def _equal_mask(combos, num_train, generator, fail):
    # Greedy local search: each step makes the swap (train row out, held-out row in) that most
    # reduces the spread of module usage; a swap changes usage by out_row - in_row.
    n_all = len(combos)
    for _ in range(MAX_EQUAL_ATTEMPTS):
        perm = torch.randperm(n_all, generator=generator)
        train_idx, held_idx = perm[:num_train].clone(), perm[num_train:].clone()
        usage = combos[train_idx].sum(0)
        subsampled = num_train > EQUAL_CANDIDATES or len(held_idx) > EQUAL_CANDIDATES
        stale = 0
        for _ in range(4 * n_all):
            if usage.max() - usage.min() <= 1 or stale > 10:
                break
            pos_in = torch.randperm(num_train, generator=generator)[:EQUAL_CANDIDATES]
            pos_out = torch.randperm(len(held_idx), generator=generator)[:EQUAL_CANDIDATES]
            change = combos[held_idx[pos_out]][None] - combos[train_idx[pos_in]][:, None]
            new_usage = usage + change  # (in, out, m)
            score = _spread(new_usage)
            best = int(score.argmin())
            i, o = divmod(best, len(pos_out))
            if score[i, o] >= _spread(usage) - 1e-6:
                if not subsampled:
                    break  # a true local minimum: restart from another subset
                stale += 1
                continue
            stale = 0
            a, b = pos_in[i], pos_out[o]
            train_idx[a], held_idx[b] = held_idx[b].clone(), train_idx[a].clone()
            usage = new_usage[i, o]
        train = torch.zeros(n_all, dtype=torch.bool)
        train[train_idx] = True
        if usage.max() - usage.min() <= 1 and _valid_training_set(combos[train]):
            return train
    raise fail(
        "local search found no balanced (max - min usage <= 1), compositional and connected "
        f"split ({MAX_EQUAL_ATTEMPTS} starts)"
    )


def _pseudo_random_disconnected_mask(combos, num_hot, frac_ood, generator, fail):
    n_all, num_modules = combos.shape
    if num_modules % 2 != 0:
        raise fail("num_modules must be even")
    # Cutting off the first s modules forces every combination that mixes both groups out;
    # pick the s whose forced fraction comes closest to frac_ood from below.
    first_size, best_forced = 1, 0.0
    for s in range(1, num_modules // 2 + 1):
        within = _count_up_to(s, num_hot) + _count_up_to(num_modules - s, num_hot)
        forced = (n_all - within) / n_all
        if best_forced < forced <= frac_ood:
            first_size, best_forced = s, forced
    in_first = combos[:, first_size:].sum(1) == 0
    in_second = combos[:, :first_size].sum(1) == 0
    train = in_first | in_second
    forced = float((~train).sum()) / n_all
    if forced < frac_ood:
        extra = int((frac_ood - forced) * n_all)
        candidates = train.nonzero().squeeze(1)
        if extra >= len(candidates):
            raise fail(f"holding out {extra} more combinations would leave no training set")
        pick = candidates[torch.randperm(len(candidates), generator=generator)[:extra]]
        train[pick] = False
    return train


def _popular_modules_mask(combos, frac_ood, generator, fail):
    n_all, num_modules = combos.shape
    target = int(n_all * (1 - frac_ood))
    if target < 1:
        raise fail("no training combination is left")
    # A combination touches the first n modules iff its lowest module index is below n.
    lowest = combos.argmax(1)  # argmax returns the first 1 of a 0/1 row
    counts = torch.stack([(lowest < n).sum() for n in range(num_modules + 1)])
    n_popular = int((counts <= target).nonzero().max())
    base = lowest < n_popular
    need = target - int(base.sum())
    if need == 0:
        return base
    candidates = (lowest == n_popular).nonzero().squeeze(1)  # contain module n, not in base
    for _ in range(MAX_SPLIT_TRIES):
        train = base.clone()
        train[candidates[torch.randperm(len(candidates), generator=generator)[:need]]] = True
        if _valid_training_set(combos[train]):
            return train
    return base


def _unpopular_modules_mask(combos, num_hot, frac_ood, fail):
    n_all, num_modules = combos.shape
    target = int(n_all * (1 - frac_ood))
    n_core = 2
    for n in range(num_modules - 1, 1, -1):
        if _count_up_to(n, num_hot) + (num_modules - n) <= target:
            n_core = n
            break
    peripheral_count = combos[:, n_core:].sum(1)
    has_core = combos[:, :n_core].sum(1) > 0
    train = peripheral_count == 0

    def joins_core(p):  # combinations of peripheral p with core modules only
        return (combos[:, p] > 0) & (peripheral_count == 1) & has_core & ~train

    for p in range(n_core, num_modules):
        candidates = joins_core(p).nonzero().squeeze(1)
        if len(candidates) == 0:
            raise fail(f"peripheral module {p} has no combination with a core module")
        train[candidates[0]] = True
    need = target - int(train.sum())
    if need > 0 and n_core < num_modules:
        train[joins_core(n_core).nonzero().squeeze(1)[:need]] = True
    return train


def _pair_masks(combos, support, fail) -> tuple[torch.Tensor, torch.Tensor]:
    """`connected`: every single module, and pairs of neighbours and next-but-one
    neighbours on a ring of the M modules (3M combinations, one connected graph).
    `disconnected`: single modules and every pair within the first or within the second
    half of the modules (two islands). Held out for both: pairs in neither set."""
    num_modules = combos.shape[1]
    if int(combos.sum(1).max()) != 2:
        raise fail("needs num_hot=2")
    if num_modules <= 4 or num_modules % 2:
        raise fail("needs an even num_modules > 4")
    first = combos.argmax(1)  # the lower active module (the only one for singles)
    last = num_modules - 1 - combos.flip(1).argmax(1)
    gap = last - first  # 0 for singles
    ring = (gap <= 2) | (gap >= num_modules - 2)
    same_half = (first < num_modules // 2) == (last < num_modules // 2)
    train = ring if support == "connected" else same_half
    return train, ~(ring | same_half)


def _split_masks(combos, num_hot, support, frac_ood, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks (N,) of the training and of the held-out (OOD) combinations."""
    n_all, num_modules = combos.shape

    def fail(why):
        return _split_error(support, num_modules, num_hot, frac_ood, why)

    if support in PAIR_SUPPORTS:
        return _pair_masks(combos, support, fail)
    num_ood = int(n_all * frac_ood)
    if support != "non_compositional" and num_ood == 0:
        raise fail(f"holds out no combination (int({n_all} * frac_ood) == 0)")
    if support == "random":
        train = _random_mask(combos, n_all - num_ood, generator, fail)
    elif support == "equal":
        train = _equal_mask(combos, n_all - num_ood, generator, fail)
    elif support == "non_compositional":
        train = combos[:, -1] == 0
    elif support == "pseudo_random_disconnected":
        train = _pseudo_random_disconnected_mask(combos, num_hot, frac_ood, generator, fail)
    elif support == "popular_modules":
        train = _popular_modules_mask(combos, frac_ood, generator, fail)
    else:
        train = _unpopular_modules_mask(combos, num_hot, frac_ood, fail)
    if not train.any():
        raise fail("no training combination is left")
    if train.all():
        raise fail("no combination is held out")
    return train, ~train


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} must be one of {allowed}")


def _check_frac_ood(frac_ood) -> None:
    if not isinstance(frac_ood, (int, float)) or not 0 <= frac_ood < 1:
        raise ValueError(f"frac_ood={frac_ood} must be in [0, 1)")


def split_combinations(
    num_modules: int, num_hot: int, support: str, frac_ood: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, ood) combinations: disjoint 0/1 rows whose union is all_combinations (but for
    the PAIR_SUPPORTS, whose union leaves out the other pair support's training set)."""
    _check_sizes(num_modules, num_hot)
    _check_choice("support", support, SUPPORTS)
    _check_frac_ood(frac_ood)
    combos = all_combinations(num_modules, num_hot)
    train, ood = _split_masks(combos, num_hot, support, frac_ood, generator)
    return combos[train], combos[ood]


# ----------------------------------------------------------------------------- encoders


def _random_orthogonal(dim: int, generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
    return q * torch.sign(torch.diagonal(r))  # sign fix makes Q Haar-distributed


def _coupling_weights(dim: int, generator: torch.Generator) -> list[list[torch.Tensor]]:
    # Biases of the coupling networks are zero, so only weights are kept.
    half, rest, hidden = dim // 2, dim - dim // 2, 2 * dim
    shapes = [(half, hidden), (hidden, hidden), (hidden, 2 * rest)]
    return [
        [0.1 * torch.randn(shape, generator=generator) for shape in shapes]
        for _ in range(NUM_COUPLING_LAYERS)
    ]


def _coupling_forward(z: torch.Tensor, layers: list[list[torch.Tensor]]) -> torch.Tensor:
    half = z.shape[-1] // 2
    for index, (w1, w2, w3) in enumerate(layers):
        if index % 2 == 1:  # odd layers transform the other half
            z = z.flip(-1)
        x1, x2 = z[..., :half], z[..., half:]
        h = torch.sigmoid(torch.sigmoid(x1 @ w1) @ w2) @ w3
        log_scale, shift = h.chunk(2, dim=-1)
        scale = torch.tanh(log_scale) * 0.5 + 1.0  # in [0.5, 1.5], so the layer is invertible
        z = torch.cat([x1, x2 * scale + shift], dim=-1)
        if index % 2 == 1:
            z = z.flip(-1)
    return z


def _interval_shuffle(v: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    index = torch.floor(v * NUM_INTERVALS).clamp(max=NUM_INTERVALS - 1).long()
    frac = v - index / NUM_INTERVALS
    out = permutation[index] / NUM_INTERVALS + frac
    return torch.where(v == 1.0, v, out)


def _tokens(z: torch.Tensor) -> torch.Tensor:
    """(B, 2M) long: (i + 1, floor(10 z_i) + M + 1) for every module i."""
    b, m = z.shape
    position = torch.arange(1, m + 1, device=z.device).expand(b, m)
    value = torch.floor(10 * z).long() + m + 1
    return torch.stack([position, value], dim=-1).reshape(b, 2 * m)


# ----------------------------------------------------------------------------- task family


def task_weights(mask: torch.Tensor, distribution: str, generator: torch.Generator) -> torch.Tensor:
    """Weights (B, M) of the active modules in the 0/1 rows `mask`, drawn from `generator`:
    uniform on {0.5, 0.6, ..., 1.0} (discrete), 1 (khot), or a point of the simplex shifted
    into [0.5, 1] (continuous); 0 for inactive modules."""
    if distribution == "khot":
        return mask
    if distribution == "discrete":
        steps = torch.randint(0, 6, mask.shape, generator=generator, device=mask.device)
        return (5 + steps) / 10 * mask
    w = torch.empty(mask.shape, device=mask.device).exponential_(1.0, generator=generator)
    w = w * mask
    w = w / (w.sum(1, keepdim=True) + 1)  # a point inside the simplex
    return (0.5 * w + 0.5) * mask


@dataclass
class TaskBatch:
    encoding: torch.Tensor  # (B, E) float, or (B, 2M) long for 'tokens'
    x: torch.Tensor  # (B, S, I)
    y: torch.Tensor  # (B, S, O)
    z: torch.Tensor  # (B, M) module weights, 0 for inactive modules


class HyperTeacher:
    """A fixed hyperteacher with its train/OOD split; `sample` draws batches of tasks."""

    def __init__(
        self,
        num_modules: int = 16,
        num_hot: int = 3,
        input_dim: int = 16,
        hidden_dim: int = 16,
        output_dim: int = 16,
        task_distribution: str = "discrete",
        support: str = "random",
        frac_ood: float = 0.25,
        encoding: str = "identity",
        num_samples: int = 16,  # (x, y) pairs per task
        seed: int = 0,
        device: str | torch.device = "cpu",
    ):
        _check_sizes(num_modules, num_hot)
        for name, value in [
            ("input_dim", input_dim),
            ("hidden_dim", hidden_dim),
            ("output_dim", output_dim),
            ("num_samples", num_samples),
        ]:
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value} must be an integer >= 1")
        _check_choice("task_distribution", task_distribution, TASK_DISTRIBUTIONS)
        _check_choice("support", support, SUPPORTS)
        _check_choice("encoding", encoding, ENCODINGS)
        _check_frac_ood(frac_ood)
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed} must be an integer >= 0")

        self.num_modules, self.num_hot = num_modules, num_hot
        self.input_dim, self.hidden_dim, self.output_dim = input_dim, hidden_dim, output_dim
        self.task_distribution, self.support, self.frac_ood = task_distribution, support, frac_ood
        self.encoding, self.num_samples, self.seed = encoding, num_samples, seed
        self.device = torch.device(device)

        def stream(k: int) -> torch.Generator:  # one CPU stream per fixed ingredient
            return torch.Generator().manual_seed(seed * 1000 + k)

        combos = all_combinations(num_modules, num_hot)
        train, ood = _split_masks(combos, num_hot, support, frac_ood, stream(0))
        self.combinations = combos.to(self.device)
        self.train_combinations = combos[train].to(self.device)
        self.ood_combinations = combos[ood].to(self.device)

        # variance_scaling(scale=√3, fan_in, truncated normal in [-2σ, 2σ])
        def variance_scaled(shape, fan_in, generator):
            std = math.sqrt(math.sqrt(3) / fan_in) / TRUNC_NORMAL_STD
            weights = torch.empty(shape)
            return torch.nn.init.trunc_normal_(weights, 0.0, std, -2 * std, 2 * std, generator)

        m, i, h, o = num_modules, input_dim, hidden_dim, output_dim
        self.module_weights = variance_scaled((m, i, h), i, stream(1)).to(self.device)
        self.module_biases = (0.5 * torch.rand(m, h, generator=stream(2))).to(self.device)
        self.readout = variance_scaled((h, o), h, stream(3)).to(self.device)

        self.orthogonal = _random_orthogonal(m, stream(4)).to(self.device)
        self.coupling_layers = [
            [w.to(self.device) for w in layer] for layer in _coupling_weights(m, stream(5))
        ]
        self.interval_permutation = torch.randperm(NUM_INTERVALS, generator=stream(6)).to(self.device)

        if encoding == "tokens":
            self.encoding_dim = 2 * m
        elif encoding == "fewshot":
            self.encoding_dim = NUM_FEWSHOT * (i + o)
        else:
            self.encoding_dim = m
        self.vocab_size = m + NUM_INTERVALS + 2  # tokens: 0 unused, 1..M, M+1..M+11

    def teacher(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Targets y (B, S, O) of the tasks z (B, M) at inputs x (B, S, I)."""
        z_hat = z / math.sqrt(self.num_hot)
        weights = torch.einsum("bm,mih->bih", z_hat, self.module_weights)
        bias = z_hat @ self.module_biases  # (b, h)
        hidden = torch.relu(torch.einsum("bsi,bih->bsh", x, weights) + bias[:, None])
        return hidden @ self.readout

    def encode(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """What the student sees of the tasks z (B, M): (B, encoding_dim)."""
        if self.encoding == "identity":
            return z.clone()  # callers may edit z in place
        if self.encoding == "orthogonal":
            return z @ self.orthogonal.T  # Q z for every row
        if self.encoding == "invertible_nn":
            return _coupling_forward(z, self.coupling_layers)
        if self.encoding == "interval_shuffle":
            return _interval_shuffle(z, self.interval_permutation)
        if self.encoding == "tokens":
            return _tokens(z)
        x = self._inputs(len(z), NUM_FEWSHOT, generator)  # fewshot: fresh pairs, same tasks
        y = self.teacher(z, x)
        return torch.cat([x.reshape(len(z), -1), y.reshape(len(z), -1)], dim=1)

    def _inputs(self, num_tasks: int, num_samples: int, generator) -> torch.Tensor:
        shape = (num_tasks, num_samples, self.input_dim)
        return 2 * torch.rand(shape, generator=generator, device=self.device) - 1

    def sample(self, num_tasks: int, split: str, generator: torch.Generator) -> TaskBatch:
        """A batch of num_tasks tasks from the "train" or "ood" combinations, drawn from generator.

        "train" also serves in-distribution test tasks: weights and inputs are fresh each call.
        """
        _check_choice("split", split, SPLITS)
        if not isinstance(num_tasks, int) or num_tasks < 1:
            raise ValueError(f"num_tasks={num_tasks} must be an integer >= 1")
        combos = self.train_combinations if split == "train" else self.ood_combinations
        pick = torch.randint(len(combos), (num_tasks,), generator=generator, device=self.device)
        z = task_weights(combos[pick], self.task_distribution, generator)
        x = self._inputs(num_tasks, self.num_samples, generator)
        y = self.teacher(z, x)
        return TaskBatch(encoding=self.encode(z, generator), x=x, y=y, z=z)
