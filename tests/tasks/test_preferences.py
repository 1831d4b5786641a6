import itertools
import re

import pytest
import torch

from bindbench.tasks.hyperteacher import split_combinations
from bindbench.tasks.preferences import ACTIONS, CompositionalPreferences

# a 3x3 room around a pillar: small enough for every action sequence to be tried
SMALL = ("wwwww", "w   w", "w w w", "w   w", "wwwww")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small(plan: str, timelimit: int = 5) -> CompositionalPreferences:
    return CompositionalPreferences(
        num_preferences=4, num_hot=2, num_features=4, num_objects=2, frac_ood=0.5,
        timelimit=timelimit, plan=plan, layout=SMALL,
    )  # fmt: skip


def best_return(env, values, objects, agent, left, steps) -> float:
    """The best discounted return of any action sequence of `steps` actions (NOTHING ends the
    episode), by trying them all: an independent reference for value iteration."""
    moves = {(r, c): i for i, (r, c) in enumerate(env.free_cells.tolist())}
    deltas = [(0, 0), (-1, 0), (0, 1), (1, 0), (0, -1)]
    cells = env.free_cells.tolist()
    best = 0.0
    for actions in itertools.product(range(len(ACTIONS)), repeat=steps):
        here, still, total = agent, set(left), 0.0
        for t, action in enumerate(actions):
            if action == 0:
                break
            r, c = cells[here]
            here = moves.get((r + deltas[action][0], c + deltas[action][1]), here)  # walls stop a move
            for o in list(still):
                if objects[o] == here:
                    total += env.discount**t * values[o]
                    still.discard(o)
        best = max(best, total)
    return best


def test_value_iteration_equals_a_search_over_every_action_sequence():
    env = small("remaining")
    demos = env.sample(24, "train", gen(0))
    arrive = env.arrival_values(demos.values, demos.cells[:, :-1])
    full = torch.full((24,), 2**env.num_objects - 1)
    v = env.action_values(arrive[-1], demos.cells[:, -1], full).amax(1)
    for i in range(24):
        values, cells = demos.values[i].tolist(), demos.cells[i].tolist()
        expected = best_return(env, values, cells[:-1], cells[-1], range(env.num_objects), env.timelimit)
        assert v[i].item() == pytest.approx(expected, abs=1e-5)
    assert (v > 0).any() and (v == 0).any()  # both kinds of episode were drawn


def test_remaining_plan_demonstrations_reach_the_best_return():
    env = small("remaining")
    demos = env.sample(24, "train", gen(1))
    for i in range(24):
        values, cells = demos.values[i].tolist(), demos.cells[i].tolist()
        expected = best_return(env, values, cells[:-1], cells[-1], range(env.num_objects), env.timelimit)
        assert demos.returns[i].item() == pytest.approx(expected, abs=1e-5)


def replay(env, demos, i):
    """The states (agent cell, objects left) an episode's demonstration visits, and its return."""
    cells = demos.cells[i].tolist()
    agent, left, total, states = cells[-1], set(range(env.num_objects)), 0.0, []
    for t, action in enumerate(demos.actions[i].tolist()):
        if action < 0:
            break
        states.append((agent, frozenset(left), action))
        agent = env.next_cell[agent, action].item()
        for o in list(left):
            if cells[o] == agent:
                total += env.discount**t * demos.values[i, o].item()
                left.discard(o)
        if action == 0:
            break
    return states, total


def test_receding_plan_acts_optimally_for_timelimit_steps_ahead_at_every_step():
    env = small("receding", timelimit=4)
    demos = env.sample(12, "train", gen(2))
    for i in range(12):
        states, total = replay(env, demos, i)
        assert total == pytest.approx(demos.returns[i].item(), abs=1e-5)
        values, objects = demos.values[i].tolist(), demos.cells[i, :-1].tolist()
        for agent, left, action in states:
            best = best_return(env, values, objects, agent, left, env.timelimit)
            # the demonstrated action starts a best plan of `timelimit` steps from here
            moved = env.next_cell[agent, action].item()
            gain = sum(values[o] for o in left if objects[o] == moved)
            still = {o for o in left if objects[o] != moved}
            rest = best_return(env, values, objects, moved, still, env.timelimit - 1)
            if action == 0:
                assert best == pytest.approx(0.0, abs=1e-5)
            else:
                assert gain + env.discount * rest == pytest.approx(best, abs=1e-5)


