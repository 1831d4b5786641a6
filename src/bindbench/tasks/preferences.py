"""Compositional preferences: imitating an optimal agent in a gridworld (Schug et al. 2024).

A 7x7 grid with walls holds `num_objects` objects, each of one of F features, and an agent.
Stepping onto an object picks it up for the reward onehot(feature) . B^T . z: B (P, F) is a
fixed Gaussian preference basis and z a task, a weighting of 1..K of the P preferences, drawn
from the hyperteacher's combinations, weights and train/OOD splits. Actions are NOTHING (which
ends the episode), up, right, down and left; walls stop a move; discount 0.9, 8 steps.

Demonstrations come from exact value iteration over (agent cell x objects still there), for
every episode of a batch at once, Q_h being the value with h steps to go. With plan
"receding" (the reference's) every step acts on Q_T: the demonstrator plans T steps ahead from
wherever it stands, a policy of the state alone, which the student can imitate exactly. With
"remaining" step t acts on Q_{T-t}: the return is the best any action sequence reaches within
the time limit, but the action then depends on the time, which the grid does not show (the two
differ in about 6% of steps). Ties go to the lowest action, NOTHING first (as the reference's
argmax). The
student sees each step's grid (F + 2 channels: features, agent, walls), flattened and
RMS-normalized, and the task z.

Axis letters: b episode, t step, c free cell, a action, k objects-left subset, o object.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bindbench.tasks.hyperteacher import (
    SUPPORTS,
    TASK_DISTRIBUTIONS,
    _check_choice,
    _check_frac_ood,
    split_combinations,
    task_weights,
)

# The reference's map: four 2x2 rooms around a cross of walls with four doors ("w" = wall).
LAYOUT = (
    "wwwwwww",
    "w  w  w",
    "w  w  w",
    "ww   ww",
    "w  w  w",
    "w  w  w",
    "wwwwwww",
)
ACTIONS = ("nothing", "up", "right", "down", "left")
MOVES = ((0, 0), (-1, 0), (0, 1), (1, 0), (0, -1))  # (row, column) per action
SPLITS = ("train", "ood")
# receding: every step acts on Q with `timelimit` steps ahead (the reference; a policy of the
# state alone); remaining: on Q with the steps that are left (returns exactly optimal, but the
# action depends on the time, which the grid does not show)
PLANS = ("receding", "remaining")
TIE_TOLERANCE = 1e-5  # action values this close count as equal: the lowest action wins
RMS_EPS = 1e-6


@dataclass
class Demonstrations:
    inputs: torch.Tensor  # (b, t, H * W * (F + 2) + P): each step's grid, then z (the student's view)
    actions: torch.Tensor  # (b, t) long, the optimal action; -1 once the episode has ended
    z: torch.Tensor  # (b, P) preference weights, 0 for inactive preferences
    returns: torch.Tensor  # (b,) the demonstration's discounted return
    values: torch.Tensor  # (b, o) reward of picking up each object
    features: torch.Tensor  # (b, o) each object's feature
    cells: torch.Tensor  # (b, o + 1) free-cell index of each object, then of the agent

    @property
    def observations(self) -> torch.Tensor:
        """(b, t, H * W * (F + 2)): each step's flattened, RMS-normalized grid."""
        return self.inputs[..., : -self.z.shape[1]]

    @property
    def valid(self) -> torch.Tensor:
        """(b, t) bool: steps the episode reaches (up to and including its NOTHING)."""
        return self.actions >= 0


