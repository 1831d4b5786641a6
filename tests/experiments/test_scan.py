import pytest
import torch

from bindbench.cli import main
from bindbench.core.config import SpecError
from bindbench.core.plan import make_plan
from bindbench.core.worker import RunContext
from bindbench.experiments.scan import ScanSpec, accuracy_plot, run
from bindbench.models import LSTMSeq2Seq
from bindbench.models.seq2seq import by_target_length, greedy_score, sequence_loss
from bindbench.tasks import scan

TINY_SCAN = [
    "model.d_model=16",
    "model.layers=1",
    "model.heads=2",
    "model.ff=16",
    "train.steps=20",
    "train.batch_size=8",
    "train.eval_every=10",
    "train.warmup_steps=0",
    "eval_subset=16",
]


class Oracle(torch.nn.Module):
    """Decodes the right answer for known commands (or one fixed wrong token)."""

    def __init__(self, source, target, wrong_rows=()):
        super().__init__()
        self.answers = {tuple(s[s != 0].tolist()): t for s, t in zip(source, target)}
        self.wrong = {tuple(source[i][source[i] != 0].tolist()) for i in wrong_rows}

    def greedy(self, source, max_len):
        rows = []
        for s in source:
            key = tuple(s[s != 0].tolist())
            answer = self.answers[key].clone()
            if key in self.wrong:
                answer[1] = 3 if answer[1] != 3 else 4  # another action
            rows.append(answer[: max_len + 1])
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)

    pad = 0


def test_score_counts_exact_matches_and_tokens_by_hand():
    examples = [scan.Example("walk", "I_WALK"), scan.Example("jump twice", "I_JUMP I_JUMP")]
    source, target = scan.encode(examples)
    perfect = greedy_score(Oracle(source, target), source, target)
    assert perfect["exact"].tolist() == [True, True] and perfect["token_accuracy"] == 1.0
    one_wrong = greedy_score(Oracle(source, target, wrong_rows=[1]), source, target)
    assert one_wrong["exact"].tolist() == [True, False]
    assert one_wrong["token_accuracy"] == pytest.approx(4 / 5)  # 5 target tokens with <eos>


