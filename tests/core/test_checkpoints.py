"""Trained models kept as safetensors beside the store, and `load_model`."""

import pickle

import pytest
import torch
from torch import nn

import bindbench
from bindbench.cli import main
from bindbench.core import checkpoints
from bindbench.core.config import SpecError
from bindbench.core.metrics import r2_score
from bindbench.core.registry import EXPERIMENTS
from bindbench.core.store import Store
from bindbench.experiments import structure
from bindbench.experiments.hyperteacher.setup import SPLITS, Setup


class Normed(nn.Module):
    """A user's model with buffers (BatchNorm's running statistics) that the checkpoint must keep."""

    def __init__(self, input_dim: int, output_dim: int):
        super().__init__()
        self.hidden, self.norm, self.readout = (
            nn.Linear(input_dim, 8),
            nn.BatchNorm1d(8),
            nn.Linear(8, output_dim),
        )

    def forward(self, x):
        h = self.hidden(x)
        return self.readout(torch.relu(self.norm(h.reshape(-1, 8)).reshape(h.shape)))


def _runs(folder) -> list[dict]:
    return Store(folder, create=False).runs()


def _composition(tmp_path, **sets):
    return bindbench.run(
        "composition", sets={**EXPERIMENTS["composition"].tiny, **sets}, out=tmp_path / "out", quiet=True
    )


@pytest.mark.parametrize(
    "sets",
    [{}, {"model.factory": Normed}, {"seed": [0, 1]}],  # the MLP, a user's model, an ensemble's members
    ids=["mlp", "users-model", "ensemble"],
)
def test_a_loaded_model_gives_the_runs_stored_evaluation(tmp_path, sets):
    folder = _composition(tmp_path, **sets)
    for run in _runs(folder):
        model = bindbench.load_model(folder, run["id"][:8])  # the short id the progress lines show
        assert not model.training
        spec = EXPERIMENTS["composition"].spec.model_validate(run["spec"])
        setup = Setup(spec, torch.device("cpu"))  # the run's own evaluation sets, rebuilt from its seed
        with torch.no_grad():
            for split in SPLITS:
                r2 = r2_score(model(setup.eval_inputs[split]), setup.eval_sets[split].y).item()
                assert r2 == pytest.approx(run["metrics"][f"{split}_r2"], abs=1e-6)
    if "seed" in sets:
        assert {r["extra"]["ensemble_size"] for r in _runs(folder)} == {2}


def test_a_loaded_structure_base_model_gives_the_stored_accuracy(tmp_path):
    sets = {**EXPERIMENTS["structure"].tiny, "model.init": "trained", "pretrain.objective": "none"}
    folder = bindbench.run("structure", sets=sets, out=tmp_path / "out", quiet=True)
    (run,) = _runs(folder)
    model = bindbench.load_model(folder, run["id"])
    spec = structure.StructureSpec.model_validate(run["spec"])
    task = structure.make_task(spec)
    accuracy = structure.accuracy(model, task, "task", "test", spec.eval_items)
    assert accuracy == pytest.approx(run["metrics"]["base_accuracy"], abs=1e-9)


def test_a_checkpoint_with_a_pickle_inside_is_refused_without_unpickling(tmp_path, monkeypatch):
    folder = _composition(tmp_path)
    (run,) = _runs(folder)
    file = checkpoints.path(folder, run["id"])
    model = bindbench.load_model(folder, run["id"])
    torch.save(model.state_dict(), file)  # a pickle where the safetensors file was

    def no_unpickling(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "Unpickler", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(SpecError, match="is not a safetensors checkpoint"):
        bindbench.load_model(folder, run["id"])
    file.write_bytes(b"\x80\x04K\x01.")  # pickle of the number 1
    with pytest.raises(SpecError, match="is not a safetensors checkpoint"):
        bindbench.load_model(folder, run["id"])


def test_a_safetensors_file_of_another_kind_or_shape_is_refused(tmp_path):
    from safetensors.torch import save_file

    folder = _composition(tmp_path)
    (run,) = _runs(folder)
    file = checkpoints.path(folder, run["id"])
    save_file({"x": torch.zeros(2)}, str(file))
    with pytest.raises(SpecError, match="not a BindBench checkpoint"):
        bindbench.load_model(folder, run["id"])
    other = checkpoints.encode(nn.Linear(2, 2), "composition", run["id"], "{}")
    file.write_bytes(other)
    with pytest.raises(SpecError, match="does not fit the model its spec builds"):
        bindbench.load_model(folder, run["id"])


def test_models_are_kept_under_the_size_limit_unless_told(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "DEFAULT_MAX_BYTES", 16)  # smaller than any model
    folder = _composition(tmp_path)
    (run,) = _runs(folder)
    assert not checkpoints.path(folder, run["id"]).exists()
    with pytest.raises(SpecError, match="--save-models"):
        bindbench.load_model(folder, run["id"])
    bindbench.run(
        "composition",
        sets={**EXPERIMENTS["composition"].tiny, "seed": 1},
        out=folder,
        quiet=True,
        save_models=True,
    )
    kept = {r["id"] for r in _runs(folder) if checkpoints.path(folder, r["id"]).exists()}
    assert kept == {r["id"] for r in _runs(folder) if r["spec"]["seed"] == 1}


def test_no_save_models_keeps_none_and_save_models_every_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = [w for k, v in EXPERIMENTS["composition"].tiny.items() for w in ("--set", f"{k}={v}")]
    assert main(["run", "composition", *tiny, "--out", "a", "--no-save-models", "--quiet"]) == 0
    assert not (tmp_path / "a" / "models").exists()
    assert main(["run", "composition", *tiny, "--out", "b", "--quiet"]) == 0
    assert len(list((tmp_path / "b" / "models").glob("*.safetensors"))) == 1


def test_load_model_names_the_problem_in_one_line(tmp_path):
    folder = _composition(tmp_path)
    with pytest.raises(SpecError, match="no run with id 'ffff'"):
        bindbench.load_model(folder, "ffff")
    with pytest.raises(SpecError, match="holds no run store"):
        bindbench.load_model(tmp_path / "nowhere", "ffff")
