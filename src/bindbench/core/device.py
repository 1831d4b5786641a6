"""Device and thread handling."""

from __future__ import annotations

import ctypes
import os
import time

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


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    return next(iter(model.parameters()), torch.empty(0)).device


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def choose_threads(cores: int, busy: float, workers: int = 1) -> int:
    """Threads per worker: the cores other processes leave free, shared between `workers`.

    `busy` is how many cores other processes keep busy. Two threads spin-waiting on a core
    another process holds run several times slower than one thread alone, so a busy core
    is never counted as ours; every worker keeps at least one thread.
    """
    free = cores - round(busy)
    return max(1, free // max(1, workers))


def _cpu_times() -> tuple[float, float] | None:
    """(all jiffies, idle + iowait jiffies) of the machine since boot, or None off Linux."""
    try:
        with open("/proc/stat") as stat:
            fields = [float(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields[:8]), fields[3] + fields[4]  # without guest time, counted in user


def busy_by_others(
    before: tuple[float, float],
    after: tuple[float, float],
    own_seconds: float,
    wall_seconds: float,
    cores: int,
) -> float:
    """Cores other processes kept busy between two `/proc/stat` readings (jiffies: total, idle)
    while this process used `own_seconds` of CPU in `wall_seconds`."""
    total, idle = after[0] - before[0], after[1] - before[1]
    if total <= 0 or wall_seconds <= 0:
        return 0.0
    busy_cores = cores * (total - idle) / total
    return max(0.0, busy_cores - own_seconds / wall_seconds)


def others_busy(interval: float = 0.25) -> float:
    """Cores other processes keep busy now, measured over `interval` seconds (0 if unknown)."""
    before = _cpu_times()
    if before is None:
        return 0.0
    own, start = _own_cpu(), time.perf_counter()
    time.sleep(interval)
    after = _cpu_times()
    if after is None:
        return 0.0
    wall = time.perf_counter() - start
    return busy_by_others(before, after, _own_cpu() - own, wall, os.cpu_count() or 1)


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def threads_per_worker(workers: int, busy: float | None = None) -> int:
    """`choose_threads` for this machine, measuring what other processes use unless `busy` is given."""
    cores = os.cpu_count() or 1
    return choose_threads(cores, others_busy() if busy is None else busy, workers)


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(keep: bool = True) -> bool:
    """Lets glibc's malloc reuse the memory a training step frees instead of returning it.

    By default a freed buffer over 128 KiB goes back to the kernel, and the next step's
    buffers of that size are fresh pages that fault in and are zeroed one by one: about
    1,600 page faults per step for an MLP of width 256 on 2,048 rows (BENCHMARKS.md).
    Afterwards buffers up to 32 MiB (glibc's largest threshold) come from the heap and up
    to 1 GiB of freed heap is kept. `keep=False` sets glibc's initial thresholds back
    (128 KiB, without its adaptation) and returns the free heap: what `bench` compares
    against. Process-wide; returns whether malloc took it (False off glibc).
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mapped = mallopt(_M_MMAP_THRESHOLD, 32 << 20 if keep else 128 << 10)
    trimmed = mallopt(_M_TRIM_THRESHOLD, 1 << 30 if keep else 128 << 10)
    if not keep:
        libc.malloc_trim(0)
    return bool(mapped and trimmed)


def use_cpu(threads: int) -> None:
    """Sets this process up to train on the CPU: `threads` torch threads, freed memory kept."""
    torch.set_num_threads(threads)
    keep_freed_memory()
