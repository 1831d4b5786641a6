"""A user's own model in the experiments (`model.factory`): trained, checked, kept apart."""

import json
import math
import textwrap

import pytest
import torch
from torch import nn

import bindbench
from bindbench.cli import main
from bindbench.core.config import spec_json, varying
from bindbench.core.registry import EXPERIMENTS
from bindbench.core.store import Store
from bindbench.tasks.scan import SOURCE_VOCAB, TARGET_VOCAB


class GatedMLP(nn.Module):
    """A model BindBench does not have: a gated hidden layer with BatchNorm (the user's own)."""

    def __init__(self, input_dim: int, output_dim: int, width: int = 12):
        super().__init__()
        self.value, self.gate = nn.Linear(input_dim, width), nn.Linear(input_dim, width)
        self.norm = nn.BatchNorm1d(width)
        self.readout = nn.Linear(width, output_dim)

    def forward(self, x):
        h = torch.relu(self.value(x)) * torch.sigmoid(self.gate(x))
        flat = self.norm(h.reshape(-1, h.shape[-1])).reshape(h.shape)  # any leading axes
        return self.readout(flat)


class PixelMixture(nn.Module):
    """An autoencoder of the user's: per-pixel slot masks from a 1 x 1 convolution, one colour per slot."""

    def __init__(self, resolution: int, num_slots: int, slot_dim: int):
        super().__init__()
        self.logits = nn.Conv2d(3, num_slots, 1)
        self.rgb = nn.Parameter(torch.rand(num_slots, 3))

    def forward(self, images):
        masks = self.logits(images).softmax(1)  # (b, k, h, w)
        return {"reconstruction": torch.einsum("bkhw,kc->bchw", masks, self.rgb), "masks": masks}


