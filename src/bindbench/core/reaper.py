"""Ends what a driver's local Ray instance leaves behind when the driver dies (Linux).

Ray ties its daemons to the driver that started them, but the agents its raylet starts
(`ray::DashboardAgent`, `ray::RuntimeEnvAgent`) outlive a kill -9 of the driver, idle and
holding memory. `python -m bindbench.core.reaper <driver pid>`, started by the driver after
`ray.init`, notes the driver's descendants every half second and, once the driver is gone,
kills those still alive. The driver stops it on a normal exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

INTERVAL_S = 0.5


def start(driver: int) -> subprocess.Popen | None:
    """Starts the reaper for `driver` (this process); None where there is no /proc."""
    if not os.path.isdir("/proc/self"):
        return None
    return subprocess.Popen(
        [sys.executable, "-m", "bindbench.core.reaper", str(driver)], start_new_session=True
    )


def _processes() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, start time)} of every live process (zombies left out), from /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                found[int(entry)] = (int(fields[1]), fields[19])  # ppid, starttime (in clock ticks)
    return found


def descendants(root: int, processes: dict[int, tuple[int, str]]) -> dict[int, str]:
    """{pid: start time} of every process below `root`."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    below, stack = {}, [root]
    while stack:
        for pid in children.get(stack.pop(), []):
            below[pid] = processes[pid][1]
            stack.append(pid)
    return below


def watch(driver: int) -> None:
    """Notes `driver`'s descendants while it lives; then kills those still alive."""
    processes = _processes()
    born = processes.get(driver, (0, None))[1]
    seen: dict[int, str] = {}
    while born is not None and processes.get(driver, (0, None))[1] == born:
        seen.update(descendants(driver, processes))
        time.sleep(INTERVAL_S)
        processes = _processes()
    seen.pop(os.getpid(), None)
    for pid, started in seen.items():
        if processes.get(pid, (0, None))[1] == started:  # the same process, not a reused pid
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    watch(int(sys.argv[1]))