def test_episodes_with_nothing_to_gain_stop_at_once():
    env = small("receding")
    demos = env.sample(256, "train", gen(3))
    hopeless = (demos.values <= 0).all(1)
    assert hopeless.any()
    assert (demos.actions[hopeless, 0] == 0).all()  # ties go to NOTHING, the first action
    assert (demos.actions[hopeless, 1:] == -1).all() and (demos.returns[hopeless] == 0).all()
    assert demos.valid.sum(1).min() >= 1


def test_the_two_plans_differ_only_after_the_first_step():
    a = CompositionalPreferences(num_features=16, plan="receding").sample(512, "train", gen(4))
    b = CompositionalPreferences(num_features=16, plan="remaining").sample(512, "train", gen(4))
    assert torch.equal(a.actions[:, 0], b.actions[:, 0])
    assert not torch.equal(a.actions, b.actions)
    assert (b.returns >= a.returns - 1e-5).all()  # the time-aware plan is never worse


def test_held_out_combinations_never_appear_in_training():
    env = CompositionalPreferences(num_features=8, frac_ood=0.5, seed=3)
    train, ood = env.train_combinations, env.ood_combinations
    for split, allowed, banned in (("train", train, ood), ("ood", ood, train)):
        active = (env.sample(2048, split, gen(5)).z > 0).float()
        matches = (active[:, None] == allowed[None]).all(-1)
        assert matches.any(1).all()
        assert not (active[:, None] == banned[None]).all(-1).any()


def test_the_split_is_the_hyperteachers_for_the_same_seed():
    env = CompositionalPreferences(num_preferences=8, num_hot=2, frac_ood=0.4, support="equal", seed=7)
    train, ood = split_combinations(8, 2, "equal", 0.4, torch.Generator().manual_seed(7000))
    assert torch.equal(env.train_combinations, train) and torch.equal(env.ood_combinations, ood)


def test_object_values_are_onehot_feature_times_basis_times_z():
    env = CompositionalPreferences(num_features=8)
    demos = env.sample(64, "train", gen(6))
    onehot = torch.nn.functional.one_hot(demos.features, 8).double()  # (b, o, F)
    expected = onehot @ env.basis.double().T @ demos.z.double()[..., None]  # (b, o, 1)
    assert torch.allclose(demos.values.double(), expected[..., 0], atol=1e-5)


def test_observations_show_the_agent_walls_and_the_objects_still_there():
    env = CompositionalPreferences(num_features=6, seed=1)
    demos = env.sample(64, "train", gen(7))
    d = env.observation_dim
    grids = demos.observations.view(64, env.timelimit, 7, 7, 8)
    assert demos.observations.shape == (64, env.timelimit, d)
    assert torch.equal(demos.inputs[..., d:], demos.z[:, None].expand(-1, env.timelimit, -1))  # z after it
    rms = demos.observations.pow(2).mean(-1).sqrt()
    assert torch.allclose(rms, torch.ones_like(rms), atol=1e-4)  # RMS-normalized
    on = grids > 0
    assert torch.equal(on[..., -1], env.walls.expand(64, env.timelimit, 7, 7))
    assert (on[..., 6].flatten(2).sum(-1) == 1).all()  # one agent
    r, c = env.free_cells[demos.cells[:, -1]].T
    assert on[torch.arange(64), 0, r, c, 6].all()  # where it starts
    objects_shown = on[:, :, :, :, :6].flatten(2).sum(-1)  # (b, t)
    assert (objects_shown[:, 0] == env.num_objects).all()
    assert (objects_shown[:, 1:] <= objects_shown[:, :-1]).all()  # picked objects disappear
    picked_any = objects_shown[:, -1] < env.num_objects
    assert picked_any.any() and (demos.returns[~picked_any] == 0).all()


def test_demonstrations_are_seeded():
    env = CompositionalPreferences(num_features=8)
    a, b, c = (env.sample(32, "ood", gen(s)) for s in (1, 1, 2))
    assert torch.equal(a.observations, b.observations) and torch.equal(a.actions, b.actions)
    assert not torch.equal(a.actions, c.actions)
    other = CompositionalPreferences(num_features=8, seed=1)
    assert not torch.equal(env.basis, other.basis)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"plan": "greedy"}, "plan='greedy' must be one of"),
        ({"layout": ("www", "w w", "ww")}, "layout"),
        ({"layout": ("www", "w w", "www")}, "free cells"),
        ({"num_objects": 0}, "num_objects=0"),
        ({"discount": 0.0}, "discount=0.0"),
        ({"num_hot": 20}, "num_hot=20 must be an integer in [1, num_preferences=16]"),
    ],
)
def test_bad_settings_name_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        CompositionalPreferences(**kwargs)