class GRUDecoder(nn.Module):
    """A sequence model of the user's for SCAN: a GRU decoder started from the mean of the
    command's embeddings (causal: position t reads the target tokens up to t)."""

    def __init__(self, source_vocab: int, target_vocab: int, hidden: int = 16):
        super().__init__()
        self.source = nn.Embedding(source_vocab, hidden, padding_idx=0)
        self.target = nn.Embedding(target_vocab, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.readout = nn.Linear(hidden, target_vocab)

    def forward(self, source, target_in):
        context = self.source(source).mean(1)  # (b, h)
        out, _ = self.gru(self.target(target_in), context[None].contiguous())
        return self.readout(out)


class CodeReader(nn.Module):
    """A readout of the user's for binding codes: a bilinear layer of code and query."""

    def __init__(self, code_dim: int, query_dim: int, answers: int):
        super().__init__()
        self.mix = nn.Bilinear(code_dim, query_dim, 32)
        self.readout = nn.Linear(32, answers)

    def forward(self, code, query):
        return self.readout(torch.relu(self.mix(code, query)))


class ImageReader(nn.Module):
    """A reader of the user's for binding images: a convolution, pooled, concatenated with the query."""

    def __init__(self, resolution: int, query_dim: int, answers: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 5, stride=4)
        self.readout = nn.Linear(8 + query_dim, answers)

    def forward(self, images, query):
        features = torch.relu(self.conv(images)).mean((2, 3))
        return self.readout(torch.cat([features, query], 1))


def wide_gated_mlp(input_dim: int, output_dim: int) -> GatedMLP:
    return GatedMLP(input_dim, output_dim, width=24)


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# fewer runs than the tiny profile's grid, where it has many (binding_codes: 19)
FEWER = {
    "binding_codes": {
        "code.kind": "slot",
        "code.readout": "linear",
        "code.role_dim": 16,
        "sets.min_objects": 2,
        "sets.max_objects": 2,
    }
}


def _tiny(name: str, **more) -> dict:
    return {**EXPERIMENTS[name].tiny, **FEWER.get(name, {}), **more}


@pytest.mark.parametrize(
    "name, factory, sizes, more",
    [
        ("composition", GatedMLP, {"input_dim": 6 + 16, "output_dim": 16}, {}),
        ("scaling", GatedMLP, {"input_dim": 6 + 16, "output_dim": 16}, {}),
        ("preferences", GatedMLP, {"input_dim": 7 * 7 * (4 + 2) + 6, "output_dim": 5}, {}),
        ("structure", GatedMLP, None, {"mask.include": ["value", "gate"]}),
        ("segregation", PixelMixture, None, {}),
        ("neurons", GatedMLP, None, {}),
        ("scan", GRUDecoder, {"source_vocab": len(SOURCE_VOCAB), "target_vocab": len(TARGET_VOCAB)}, {}),
        ("binding_codes", CodeReader, None, {}),
        ("binding_images", ImageReader, None, {}),
    ],
)
def test_a_users_module_trains_through_the_experiment_and_gets_metrics(tmp_path, name, factory, sizes, more):
    folder = bindbench.run(
        name, sets={**_tiny(name, **more), "model.factory": factory}, out=tmp_path / "out", quiet=True
    )
    runs = Store(folder, create=False).runs()  # scaling: its controls too
    assert runs and all(r["status"] == "done" for r in runs), [r.get("error") for r in runs]
    run = runs[0]
    assert run["spec"]["model"]["factory"] == f"{__name__}:{factory.__name__}"
    headline = {"structure": "base_accuracy", "neurons": "best_ood_r2"}.get(
        name, EXPERIMENTS[name].metrics[0]
    )
    assert math.isfinite(run["metrics"][headline])
    if name != "neurons":  # (a search over widths keeps no model) the trained module is kept
        kept = bindbench.load_model(folder, run["id"])
        assert isinstance(getattr(kept, "own", kept), factory)
        if sizes is not None:  # at the sizes the docs give
            assert parameters(kept) == parameters(factory(**sizes))
    if name in ("scaling", "preferences"):  # the probes read every Linear of the user's model
        assert {"decodability_ood_value", "decodability_ood_gate", "decodability_ood_readout"} <= set(
            run["metrics"]
        )


def _cli(capsys, tmp_path, monkeypatch, module: str, source: str, *argv) -> tuple[int, str]:
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    code = main(["run", *argv, "--out", str(tmp_path / "out")])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "experiment, source, words",
    [
        (
            "composition",
            "def build(input_dim, output_dim):\n    return nn.Linear(input_dim, output_dim + 1)",
            ["(2, 16, 17), not (2, 16, 16)", "(batch, samples, input_dim) -> (batch, samples, output_dim)"],
        ),
        (
            "structure",
            "def build(input_dim, output_dim):\n    return nn.Linear(input_dim + 1, output_dim)",
            ["(batch, input_dim) -> (batch, output_dim)", "RuntimeError"],
        ),
        (
            "segregation",
            "def build(resolution, num_slots, slot_dim):\n    return nn.Conv2d(3, 3, 1)",
            ["no reconstruction or masks", ".masks (batch, slots, h, w)"],
        ),
        (
            "scan",
            "class Peek(nn.Module):\n"
            "    def __init__(self, target_vocab):\n"
            "        super().__init__()\n"
            "        self.embed = nn.Embedding(target_vocab, target_vocab)\n"
            "    def forward(self, source, target_in):\n"
            "        return self.embed(target_in) + self.embed(target_in).mean(1, keepdim=True)\n"
            "def build(source_vocab, target_vocab):\n    return Peek(target_vocab)",
            ["the decoder must be causal"],
        ),
        (
            "scan",
            "def build(source_vocab, target_vocab):\n    return nn.Embedding(source_vocab, target_vocab)",
            ["(batch, source_len), (batch, target_len) -> (batch, target_len, target_vocab)", "TypeError"],
        ),
        (
            "binding_codes",
            "def build(code_dim, query_dim, answers):\n"
            "    return nn.Bilinear(code_dim, query_dim, answers + 1)",
            ["not (2, ", "(batch, code_dim), (batch, query_dim) -> (batch, answers)"],
        ),
        (
            "binding_images",
            "def build(resolution, query_dim, answers):\n    return nn.Linear(resolution, answers)",
            ["(batch, 3, resolution, resolution), (batch, query_dim) -> (batch, answers)", "TypeError"],
        ),
        (
            "neurons",
            "def build(input_dim, output_dim):\n    return nn.Linear(input_dim, output_dim)",
            ["width=16", "TypeError"],
        ),
        ("composition", "def build(width):\n    return nn.Linear(width, width)", ["input_dim=", "TypeError"]),
        ("composition", "def build(input_dim, output_dim):\n    return 3", ["returned a int", "nn.Module"]),
        ("composition", "build = 3", ["build is a int, not a callable"]),
    ],
)
def test_a_model_that_does_not_fit_exits_2_with_one_line(
    capsys, tmp_path, monkeypatch, experiment, source, words
):
    module = f"users_model_{abs(hash(source))}"  # a module of its own per case
    code, err = _cli(
        capsys,
        tmp_path,
        monkeypatch,
        module,
        "from torch import nn\n" + source,
        experiment,
        "--set",
        f"model.factory={module}:build",
    )
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "value, words",
    [
        ("no_such_module_here:build", ["cannot import no_such_module_here"]),
        ("oops", ["package.module:callable"]),
    ],
)
def test_a_factory_that_cannot_be_found_exits_2_with_one_line(capsys, tmp_path, monkeypatch, value, words):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "composition", "--set", f"model.factory={value}", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err


