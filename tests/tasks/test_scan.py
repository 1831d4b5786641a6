from collections import Counter

import pytest

from bindbench.tasks import scan

ALL = scan.generate()
MEANING = {e.command: e.actions for e in ALL}

# (train rows, unique train commands, test rows) of the published files (research note, 1.3)
PUBLISHED_COUNTS = {
    "simple": (16728, 16728, 4182),
    "length": (16990, 16990, 3920),
    "addprim_jump": (14670, 13204, 7706),
    "addprim_turn_left": (21890, 19702, 1208),
    "template_around_right": (15225, 15225, 4476),
    "template_jump_around_right": (18528, 18528, 1173),
    "template_opposite_right": (15225, 15225, 4476),
    "template_right": (15225, 15225, 4476),
    "filler_num0": (15225, 15225, 1173),
    "filler_num1": (16290, 16290, 1173),
    "filler_num2": (17391, 17391, 1173),
    "filler_num3": (18528, 18528, 1173),
}


def test_grammar_gives_20910_unique_commands_with_the_published_lengths():
    assert len(ALL) == 20910
    assert len(MEANING) == 20910
    words = Counter(len(e.command.split()) for e in ALL)
    actions = {len(e.actions.split()) for e in ALL}
    assert min(words) == 1 and max(words) == 9
    assert actions == set(range(1, 23)) | {24, 25, 26, 27, 28, 30, 32, 33, 36, 40, 48}  # no 23


@pytest.mark.parametrize("name", PUBLISHED_COUNTS)
def test_split_counts_equal_the_published_files(name):
    split = scan.make_split(name)
    train_rows, train_unique, test_rows = PUBLISHED_COUNTS[name]
    assert len(split.train) == train_rows
    assert len({e.command for e in split.train}) == train_unique
    assert len(split.test) == test_rows
    assert not {e.command for e in split.train} & {e.command for e in split.test}


def test_interpretation_rules_by_hand():
    assert MEANING["jump"] == "I_JUMP"
    assert MEANING["turn left"] == "I_TURN_LEFT"
    assert MEANING["walk left"] == "I_TURN_LEFT I_WALK"
    assert MEANING["look opposite right"] == "I_TURN_RIGHT I_TURN_RIGHT I_LOOK"
    assert MEANING["turn opposite left"] == "I_TURN_LEFT I_TURN_LEFT"
    assert MEANING["run around left"] == " ".join(["I_TURN_LEFT I_RUN"] * 4)
    assert MEANING["turn around right"] == " ".join(["I_TURN_RIGHT"] * 4)
    assert MEANING["jump thrice"] == "I_JUMP I_JUMP I_JUMP"
    assert MEANING["walk twice and look"] == "I_WALK I_WALK I_LOOK"


def test_after_runs_its_second_argument_first():
    assert MEANING["walk after jump"] == "I_JUMP I_WALK"
    assert MEANING["look twice after turn right"] == "I_TURN_RIGHT I_LOOK I_LOOK"
    assert MEANING["jump around left after walk"] == "I_WALK " + " ".join(["I_TURN_LEFT I_JUMP"] * 4)


def test_addprim_jump_sees_jump_only_alone_as_10_percent_of_rows():
    split = scan.make_split("addprim_jump")
    with_jump = [e for e in split.train if "jump" in e.command.split()]
    assert {e.command for e in with_jump} == {"jump"}
    assert len(with_jump) == round(0.1 * len(split.train))
    assert all("jump" in e.command.split() for e in split.test)


def test_length_split_cuts_at_22_actions():
    split = scan.make_split("length")
    assert max(len(e.actions.split()) for e in split.train) == 22
    assert min(len(e.actions.split()) for e in split.test) == 24


def test_templates_drop_the_turn_phrase_from_both_sets():
    split = scan.make_split("template_around_right")
    rows = split.train + split.test
    assert not any("turn around right" in e.command for e in rows)
    assert all(any(f"{u} around right" in e.command for u in scan.PRIMITIVES) for e in split.test)


def test_simple_split_is_seeded():
    a, b, c = scan.make_split("simple", 0), scan.make_split("simple", 0), scan.make_split("simple", 1)
    assert a.test == b.test
    assert a.test != c.test


def test_written_files_parse_back_to_the_same_split(tmp_path):
    split = scan.make_split("addprim_jump")
    train_path, test_path = scan.write_split(split, tmp_path)
    assert train_path.name == "tasks_train_addprim_jump.txt"
    assert train_path.read_text().splitlines()[0].startswith("IN: ")
    again = scan.read_split(train_path, test_path, "addprim_jump")
    assert again == split


@pytest.mark.parametrize(
    "line, problem",
    [
        ("walk twice OUT: I_WALK I_WALK", "expected 'IN: <command> OUT: <actions>'"),
        ("IN: walk OUT:", "expected"),
        ("IN: fly OUT: I_WALK", "unknown command word 'fly'"),
        ("IN: walk OUT: I_FLY", "unknown action 'I_FLY'"),
    ],
)
def test_a_malformed_line_names_the_file_and_line(tmp_path, line, problem):
    path = tmp_path / "bad.txt"
    path.write_text("IN: walk OUT: I_WALK\n" + line + "\n")
    with pytest.raises(ValueError, match=f"bad.txt:2: {problem}"):
        scan.read_examples(path)


def test_encode_and_decode_round_trip():
    source, target = scan.encode(ALL)
    assert source.shape == (20910, 9) and target.shape == (20910, 50)
    assert (target[:, 0] == scan.BOS).all()
    assert scan.decode(target) == [e.actions for e in ALL]
