"""Trained models kept beside the store, as safetensors: weights only, never a pickle.

A finished run's model is written to `<folder>/models/<run id>.safetensors` with the run's
experiment, id and spec in the file's metadata; `load(folder, run_id)` (behind
`bindbench.load_model`) rebuilds the architecture from that spec (the experiment's
`make_model`, a user's `model.factory` too) and loads the weights into it. safetensors
files hold a JSON header and raw tensor bytes, so reading one runs no code; a file that is
not one (a `torch.save` pickle renamed) is refused with one line.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from bindbench.core.errors import SpecError

FOLDER = "models"
FORMAT = "bindbench-checkpoint-1"
# models kept by default: up to this many bytes of weights (25 M float32 numbers; the paper
# profile's largest MLP is 13 M); `--save-models` keeps every one, `--no-save-models` none
DEFAULT_MAX_BYTES = 100 * 2**20


def size(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def encode(model: torch.nn.Module, experiment: str, run_id: str, spec_json: str) -> bytes:
    """The model's state (parameters and buffers, on the CPU) as a safetensors file's bytes."""
    from safetensors.torch import save

    # own copies: safetensors refuses tensors that share memory (tied weights, views)
    state = {name: t.detach().to("cpu").clone().contiguous() for name, t in model.state_dict().items()}
    metadata = {"format": FORMAT, "experiment": experiment, "run_id": run_id, "spec": spec_json}
    return save(state, metadata=metadata)


def path(folder: str | Path, run_id: str) -> Path:
    return Path(folder) / FOLDER / f"{run_id}.safetensors"


def write(folder: str | Path, run_id: str, data: bytes) -> Path:
    """Writes a checkpoint whole or not at all (a temporary name, then a rename)."""
    target = path(folder, run_id)
    target.parent.mkdir(exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def read(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a checkpoint; one line if it is not a safetensors file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt") as opened:
            metadata = opened.metadata() or {}
            tensors = {name: opened.get_tensor(name) for name in opened.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise SpecError(f"{file} is not a safetensors checkpoint ({err}); it is not read") from None
    if metadata.get("format") != FORMAT:
        raise SpecError(f"{file} is a safetensors file but not a BindBench checkpoint (no {FORMAT!r} in it)")
    return tensors, metadata


def load(folder: str | Path, run_id: str) -> torch.nn.Module:
    """A finished run's trained model in eval mode on the CPU (`bindbench.load_model`, which
    registers the experiments first: core looks them up by name only)."""
    from bindbench.core.registry import get_experiment
    from bindbench.core.store import Store

    with Store(folder, create=False) as store:
        run = _find(store.runs(), run_id, folder)
    experiment = get_experiment(run["experiment"])
    if experiment.make_model is None:
        raise SpecError(f"experiment {experiment.name} keeps no model (it trains many per run, or none)")
    file = path(folder, run["id"])
    if not file.exists():
        raise SpecError(
            f"run {run['id']} has no checkpoint at {file}: it ran with --no-save-models, before"
            f" checkpoints were kept, or its model was over {DEFAULT_MAX_BYTES // 2**20} MB"
            " (rerun it with --save-models)"
        )
    tensors, metadata = read(file)
    if metadata.get("run_id") != run["id"]:
        raise SpecError(f"{file} holds run {metadata.get('run_id')}, not {run['id']}")
    spec = experiment.spec.model_validate(run["spec"])
    with torch.device("cpu"):
        model = experiment.make_model(spec)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise SpecError(f"{file} does not fit the model its spec builds: {first}") from None
    return model.eval()


def _find(runs: list[dict], run_id: str, folder) -> dict:
    matches = [r for r in runs if r["id"].startswith(run_id)] if run_id else []
    if len(matches) != 1:
        what = "no run" if not matches else f"{len(matches)} runs"
        raise SpecError(f"{folder}: {what} with id {run_id!r}")
    if matches[0]["status"] != "done":
        raise SpecError(
            f"run {matches[0]['id']} is {matches[0]['status']}, not done: it has no trained model"
        )
    return matches[0]