def test_the_run_id_includes_the_factory_and_runs_without_one_keep_their_ids():
    def ids(sets):
        return [
            job.run_id for job in bindbench.plan("composition", sets={**_tiny("composition"), **sets}).jobs
        ]

    (mine,), (other,), (reference,) = (
        ids({"model.factory": GatedMLP}),
        ids({"model.factory": wide_gated_mlp}),
        ids({}),
    )
    assert len({mine, other, reference}) == 3
    # the key is left out of the spec while unset, so ids made before it existed still hold
    (job,) = bindbench.plan("composition", sets=_tiny("composition")).jobs
    assert "factory" not in spec_json(job.spec)


def test_a_profiles_sweep_over_the_reference_models_keys_is_one_run_of_the_users_model():
    assert len(bindbench.plan("composition").jobs) == 5  # quick: five widths of the MLP
    (job,) = bindbench.plan("composition", sets={"model.factory": GatedMLP}).jobs
    assert job.spec.model.width == type(job.spec.model)().width  # left at its default
    # structure's init (trained or the random control) and pretraining objectives are the
    # experiment's own, kept: three starts of the trained model and one untrained control
    jobs = bindbench.plan(
        "structure",
        sets={"model.factory": GatedMLP, "mask.include": ["gate"], "model.init": ["trained", "random"]},
    ).jobs
    assert sorted((j.spec.model.init, j.spec.pretrain.objective) for j in jobs) == [
        ("random", "none"),
        ("trained", "none"),
        ("trained", "related_task"),
        ("trained", "self_supervised"),
    ]


def test_a_users_run_stores_no_reference_keys_and_they_tell_no_runs_apart():
    (mine,) = bindbench.plan("composition", sets={**_tiny("composition"), "model.factory": GatedMLP}).jobs
    (reference,) = bindbench.plan("composition", sets=_tiny("composition")).jobs
    stored = json.loads(spec_json(mine.spec))
    assert stored["model"] == {"factory": f"{__name__}:GatedMLP"}  # no width the run never had
    assert type(mine.spec).model_validate(stored) == mine.spec  # and it rebuilds the same spec
    specs = [json.loads(spec_json(job.spec)) for job in (mine, reference)]
    assert varying(specs) == ["model.factory"]  # the reference's width=8 does not vary against it


@pytest.mark.parametrize(
    "name, factory, more",
    [
        ("composition", GatedMLP, {}),
        ("scaling", GatedMLP, {}),
        ("structure", GatedMLP, {"mask.include": ["value", "gate"]}),
        ("segregation", PixelMixture, {}),
        ("neurons", GatedMLP, {}),
        ("scan", GRUDecoder, {}),
        ("binding_codes", CodeReader, {}),
        ("binding_images", ImageReader, {}),
    ],
)
def test_a_folder_with_the_reference_and_a_users_model_gets_one_report_naming_both(
    tmp_path, name, factory, more
):
    bindbench.run(name, sets=_tiny(name), out=tmp_path, quiet=True)
    folder = bindbench.run(
        name, sets={**_tiny(name, **more), "model.factory": factory}, out=tmp_path, quiet=True
    )  # builds the report over both
    (report,) = json.loads((folder / "report.json").read_text())["experiments"]
    assert "model.factory" in report["swept"]
    column = report["columns"].index("model.factory")
    assert sorted(map(str, {row[column] for row in report["rows"]})) == [
        "None",
        f"{__name__}:{factory.__name__}",
    ]
    if name != "structure":  # the reference's own sweep and the factory: no width or kind it never had
        reference = [json.loads(spec_json(job.spec)) for job in bindbench.plan(name, sets=_tiny(name)).jobs]
        assert set(report["swept"]) <= {*varying(reference), "model.factory"}
    assert f"{__name__}:{factory.__name__}" in (folder / "report.html").read_text()


def test_the_readme_examples_model_fits_composition_and_structure(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "docs" / "examples"))
    sets = {"model.factory": "gated_mlp:GatedMLP"}
    assert len(bindbench.plan("composition", sets=sets).jobs) == 1  # checked on an example batch
    assert bindbench.plan("structure", sets={**sets, "mask.include": ["value", "gate"]}).jobs


def test_segregation_keeps_the_users_autoencoder_behind_its_adapter(tmp_path):
    folder = bindbench.run(
        "segregation", sets={**_tiny("segregation"), "model.factory": PixelMixture}, out=tmp_path, quiet=True
    )
    (run,) = Store(folder, create=False).runs()
    model = bindbench.load_model(folder, run["id"])
    assert isinstance(model.own, PixelMixture) and not model.own.training
    out = model(torch.rand(2, 3, 16, 16))
    assert out.masks.shape == (2, 4, 16, 16) and torch.allclose(out.masks.sum(1), torch.ones(2, 16, 16))
