import pytest

from bindbench.core.config import (
    SpecError,
    build_spec,
    expand_grid,
    flatten,
    parse_override,
    run_id,
    split_sweep,
)
from bindbench.core.plan import make_plan
from bindbench.experiments.hyperteacher.setup import CompositionSpec


def test_defaults_are_the_reference_hyperteacher_setting():
    spec = CompositionSpec()
    assert (spec.task.num_modules, spec.task.num_hot, spec.task.input_dim) == (16, 3, 16)
    assert (spec.train.batch_size, spec.train.lr, spec.train.weight_decay) == (128, 3e-4, 3e-3)
    assert spec.task.frac_ood == 0.25 and spec.model.width == 1024 and spec.model.depth == 4


def test_override_values_are_parsed_as_yaml():
    assert parse_override("model.width=512") == ("model.width", 512)
    assert parse_override("task.frac_ood=0.9") == ("task.frac_ood", 0.9)
    assert parse_override("task.support=equal") == ("task.support", "equal")
    assert parse_override("model.width=[32, 64]") == ("model.width", [32, 64])


@pytest.mark.parametrize(
    "text, value",
    [
        ("yes", "yes"),  # YAML 1.1: True (and so width 1)
        ("off", "off"),
        ("True", True),
        ("false", False),
        ("1:2:3", "1:2:3"),  # YAML 1.1: 3723, base 60
        ("010", 10),  # YAML 1.1: 8, octal
        ("0o17", 15),
        ("0x1f", 31),
        ("-4", -4),
        ("1e-3", 0.001),  # YAML 1.1: the string '1e-3'
        (".5", 0.5),
        ("1_000", "1_000"),  # YAML 1.1: 1000
        ("~", None),
        ("[1, true, relu]", [1, True, "relu"]),
    ],
)
def test_values_are_read_as_yaml_1_2_core_schema(text, value):
    from bindbench.core.config import load_strict

    parsed = load_strict(text)
    assert parsed == value and type(parsed) is type(value)


def test_a_key_twice_in_a_mapping_is_an_error_with_its_line(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("experiment: composition\nset:\n  model.width: 8\n  model.width: 16\n")
    with pytest.raises(SpecError, match=r"at line 4, column 3: key 'model.width' is given twice$"):
        make_plan(str(path))
    with pytest.raises(SpecError, match="key 'width' is given twice"):
        parse_override("model={width: 1, width: 2}")


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.width=true", "model.width=true: value error, true is a boolean"),
        ("train.lr=.inf", "train.lr=Infinity: input should be a finite number"),
        ("train.lr=.nan", "train.lr=NaN: input should be a finite number"),
        ("train.warmup_steps=2000", "train.warmup_steps=2000 must be less than train.steps=2000"),
    ],
)
def test_booleans_for_numbers_non_finite_numbers_and_a_warmup_past_the_end_are_refused(override, message):
    with pytest.raises(SpecError) as info:
        make_plan("composition", sets=[override])
    assert message in str(info.value)
    # what they may be: a boolean where the key is one, warm-up shorter than training
    assert make_plan("composition", sets=["train.warmup_steps=1999"]).jobs[0].spec.train.warmup_steps == 1999


def test_a_list_on_a_scalar_field_is_a_sweep_and_two_lists_make_a_grid():
    fixed, axes = split_sweep(CompositionSpec, {"model.width": [8, 16], "seed": [0, 1, 2], "model.depth": 2})
    assert fixed == {"model.depth": 2}
    grid = expand_grid(axes)
    assert len(grid) == 6 and {"model.width": 16, "seed": 2} in grid


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"model.widht": 3}, ["model.widht", "width"]),
        ({"model.width": "abc"}, ["model.width", "abc", "integer"]),
        ({"model.width": 0}, ["model.width", "0", "greater than or equal to 1"]),
        ({"task.frac_ood": 1.2}, ["task.frac_ood", "1.2", "less than 1"]),
        ({"task.support": "nope"}, ["task.support", "nope", "random"]),
        ({"nothing": 1}, ["nothing", "allowed are"]),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_allowed(overrides, words):
    with pytest.raises(SpecError) as info:
        build_spec(CompositionSpec, {}, overrides)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_run_id_is_the_hash_of_the_resolved_spec_seed_included():
    a = build_spec(CompositionSpec, {}, {"seed": 1})
    b = build_spec(CompositionSpec, {"seed": 1}, {})
    c = build_spec(CompositionSpec, {}, {"seed": 2})
    assert run_id("composition", a) == run_id("composition", b) != run_id("composition", c)


def test_plan_applies_the_profile_then_set_then_seed():
    plan = make_plan("composition", "quick", ["model.width=[8,16]", "train.steps=5"], seed=3)
    assert [j.spec.model.width for j in plan.jobs] == [8, 16]
    assert all(j.spec.train.steps == 5 and j.spec.seed == 3 for j in plan.jobs)
    assert plan.sweeps == {"composition": ["model.width"]}
    assert (
        plan.default_out()
        == make_plan("composition", "quick", ["model.width=[8,16]", "train.steps=5"], 3).default_out()
    )