def test_a_training_step_reduces_the_loss():
    torch.manual_seed(0)
    source, target = scan.encode(scan.make_split("simple").train[:32])
    model = LSTMSeq2Seq(len(scan.SOURCE_VOCAB), len(scan.TARGET_VOCAB), hidden=32, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    before = sequence_loss(model, (source, target))
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    assert sequence_loss(model, (source, target)) < before


def test_length_groups_give_the_loss_of_the_whole_padded_batch():
    torch.manual_seed(0)
    source, target = scan.encode(scan.make_split("length").test[::97])  # lengths 24..48
    model = LSTMSeq2Seq(len(scan.SOURCE_VOCAB), len(scan.TARGET_VOCAB), hidden=16).eval()
    groups = by_target_length(source, target, 3)
    assert len(groups) == 3 and sum(len(s) for s, _ in groups) == len(source)
    assert groups[0][1].shape[1] < target.shape[1]  # the short group carries less padding
    torch.testing.assert_close(sequence_loss(model, groups), sequence_loss(model, (source, target)))


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_a_run_scores_the_whole_test_set_and_is_deterministic(kind):
    sets = [*TINY_SCAN, "split=template_jump_around_right", f"model.kind={kind}"]
    spec = make_plan("scan", sets=sets).jobs[0].spec
    first = run(spec, RunContext(torch.device("cpu")))
    second = run(spec, RunContext(torch.device("cpu")))
    assert first.metrics == {**second.metrics, "seconds_training": first.metrics["seconds_training"]}
    assert first.metrics["test_commands"] == 1173
    assert [p["step"] for p in first.curve] == [10, 20]
    assert 0.0 <= first.metrics["exact_match"] <= first.metrics["token_accuracy"] <= 1.0
    lengths = {str(len(e.actions.split())) for e in scan.make_split("template_jump_around_right").test}
    assert set(first.extra["exact_by_length"]) == lengths


@pytest.mark.parametrize(
    "sets, message",
    [
        (["split=mcd1"], "split='mcd1' is not a SCAN split"),
        (
            ["model.kind=transformer", "model.d_model=30", "model.heads=4"],
            "model.d_model=30 must be a multiple of model.heads=4",
        ),
        (
            ["from_file=/nonexistent", "split=mcd1"],
            "from_file: /nonexistent/tasks_train_mcd1.txt does not exist",
        ),
    ],
)
def test_bad_specs_are_one_line_errors(sets, message):
    with pytest.raises(SpecError, match=message) as error:
        make_plan("scan", sets=sets)
    assert str(error.value).startswith(message.split("=")[0])


def test_runs_on_files_it_wrote_and_rejects_a_malformed_one(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["data", "scan", "--split", "addprim_jump", "--out", str(data)]) == 0
    spec = make_plan("scan", sets=[*TINY_SCAN, f"from_file={data}", "split=addprim_jump"]).jobs[0].spec
    assert isinstance(spec, ScanSpec)
    result = run(spec, RunContext(torch.device("cpu")))
    assert result.metrics["test_commands"] == 7706
    bad = data / "tasks_test_addprim_jump.txt"
    bad.write_text(bad.read_text() + "IN: walk OUT: I_FLY\n")
    code = main(
        [
            "run",
            "scan",
            "--set",
            f"from_file={data}",
            "--set",
            "split=addprim_jump",
            "--out",
            str(tmp_path / "runs"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        code == 2 and len(err) == 1 and "tasks_test_addprim_jump.txt:7707: unknown action 'I_FLY'" in err[0]
    )
    assert not (tmp_path / "runs").exists()


def test_accuracy_plot_puts_seeds_beside_the_published_figure():
    runs = [
        {
            "status": "done",
            "spec": {"split": split, "model": {"kind": "lstm"}, "seed": seed},
            "metrics": {"exact_match": value},
            "extra": {},
        }
        for split, seed, value in [("simple", 0, 0.98), ("simple", 1, 1.0), ("addprim_jump", 0, 0.01)]
    ]
    plot = accuracy_plot(runs)
    rows = {r["split"]: r for r in plot.data["rows"]}
    assert rows["simple"]["mean"] == pytest.approx(99.0) and rows["simple"]["seeds"] == [98.0, 100.0]
    assert rows["simple"]["std"] == pytest.approx(1.0)
    assert rows["addprim_jump"]["reference"] == 0.08
    assert [row[:4] for row in plot.table["rows"]] == [
        ["simple", "lstm", "99.00 ± 1.00", "98.00, 100.00"],
        ["addprim_jump", "lstm", "1.00", "1.00"],  # one seed: no spread shown
    ]


def test_quick_scan_joins_the_default_suite():
    jobs = [j for j in make_plan().jobs if j.experiment.name == "scan"]
    assert {j.spec.split for j in jobs} == {"simple", "addprim_jump", "length"}


def test_a_changed_data_file_is_a_new_run_not_a_finished_one(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["data", "scan", "--split", "addprim_jump", "--out", str(data)]) == 0
    sets = [*TINY_SCAN, f"from_file={data}", "split=addprim_jump"]
    first = make_plan("scan", sets=sets).jobs[0]
    assert make_plan("scan", sets=sets).jobs[0].run_id == first.run_id  # same files, same run
    test_file = data / "tasks_test_addprim_jump.txt"
    lines = test_file.read_text().splitlines(keepends=True)
    test_file.write_text("".join(lines[:2]))  # 7,706 test commands -> 2, same folder
    second = make_plan("scan", sets=sets).jobs[0]
    assert second.run_id != first.run_id and second.spec.files_sha256 != first.spec.files_sha256
    test_file.write_text("".join(lines[:3]))  # and changed again after planning: refused
    with pytest.raises(ValueError, match="changed since the run was planned"):
        run(second.spec, RunContext(torch.device("cpu")))
