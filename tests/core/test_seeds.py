import itertools

import numpy as np
import pytest
import torch

from bindbench.core.seeds import STREAMS, generator, seed_init, stream_seed


def test_no_two_streams_of_any_runs_coincide():
    seeds = [None, *range(50)]
    values = [
        stream_seed(s, name, *index) for s in seeds for name in STREAMS for index in [(), (0,), (1,), (2,)]
    ]
    assert len(set(values)) == len(values)


def test_the_old_collision_is_gone_a_probe_stream_is_no_other_runs_data_stream():
    # before the rule, scaling's probe stream of seed s (2s+3) was the data stream (2s+1) of seed s+1
    probes = {stream_seed(s, "probe") for s in range(100)}
    data = {stream_seed(s, "data") for s in range(100)}
    assert not probes & data


def test_a_stream_is_the_same_every_time_and_matches_numpys_seed_sequence():
    assert stream_seed(3, "data") == stream_seed(3, "data")
    expected = np.random.SeedSequence(3, spawn_key=(0, STREAMS.index("data"))).generate_state(1, np.uint64)[0]
    assert stream_seed(3, "data") == int(expected)
    first, second = (torch.rand(4, generator=generator(3, "data")) for _ in range(2))
    assert torch.equal(first, second)


def test_seed_init_makes_initialization_reproducible_and_distinct_per_seed():
    draws = []
    for seed in (0, 0, 1):
        seed_init(seed)
        draws.append(torch.nn.Linear(3, 3).weight.detach().clone())
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_an_unknown_stream_is_an_error_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown random stream 'dta'.*data"):
        stream_seed(0, "dta")


def test_every_pair_of_named_streams_of_one_run_draws_differently():
    for a, b in itertools.combinations(STREAMS, 2):
        assert not torch.equal(
            torch.rand(8, generator=generator(0, a)), torch.rand(8, generator=generator(0, b))
        )