def test_the_quick_default_suite_sweeps_width_at_low_coverage():
    plan = make_plan()
    jobs = [j for j in plan.jobs if j.experiment.name == "composition"]
    widths = sorted(j.spec.model.width for j in jobs)
    assert {32, 128, 512} <= set(widths)
    assert all(j.spec.task.frac_ood == 0.95 and j.spec.task.num_modules == 16 for j in jobs)


def test_an_impossible_split_is_refused_before_anything_runs():
    with pytest.raises(SpecError, match="compositional"):
        make_plan("composition", "quick", ["task.num_modules=4", "task.num_hot=1", "task.frac_ood=0.5"])


def test_in_a_suite_a_bare_key_bad_for_one_experiment_names_that_experiment():
    with pytest.raises(
        SpecError, match=r"^structure: model.init=\"torch\": input should be 'trained' or 'random'"
    ):
        make_plan(None, "quick", ["model.init=torch"])  # composition and scaling take it
    plan = make_plan(None, "quick", ["composition.model.init=torch"])
    assert {j.spec.model.init for j in plan.jobs if j.experiment.name == "composition"} == {"torch"}
    with pytest.raises(SpecError, match="^model.init="):  # one experiment: no prefix
        make_plan("composition", "quick", ["model.init=xavier"])


def test_a_profile_given_as_blocks_joins_their_grids_and_set_applies_to_each():
    plan = make_plan("scaling", "quick", ["model.width=8"])
    supports = {(j.spec.task.support, j.spec.task.frac_ood) for j in plan.jobs}
    assert ("random", 0.9) in supports and ("non_compositional", 0.5) in supports
    assert ("non_compositional", 0.9) not in supports
    assert all(j.spec.model.width == 8 for j in plan.jobs)


def test_spec_files_load_from_yaml(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("experiment: composition\nset:\n  model: {width: [8, 12]}\n  train: {steps: 7}\n")
    plan = make_plan(str(path))
    assert [j.spec.model.width for j in plan.jobs] == [8, 12] and plan.jobs[0].spec.train.steps == 7
    path.write_text("experiment: composition\nset: {model: {colour: red}}\n")
    with pytest.raises(SpecError, match="colour"):
        make_plan(str(path))
    path.write_text("experiment: composition\nset:\n  model: {width: [8, 12}\n")
    with pytest.raises(SpecError, match="not valid YAML at line 3, column"):
        make_plan(str(path))


def test_overriding_one_nested_key_keeps_the_parents_other_defaults_for_that_spec():
    from bindbench.core.config import Spec
    from bindbench.core.training import TrainSpec

    class Parent(Spec):
        train: TrainSpec = TrainSpec(lr=1e-3, weight_decay=0.0)

    spec = build_spec(Parent, overrides={"train.steps": 7})
    assert (spec.train.steps, spec.train.lr, spec.train.weight_decay) == (7, 1e-3, 0.0)
    spec = build_spec(Parent, base={"train": {"batch_size": 3}})
    assert (spec.train.batch_size, spec.train.lr) == (3, 1e-3)
    # and a spec built from its own dump is the same spec (run ids do not move)
    assert build_spec(Parent, base=spec.model_dump()) == spec


def test_a_built_spec_is_frozen():
    from pydantic import ValidationError

    from bindbench.core.config import Spec
    from bindbench.core.training import TrainSpec

    class Parent(Spec):
        train: TrainSpec = TrainSpec(lr=1e-3)
        seed: int = 0

    spec = build_spec(Parent, overrides={"train.steps": 7, "seed": 1})
    before = (spec.model_dump(), run_id("parent", spec))
    with pytest.raises(ValidationError, match="frozen"):
        spec.train.steps = 8
    with pytest.raises(ValidationError, match="frozen"):
        spec.seed = 5
    assert (spec.model_dump(), run_id("parent", spec)) == before
    changed = spec.model_copy(update={"seed": 5})  # a changed spec is a new one
    assert changed.seed == 5 and spec.seed == 1


def test_described_defaults_of_a_nested_spec_are_the_ones_its_parent_gives_it():
    from bindbench.core.config import Spec, describe_fields
    from bindbench.core.training import TrainSpec

    class Parent(Spec):
        train: TrainSpec = TrainSpec(lr=1e-3, steps=6000)
        plain: TrainSpec = TrainSpec()
        seed: int = 4

    defaults = {key: default for key, _, default, _ in describe_fields(Parent)}
    assert (defaults["train.lr"], defaults["train.steps"]) == (1e-3, 6000)
    assert defaults["train.batch_size"] == TrainSpec().batch_size  # not given: the class's
    assert (defaults["plain.lr"], defaults["seed"]) == (TrainSpec().lr, 4)
    # the defaults shown are what build_spec gives without overrides
    assert defaults == {k: v for k, v in flatten(build_spec(Parent).model_dump()).items()}


def test_list_prints_profiles_made_of_several_grids(capsys):
    from bindbench.cli import main

    assert main(["list", "structure"]) == 0
    out = capsys.readouterr().out
    assert "profile full [1]:" in out and "profile full [2]:" in out and "profile quick:" in out
