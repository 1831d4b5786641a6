"""`--set` values from anywhere: a command either plans or is one line and exit 2 with
nothing written (issue 18's fuzzing, as a property)."""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bindbench.cli import main
from bindbench.core.config import SpecError, describe_fields
from bindbench.core.plan import make_plan
from bindbench.experiments.hyperteacher.setup import CompositionSpec

KEYS = [row[0] for row in describe_fields(CompositionSpec)] + ["model.widht", "task", "train.steps.x", ""]
SCALARS = st.one_of(
    st.integers(-(2**40), 2**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["yes", "no", "on", "true", "False", "null", "~", ".inf", "-.nan", "1:2:3", "010"]),
    st.sampled_from(["random", "equal", "reference", "torch", "cosine", "bf16", "identity", "tokens"]),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=12),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3).map(lambda v: "[" + ", ".join(v) + "]"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_any_set_value_plans_or_is_one_line_exit_2_writing_nothing(tmp_path, capsys, key, value):
    item = f"{key}={value}"
    try:
        make_plan("composition", sets=[item])
    except SpecError:
        pass  # refused: the command line must say so the same way
    except Exception as err:  # noqa: BLE001  (what the property rules out)
        raise AssertionError(f"--set {item!r}: {type(err).__name__}: {err}") from err
    else:
        return  # valid: planning it is enough (running would train a model)
    out = tmp_path / f"r{abs(hash(item))}"
    code = main(["run", "composition", "--set", item, "--out", str(out), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("bindbench: error:"), (item, err)
    assert not os.path.exists(out)
