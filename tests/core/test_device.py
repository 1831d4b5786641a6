import pytest
import torch

from bindbench.core.config import SpecError
from bindbench.core.device import resolve_device, threads_per_worker


def test_cuda_without_a_gpu_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SpecError, match="no CUDA device") as info:
        resolve_device("cuda")
    assert "\n" not in str(info.value)
    assert resolve_device("auto") == torch.device("cpu")


def test_unknown_devices_are_refused_and_threads_are_shared_between_workers(monkeypatch):
    with pytest.raises(SpecError, match="allowed are cpu, cuda"):
        resolve_device("tpu")
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert [threads_per_worker(n) for n in (1, 2, 3, 16)] == [8, 4, 2, 1]
