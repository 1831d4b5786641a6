import csv
import json

import pyarrow.parquet as pq
import pytest

from bindbench.cli import main
from bindbench.core.config import Spec
from bindbench.core.registry import EXPERIMENTS, Experiment, RunResult, register


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["run", "--set", "model.widht=3"], ["model.widht", "allowed are"]),
        (["run", "--set", "model.width=abc"], ["model.width", "abc", "integer"]),
        (["run", "--set", "task.frac_ood=1.5"], ["task.frac_ood", "1.5", "less than 1"]),
        (["run", "--set", "model.width=[8, x]"], ["model.width", "x"]),
        (["run", "--set", "oops"], ["key=value"]),
        (["run", "no_such_experiment"], ["no_such_experiment", "composition"]),
        (["run", "--profile", "huge"], ["huge", "quick"]),
        (["run", "--device", "tpu"], ["tpu", "cpu"]),
        (["run", "--workers", "0"], ["workers"]),
        (
            ["run", "--set", "task.num_modules=4", "--set", "task.num_hot=1", "--set", "task.frac_ood=0.5"],
            ["compositional"],
        ),
        (["report", "/no/such/folder"], ["no run store"]),
        (["export", "/no/such/folder"], ["no run store"]),
        (["run", "missing.yaml"], ["missing.yaml", "does not exist"]),
        (["run", "--backend", "slurm"], ["slurm", "local, ray"]),
        (["run", "composition", "--out", "/dev/null/x"], ["/dev/null/x", "cannot make"]),
        (["run", "--backend", "ray", "--address", "127.0.0.1:1"], ["127.0.0.1:1", "no Ray cluster"]),
        (["run", "--backend", "ray", "--address", "nonsense"], ["nonsense", "host:port"]),
        (["run", "--backend", "ray", "--address", "host:notaport"], ["host:notaport", "host:port"]),
        (["run", "--backend", "ray", "--address", "auto"], ["--address auto", "no Ray cluster"]),
        (["run", "--set", "seed=1", "--set", "seed=2"], ["seed", "given twice", "seed=[a,b]"]),
        (["run", "--out", ""], ["--out", "is empty"]),  # it would be the working folder
        (["export", "--out", "", "x"], ["--out", "is empty"]),
        (["run", "--set", "model.width=yes"], ["model.width", '"yes"', "valid integer"]),  # YAML 1.1: true
        (["run", "--set", "model.width=true"], ["model.width=true", "boolean"]),  # pydantic: 1
        (["run", "--set", "seed=1:2:3"], ["seed", '"1:2:3"', "valid integer"]),  # YAML 1.1: 3723
        (["run", "--set", "train.lr=.inf"], ["train.lr", "finite number"]),
        (["run", "composition", "--set", "train.warmup_steps=2000"], ["warmup_steps=2000", "steps=2000"]),
        (
            ["data", "scenes", "--n", "2", "--out", "d", "--set", "max_objects=4", "--set", "max_objects=5"],
            ["max_objects", "twice"],
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(capsys, tmp_path, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err
    assert not any(tmp_path.iterdir())  # nothing written, here (the working folder) either


def test_run_then_report_and_export(capsys, tmp_path, tiny):
    out = tmp_path / "r"
    argv = ["run", "composition", "--out", str(out), "--quiet", "--seed", "4"]
    code, stdout, err = _run(capsys, *argv, *[w for s in tiny for w in ("--set", s)])
    assert code == 0, err
    assert f"{out / 'report.html'}" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["command"].startswith("bindbench run composition")

    assert _run(capsys, "report", str(out))[0] == 0
    assert _run(capsys, "export", str(out), "--format", "csv")[0] == 0
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == 1 and rows[0]["spec.seed"] == "4" and rows[0]["status"] == "done"
    assert (
        float(rows[0]["metrics.ood_r2"])
        == report["experiments"][0]["rows"][0][report["experiments"][0]["columns"].index("ood_r2")]
    )
    assert _run(capsys, "export", str(out), "--format", "parquet")[0] == 0
    table = pq.read_table(out / "runs.parquet").to_pylist()
    assert table[0]["metrics.ood_r2"] == float(rows[0]["metrics.ood_r2"])
    code, _, err = _run(capsys, "export", str(out), "--format", "xlsx")
    assert code == 2 and "csv" in err
    code, _, err = _run(capsys, "export", str(out), "--out", str(tmp_path / "nowhere" / "x.csv"))
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    before = sorted(tmp_path.iterdir())
    code, _, err = _run(capsys, "export", str(out), "--out", str(tmp_path))  # a folder, not a file
    assert code == 2 and "is a folder" in err and sorted(tmp_path.iterdir()) == before


def test_list_names_the_experiments_suites_and_profiles(capsys):
    code, out, _ = _run(capsys, "list")
    assert code == 0 and "composition" in out and "default" in out and "paper" in out


def test_list_of_a_suite_shows_each_of_its_experiments_keys_with_the_parents_defaults(capsys):
    code, out, _ = _run(capsys, "list", "representation")
    assert code == 0
    for name in ("binding_codes", "binding_images", "slot_probe"):
        assert name in out
    code, out, _ = _run(capsys, "list", "segregation")
    row = next(line for line in out.splitlines() if line.split()[:1] == ["train.lr"])
    assert "0.002" in row  # segregation's own default, not TrainSpec's 3e-4


def test_help_shows_flags_as_flags_and_sweeps_with_their_brackets(capsys):
    code, out, _ = _run(capsys, "run", "--help")
    assert code == 0
    assert "KEY=[a,b] sweeps" in out and "<bool>" not in out
    assert "-q, --quiet" in out


def test_version_prints_the_package_version(capsys):
    from bindbench import __version__

    assert _run(capsys, "--version")[:2] == (0, f"bindbench {__version__}\n")


def test_piped_list_never_cuts_a_key(capsys):
    from bindbench.core.config import describe_fields
    from bindbench.experiments.hyperteacher.scaling import ScalingSpec

    code, out, _ = _run(capsys, "list", "scaling")
    keys = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert code == 0 and {key for key, *_ in describe_fields(ScalingSpec)} <= keys


class _ExitSpec(Spec):
    seed: int = 0
    mode: str = "ok"


def _exit_run(spec: _ExitSpec, ctx) -> RunResult:
    if spec.mode == "boom":
        raise RuntimeError("deliberate failure")
    return RunResult(metrics={"score": 1.0}, diverged=spec.mode == "nan")


@pytest.mark.parametrize(
    "sets, code, line",
    [
        (["mode=ok", "seed=[0,1]"], 0, None),
        (["mode=boom", "seed=[0,1]"], 1, "bindbench: 2 failed of 2 runs in"),
        (["mode=[ok, boom, nan]"], 1, "bindbench: 1 failed, 1 diverged of 3 runs in"),
    ],
)
def test_run_exits_1_with_one_line_when_runs_fail_or_diverge(capsys, tmp_path, sets, code, line):
    if "exit_toy" not in EXPERIMENTS:
        register(Experiment("exit_toy", "toy", _ExitSpec, _exit_run, {"quick": {}}, metrics=("score",)))
    argv = ["run", "exit_toy", *(w for s in sets for w in ("--set", s)), "--out", str(tmp_path / "t"), "-q"]
    got, out, err = _run(capsys, *argv)
    assert got == code
    assert (tmp_path / "t" / "report.html").is_file()  # the report is written either way
    if line is None:
        assert err == ""
    else:
        assert err.strip().startswith(line) and "\n" not in err.strip()
    assert _run(capsys, *argv)[0] == code  # a rerun redoes the failed runs only, and says the same


def test_a_binary_spec_file_and_a_damaged_store_are_one_line_errors(capsys, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(bytes(range(256)))
    code, _, err = _run(capsys, "run", str(spec))
    assert code == 2 and err.strip().endswith(f"spec file {spec} is not text (UTF-8): is it the right file?")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "runs.db").write_bytes(b"")
    for command in ("report", "export"):
        code, _, err = _run(capsys, command, str(tmp_path / "store"))
        assert code == 2 and len(err.strip().splitlines()) == 1 and "is empty (0 bytes)" in err
