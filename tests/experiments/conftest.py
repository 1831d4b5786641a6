import json

import pytest

from bindbench.core.plan import make_plan
from bindbench.core.registry import EXPERIMENTS


@pytest.fixture
def tiny_spec():
    """`tiny_spec(name, *sets)`: the resolved spec of one run of the experiment at its tiny
    settings, with the `--set` overrides after them."""

    def make(name: str, *sets: str):
        tiny = [f"{key}={json.dumps(value)}" for key, value in EXPERIMENTS[name].tiny.items()]
        return make_plan(name, sets=[*tiny, *sets]).jobs[0].spec

    return make