class CompositionalPreferences:
    """A fixed preference basis with its train/OOD split; `sample` draws demonstrations."""

    def __init__(
        self,
        num_preferences: int = 16,
        num_features: int = 32,
        num_objects: int = 4,
        num_hot: int = 3,
        task_distribution: str = "discrete",
        support: str = "random",
        frac_ood: float = 0.25,
        discount: float = 0.9,
        timelimit: int = 8,
        plan: str = "receding",
        layout: tuple[str, ...] = LAYOUT,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ):
        if not isinstance(num_hot, int) or not 1 <= num_hot <= num_preferences:
            raise ValueError(
                f"num_hot={num_hot} must be an integer in [1, num_preferences={num_preferences}]"
            )
        for name, value in [
            ("num_features", num_features),
            ("num_objects", num_objects),
            ("timelimit", timelimit),
        ]:
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value} must be an integer >= 1")
        if not 0 < discount <= 1:
            raise ValueError(f"discount={discount} must be in (0, 1]")
        _check_choice("task_distribution", task_distribution, TASK_DISTRIBUTIONS)
        _check_choice("support", support, SUPPORTS)
        _check_choice("plan", plan, PLANS)
        _check_frac_ood(frac_ood)
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed} must be an integer >= 0")
        if len({len(row) for row in layout}) != 1 or not set("".join(layout)) <= {"w", " "}:
            raise ValueError("layout must be rows of equal length made of 'w' (wall) and ' ' (free)")
        walls = torch.tensor([[c == "w" for c in row] for row in layout])
        free = (~walls).nonzero()  # (c, 2) row, column
        if len(free) < num_objects + 1:
            raise ValueError(
                f"layout has {len(free)} free cells; {num_objects} objects and the agent need more"
            )

        self.num_preferences, self.num_features, self.num_objects = num_preferences, num_features, num_objects
        self.num_hot, self.task_distribution, self.support, self.frac_ood = (
            num_hot,
            task_distribution,
            support,
            frac_ood,
        )
        self.discount, self.timelimit, self.plan, self.seed = discount, timelimit, plan, seed
        self.device = torch.device(device)

        def stream(k: int) -> torch.Generator:  # the hyperteacher's streams: the same split for a seed
            return torch.Generator().manual_seed(seed * 1000 + k)

        try:
            train, ood = split_combinations(num_preferences, num_hot, support, frac_ood, stream(0))
        except ValueError as err:  # the hyperteacher's words: its modules are the preferences here
            raise ValueError(str(err).replace("num_modules=", "num_preferences=")) from None
        self.train_combinations, self.ood_combinations = train.to(self.device), ood.to(self.device)
        self.basis = torch.randn(num_preferences, num_features, generator=stream(1)).to(self.device)  # B

        height, width = walls.shape
        self.grid_shape = (height, width)
        self.walls = walls.to(self.device)
        self.free_cells = free.to(self.device)
        # a move into a wall (or off the map) stays put
        cell_of = torch.full((height, width), -1, dtype=torch.long)
        cell_of[free[:, 0], free[:, 1]] = torch.arange(len(free))
        moves = []
        for dr, dc in MOVES:
            r, c = free[:, 0] + dr, free[:, 1] + dc
            inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            target = torch.where(inside, cell_of[r.clamp(0, height - 1), c.clamp(0, width - 1)], -1)
            moves.append(torch.where(target >= 0, target, torch.arange(len(free))))
        self.next_cell = torch.stack(moves, 1).to(self.device)  # (c, a)
        self.moves_flat = self.next_cell.T.flatten()  # (a * c): the targets of action 0, then 1, ...
        self.bits = 1 << torch.arange(num_objects, device=self.device)  # (o,): object o's bit in a subset
        self.observation_dim = height * width * (num_features + 2)
        wall_cells = self.walls.flatten().nonzero()[:, 0]
        self.wall_index = (wall_cells * (num_features + 2) + num_features + 1)[None]  # (1, walls)

    @property
    def num_cells(self) -> int:
        return len(self.free_cells)

    def _episodes(self, n: int, split: str, generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tasks z (b, P), object features (b, o) and distinct cells (b, o + 1; the agent last)."""
        combos = self.train_combinations if split == "train" else self.ood_combinations
        pick = torch.randint(len(combos), (n,), generator=generator, device=self.device)
        z = task_weights(combos[pick], self.task_distribution, generator)
        features = torch.randint(
            self.num_features, (n, self.num_objects), generator=generator, device=self.device
        )
        order = torch.rand(n, self.num_cells, generator=generator, device=self.device).argsort(1)
        return z, features, order[:, : self.num_objects + 1]

    def object_values(self, z: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Reward (b, o) of each object: onehot(feature) . B^T . z."""
        return (z @ self.basis).gather(1, features)

    def arrival_values(self, values: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
        """U (h, b, c, 2^o): what arriving at a cell with a subset of objects left is worth, h + 1 steps left.

        `values` (b, o) are the objects' rewards and `objects` (b, o) their cells. A state is
        (agent cell, objects left); the value of action a there is Q_h = U_h[next_cell[cell, a],
        left]: the object on the target cell, if still there, and the discounted value of the
        state after it. Finite-horizon value iteration, V_h = max_a Q_h, from V_0 = 0; NOTHING is
        a move that stays (the episode ends: nothing is earned after it that staying would not).
        Only the objects' cells differ from discount * V, so each step is a few (b, c, 2^o) ops."""
        b, c, k, n = len(values), self.num_cells, 2**self.num_objects, self.num_objects
        subsets = torch.arange(k, device=self.device)
        holds = (subsets & self.bits[:, None]) > 0  # (o, k): object o is in subset k
        without = (subsets ^ self.bits[:, None]).expand(b, n, k)  # the subset once o is picked up
        gain = values[..., None]  # (b, o, 1)
        at = objects[..., None].expand(b, n, k)
        value = torch.zeros(b, c, k, device=self.device)
        arrivals = []
        for h in range(self.timelimit):
            here = value.gather(1, at)  # (b, o, k): values at the objects' cells
            picked = gain + self.discount * here.gather(2, without)
            arrive = (self.discount * value).scatter_(1, at, torch.where(holds, picked, self.discount * here))
            arrivals.append(arrive)
            if h < self.timelimit - 1:  # the last horizon's V is what `policy` reads off its Q
                value = arrive.index_select(1, self.moves_flat).view(b, -1, c, k).amax(1)  # (b, c, k)
        return torch.stack(arrivals)

    def action_values(self, arrive: torch.Tensor, cells: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
        """Q (b, a) at agent cells (b,) with subsets left (b,), from one horizon's U (b, c, 2^o)."""
        rows = torch.arange(len(cells), device=self.device)[:, None]
        return arrive[rows, self.next_cell[cells], left[:, None]]

    def policy(self, arrive: torch.Tensor, values: torch.Tensor, objects: torch.Tensor) -> tuple:
        """The greedy action, the next state and the reward at every state (b, c * 2^o) of one
        horizon's U (b, c, 2^o): the demonstrator as tables, so that a rollout is a few gathers."""
        b, c, k = arrive.shape
        q = arrive.index_select(1, self.moves_flat).view(b, -1, c, k)  # (b, a, c, k)
        ties = q >= q.amax(1, keepdim=True) - TIE_TOLERANCE  # (b, a, c, k)
        rank = torch.arange(len(ACTIONS), 0, -1, device=self.device)[:, None, None]  # a = 0 ranks highest
        best = len(ACTIONS) - (ties * rank).amax(1)  # (b, c, k): the first best action
        target = self.next_cell.expand(b, -1, -1).gather(2, best)  # (b, c, k)
        object_at = torch.full((b, c), -1, dtype=torch.long, device=self.device)
        object_at.scatter_(1, objects, torch.arange(self.num_objects, device=self.device).expand(b, -1))
        landed = object_at.gather(1, target.view(b, -1)).view(b, c, k)  # the object there, or -1
        subsets = torch.arange(k, device=self.device)
        bit = torch.where(landed >= 0, 1 << landed.clamp(min=0), 0)
        taken = (subsets & bit) > 0  # the object is there and still on the grid
        gain = values.gather(1, landed.clamp(min=0).view(b, -1)).view(b, c, k)
        following = target * k + torch.where(taken, subsets ^ bit, subsets)
        return best.view(b, -1), following.view(b, -1), torch.where(taken, gain, 0.0).view(b, -1)

    def observe(
        self,
        agent: torch.Tensor,
        objects: torch.Tensor,
        features: torch.Tensor,
        left: torch.Tensor,
        extra: int = 0,
    ) -> torch.Tensor:
        """RMS-normalized grids (n, H * W * (F + 2)): the agent's channel F at free cell agent (n,),
        object o at objects[:, o] in its feature's channel while bit o of `left` (n,) is set, walls
        in the last channel; then `extra` zero columns. Written by one scatter of each grid's few
        ones, already scaled: a grid is 0/1, so its mean square is the share of ones."""
        n, channels = len(agent), self.num_features + 2
        present = (left[:, None] & self.bits) > 0  # (n, o)
        walls = self.wall_index.shape[1]
        scale = torch.rsqrt((walls + 1 + present.sum(1, keepdim=True)) / self.observation_dim + RMS_EPS)
        flat = self.free_cells[:, 0] * self.grid_shape[1] + self.free_cells[:, 1]  # (c,) grid index
        agent_index = (flat[agent] * channels)[:, None] + self.num_features
        index = torch.cat(
            [flat[objects] * channels + features, agent_index, self.wall_index.expand(n, -1)], 1
        )
        values = torch.cat([present * scale, scale.expand(n, 1 + walls)], 1)
        grids = torch.zeros(n, self.observation_dim + extra, device=self.device)
        return grids.scatter_(1, index, values)

    def sample(self, num_episodes: int, split: str, generator: torch.Generator) -> Demonstrations:
        """Optimal demonstrations of num_episodes tasks from the "train" or "ood" combinations.

        "train" also serves in-distribution test episodes: tasks, objects and cells are fresh."""
        _check_choice("split", split, SPLITS)
        if not isinstance(num_episodes, int) or num_episodes < 1:
            raise ValueError(f"num_episodes={num_episodes} must be an integer >= 1")
        z, features, cells = self._episodes(num_episodes, split, generator)
        objects, agent = cells[:, :-1], cells[:, -1]
        values = self.object_values(z, features)
        arrive = self.arrival_values(values, objects)
        horizons = range(self.timelimit - 1, -1, -1) if self.plan == "remaining" else [self.timelimit - 1]
        tables = [self.policy(arrive[h], values, objects) for h in horizons]
        b, k = num_episodes, 2**self.num_objects
        state = (agent * k + k - 1)[:, None]  # (b, 1): cell * 2^o + the objects left
        ended = torch.zeros(b, 1, dtype=torch.bool, device=self.device)
        returns = torch.zeros(b, 1, device=self.device)
        states, actions = [], []
        for t in range(self.timelimit):
            best, following, reward = tables[min(t, len(tables) - 1)]
            states.append(state)
            action = best.gather(1, state)
            actions.append(torch.where(ended, -1, action))
            returns += torch.where(ended, 0.0, self.discount**t * reward.gather(1, state))
            state = torch.where(ended, state, following.gather(1, state))
            ended = ended | (action == 0)
        states = torch.cat(states, 1).flatten()  # (b * t,)
        inputs = self.observe(
            states // k,
            objects.repeat_interleave(self.timelimit, 0),
            features.repeat_interleave(self.timelimit, 0),
            states % k,
            extra=self.num_preferences,
        ).view(b, self.timelimit, -1)  # (b, t, H * W * (F + 2) + P)
        inputs[..., self.observation_dim :] = z[:, None]  # written in place: no copy of the grids
        return Demonstrations(inputs, torch.cat(actions, 1), z, returns[:, 0], values, features, cells)
