import subprocess
import sys

import pytest
import torch

from bindbench.core import device
from bindbench.core.config import SpecError
from bindbench.core.device import (
    busy_by_others,
    choose_threads,
    others_busy,
    resolve_device,
    threads_per_worker,
)


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
    assert [threads_per_worker(n, busy=0.0) for n in (1, 2, 3, 16)] == [8, 4, 2, 1]


@pytest.mark.parametrize(
    "cores, busy, workers, threads",
    [
        (2, 0.05, 1, 2),  # an idle machine: every core
        (2, 1.0, 1, 1),  # one core taken by another process: never two threads on it
        (2, 0.9, 2, 1),
        (2, 2.0, 1, 1),  # a full machine still gets one thread
        (16, 3.4, 2, 6),  # 13 free cores between two workers
        (16, 3.6, 1, 12),
        (8, 0.0, 3, 2),
    ],
)
def test_threads_are_the_free_cores_shared_between_workers(cores, busy, workers, threads):
    assert choose_threads(cores, busy, workers) == threads


def test_busy_cores_of_others_leave_out_this_process():
    # 4 cores over 1 s = 400 jiffies at 100 Hz; 100 idle -> 3 cores busy, 0.5 of them ours
    assert busy_by_others((1000, 500), (1400, 600), own_seconds=0.5, wall_seconds=1.0, cores=4) == 2.5
    assert busy_by_others((1000, 500), (1400, 700), own_seconds=0.5, wall_seconds=1.0, cores=4) == 1.5
    assert busy_by_others((1000, 500), (1400, 900), own_seconds=2.0, wall_seconds=1.0, cores=4) == 0.0
    assert busy_by_others((1000, 500), (1000, 500), own_seconds=0.0, wall_seconds=1.0, cores=4) == 0.0


def test_others_busy_reads_the_machine_and_this_process_over_the_interval(monkeypatch):
    readings = iter([(1000.0, 500.0), (1200.0, 550.0)])  # 150 of 200 jiffies busy on 2 cores
    own = iter([10.0, 10.25])
    monkeypatch.setattr(device, "_cpu_times", lambda: next(readings))
    monkeypatch.setattr(device, "_own_cpu", lambda: next(own))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    busy = others_busy(0.01)  # 1.5 cores busy, 0.25 / 0.01 s of them ours: nobody else
    assert busy == 0.0
    readings = iter([(1000.0, 500.0), (1200.0, 550.0)])
    own = iter([10.0, 10.0])
    assert 1.0 < others_busy(0.01) <= 1.5  # the wall time is a little over the interval
    monkeypatch.setattr(device, "_cpu_times", lambda: None)
    assert others_busy(0.01) == 0.0  # no /proc/stat: nothing known to be busy


_FAULTS = """
import resource, sys, torch
from bindbench.core.device import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def step():  # like a training step's activations: buffers of several MiB alive, then freed
    alive = [torch.ones(1024 * (i + 1), 1024) for i in range(4)]  # 4, 8, 12 and 16 MiB
    return float(sum(t.sum() for t in alive))
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and getrusage's faults")
def test_keep_freed_memory_stops_page_faults_on_reused_buffers():
    """By default the freed buffers go back to the kernel and fault in again at the next step."""

    def faults(mode: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True
        )
        return int(done.stdout.split()[-1])

    default, kept = faults("default"), faults("keep")
    # 20 steps of 10,240 pages each: by default most fault in again (glibc's own adaptive
    # threshold keeps some in some processes); kept, only the first step's growth faults
    assert kept < 20 * 10240 / 10
    assert kept * 2 < default
