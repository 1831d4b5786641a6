"""Device and thread handling."""

from __future__ import annotations

import os

import torch

from bindbench.core.config import SpecError


def resolve_device(name: str) -> torch.device:
    """Returns the torch device for `cpu`, `cuda`, `cuda:N` or `auto`, or a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SpecError(f"--device {name}: no CUDA device is available here (use --device cpu)")
        return torch.device(name)
    raise SpecError(f"--device {name!r}: allowed are cpu, cuda, cuda:N, auto")


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def threads_per_worker(workers: int) -> int:
    """Splits the machine's cores between `workers` processes (at least one thread each)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))
