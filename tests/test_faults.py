"""Fault injection: what the store and executors promise under kill, interrupt, concurrent
commands, a full disk and corrupt files (the README's "Guarantees" names each test here).

Every driver here is a real `bindbench run` process; each test is bounded (a few seconds of
tiny training) and kills what it started.
"""

import ast
import json
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from bindbench.cli import INTERRUPTED, main
from bindbench.core import reaper
from bindbench.core.files import publish
from bindbench.core.reaper import descendants
from bindbench.core.store import Store

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, sends signals")

LONG = ["train.steps=1000000", "train.eval_every=1000000"]  # trains until stopped


def _argv(out, sets: list[str], *options: str) -> list[str]:
    args = [sys.executable, "-m", "bindbench", "run", "composition", "--out", str(out), "--quiet"]
    return [*args, "--no-ensemble", *options, *(w for s in sets for w in ("--set", s))]


def _sets(tiny: list[str], *more: str) -> list[str]:
    keep = [s for s in tiny if not s.startswith(("train.steps", "train.eval_every"))]
    return [*keep, *more]


def _children(pid: int) -> list[int]:
    """Every live process whose parent is `pid`."""
    return [child for child, (parent, _) in reaper._processes().items() if parent == pid]


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _statuses(out) -> dict[str, int]:
    with Store(out, create=False) as store:
        return store.counts()


def _training(driver: subprocess.Popen, workers: int) -> list[int]:
    """Waits until the driver's workers (and the pool's resource tracker) run; returns them."""
    deadline, found = time.time() + 120, []
    while time.time() < deadline and len(found) < workers + 1 and driver.poll() is None:
        time.sleep(0.2)
        found = _children(driver.pid)
    time.sleep(3)  # into training
    assert len(found) >= workers + 1 and all(_alive(p) for p in found), driver.poll()
    return found


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_killed_driver_leaves_no_process_and_a_stopped_one_no_row_running(tmp_path, tiny, how):
    """kill -9, SIGTERM or SIGINT (Ctrl-C) of a driver with --workers 2: no process of the run
    is alive 5 s later. SIGTERM and SIGINT also stop the workers at once (not after their runs),
    print the line, exit 128 + N, and give every lease back: no row is left `running`."""
    out = tmp_path / "r"
    args = _argv(out, _sets(tiny, *LONG, "seed=[0,1,2]"), "--workers", "2", "--threads", "1")
    driver = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    workers = _training(driver, 2)
    sent = time.time()
    driver.send_signal(how)
    _, err = driver.communicate(timeout=60)
    took = time.time() - sent
    time.sleep(5)
    left = [p for p in workers if _alive(p)]
    for p in left:  # do not leave them to the next test
        os.kill(p, signal.SIGKILL)
    assert left == []
    if how == signal.SIGKILL:
        assert _statuses(out).get("running") == 2  # two leases of a dead owner: taken over next time
        return
    assert took < 10, f"the driver took {took:.1f} s to stop"
    assert driver.returncode == 128 + how
    line = INTERRUPTED if how == signal.SIGINT else INTERRUPTED.replace("interrupted", "stopped by SIGTERM")
    assert err.strip().splitlines()[-1] == line
    assert _statuses(out) == {"pending": 3}


def test_a_killed_ray_driver_leaves_no_process_of_its_local_instance(tmp_path, tiny):
    """kill -9 of a driver running on its own local Ray instance: Ray's daemons, its agents
    (which Ray alone leaves running) and its workers are all gone 5 s later (core.reaper)."""
    pytest.importorskip("ray")
    out = tmp_path / "r"
    args = _argv(out, _sets(tiny, *LONG, "seed=[0,1]"), "--backend", "ray")
    driver = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, started = time.time() + 120, {}
    while time.time() < deadline and driver.poll() is None:
        started = descendants(driver.pid, reaper._processes())
        if sum(_name(p) == "ray::run_unit" for p in started) == 2:
            break
        time.sleep(0.5)
    names = sorted(_name(p) for p in started)
    assert "ray::DashboardAgent" in names and names.count("ray::run_unit") == 2, names
    driver.kill()
    driver.wait()
    time.sleep(5)
    left = [p for p in started if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert left == [], [_name(p) for p in left]


def _name(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline").read().split("\0")[0]
    except OSError:
        return ""


def test_a_dead_drivers_lease_is_taken_over_at_once_and_a_live_one_never(tmp_path, tiny):
    out = tmp_path / "r"
    driver = subprocess.Popen(_argv(out, _sets(tiny, *LONG), "--threads", "1"))
    deadline = time.time() + 120
    while time.time() < deadline and driver.poll() is None:  # its one run trains in the driver
        time.sleep(0.2)
        if (out / "runs.db").exists() and _statuses(out).get("running"):
            break
    with Store(out) as store:
        (held,) = [r["id"] for r in store.runs() if r["status"] == "running"]
        assert store.claim([held], "me 1 x", "cpu", {}) == []  # its owner is alive
        driver.kill()
        driver.wait()
        assert store.claim([held], "me 1 x", "cpu", {}) == [held]  # gone: no need to wait 60 s


def test_two_commands_on_one_folder_train_each_run_once_and_lose_nothing(tmp_path, tiny):
    out = tmp_path / "shared"
    sets = _sets(tiny, "train.steps=200", "train.eval_every=100", "seed=[0,1,2,3,4,5]")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    drivers = [
        subprocess.Popen(_argv(out, sets, "--threads", "1"), env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for driver in drivers:
        driver.communicate(timeout=300)
        assert driver.returncode == 0
    with Store(out, create=False) as store:
        runs = store.runs()
    assert len(runs) == 6 and {r["status"] for r in runs} == {"done"}
    assert [r["attempts"] for r in runs] == [1] * 6  # each trained once, by one of the two


def test_commands_starting_on_one_new_folder_at_once_share_one_whole_store(tmp_path):
    """Eight processes open the same new folder's store at one moment: none sees a half-made
    (0-byte) store, and every run each added is in the one store kept."""
    out, start = tmp_path / "new", time.time() + 4
    script = (
        "import sys, time; from bindbench.core.store import Store\n"
        "time.sleep(max(0, float(sys.argv[2]) - time.time()))\n"
        "with Store(sys.argv[1]) as store: store.add('run' + sys.argv[3], 'toy', '{}', 0)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(out), str(start), str(k)], stderr=subprocess.PIPE, text=True
        )
        for k in range(8)
    ]
    errors = [proc.communicate(timeout=60)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 8, errors
    with Store(out, create=False) as store:
        assert sorted(r["id"] for r in store.runs()) == [f"run{k}" for k in range(8)]
    assert _names(out) == ["runs.db", "runs.db-shm", "runs.db-wal"] or _names(out) == ["runs.db"]


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _pair(folder) -> tuple[str, str]:
    page = (folder / "report.html").read_text()
    return re.search(r"name='bindbench-build' content='([^']*)'", page)[1], json.loads(
        (folder / "report.json").read_text()
    )["build"]


def _files(build: str, size: int = 200_000) -> dict[str, str]:
    page = f"<meta name='bindbench-build' content='{build}'>" + "x" * size
    return {"report.json": json.dumps({"build": build, "pad": "y" * size}), "report.html": page}


@pytest.mark.parametrize("at", ["write", "swap"])
def test_an_interrupted_report_leaves_the_previous_pair_whole(tmp_path, monkeypatch, at):
    publish(tmp_path, _files("one"), "one")
    assert _pair(tmp_path) == ("one", "one")
    import bindbench.core.files as files

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if at == "write":
        monkeypatch.setattr(files.Path, "write_text", interrupt)
    else:
        monkeypatch.setattr(files, "_link", interrupt)
    with pytest.raises(KeyboardInterrupt):
        publish(tmp_path, _files("two"), "two")
    monkeypatch.undo()
    assert _pair(tmp_path) == ("one", "one")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".report",
        ".report-one",
        "report.html",
        "report.json",
    ]


def test_a_report_killed_at_any_moment_leaves_a_pair_of_one_build(tmp_path):
    """kill -9 of a process publishing report pairs in a loop, at 12 moments: each time the
    two files on disk are of one build; the next build cleans what the killed one left."""
    script = (
        "import sys, json; from bindbench.core.files import publish; from pathlib import Path\n"
        "sys.path.insert(0, sys.argv[2]); from test_faults import _files\n"
        "for k in range(10**6): publish(Path(sys.argv[1]), _files(str(k)), str(k))\n"
    )
    publish(tmp_path, _files("start"), "start")
    for moment in range(12):
        writer = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), os.path.dirname(__file__)])
        time.sleep(1.0 + 0.037 * moment)
        writer.kill()
        writer.wait()
        html, data = _pair(tmp_path)
        assert html == data, f"a mixed pair after a kill: html {html}, json {data}"
    publish(tmp_path, _files("end"), "end")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".report",
        ".report-end",
        "report.html",
        "report.json",
    ]


def _damaged(folder) -> None:
    with Store(folder) as store:
        for i in range(300):
            store.add(f"run{i:04d}", "composition", json.dumps({"seed": i, "pad": "x" * 200}), i)
    path = folder / "runs.db"
    data = bytearray(path.read_bytes())
    for k in (3, 5, 7):  # the b-tree headers of three pages
        data[k * 4096 : k * 4096 + 12] = b"\x0d\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["page", "empty"])
@pytest.mark.parametrize("command", ["run", "report", "export"])
def test_a_damaged_page_or_a_0_byte_store_is_exit_2_and_one_line(capsys, tmp_path, tiny, damage, command):
    folder = tmp_path / "r"
    if damage == "page":
        _damaged(folder)
    else:
        folder.mkdir()
        (folder / "runs.db").write_bytes(b"")
    before = (folder / "runs.db").read_bytes()
    argv = [command, "composition", "--out", str(folder)] if command == "run" else [command, str(folder)]
    code = main([*argv, *(w for s in tiny for w in ("--set", s))] if command == "run" else argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert ("is damaged" in err or "malformed" in err) if damage == "page" else "is empty (0 bytes)" in err
    assert (folder / "runs.db").read_bytes() == before and sorted(p.name for p in folder.iterdir()) == [
        "runs.db"
    ]


def test_a_full_disk_during_a_sweep_is_one_line_and_the_rerun_finishes_it(tmp_path, tiny):
    """Files capped at 256 KiB (RLIMIT_FSIZE: a write past it fails as on a full disk) while a
    sweep stores its curves: it stops with one line and exit 2, the runs it finished are
    kept as they are, and a rerun without the cap does the rest."""
    out = tmp_path / "full"
    sets = _sets(tiny, "train.steps=30", "train.eval_every=1", "seed=[0,1,2,3,4,5,6,7]")

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = _argv(out, sets, "--threads", "1")
    proc = subprocess.run(args, env=env, preexec_fn=cap, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("bindbench: error:"), proc.stderr
    with Store(out, create=False) as store:
        kept = {r["id"]: r["finished"] for r in store.runs() if r["status"] == "done"}
    assert 0 < len(kept) < 8  # part way
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with Store(out, create=False) as store:
        runs = store.runs()
    assert [r["status"] for r in runs] == ["done"] * 8
    assert all(r["finished"] == kept[r["id"]] for r in runs if r["id"] in kept)  # not trained again


def test_a_store_of_a_newer_schema_is_refused_and_an_older_one_upgraded(tmp_path, capsys):
    newer = tmp_path / "newer"
    Store(newer).close()
    db = sqlite3.connect(newer / "runs.db")
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    assert main(["report", str(newer)]) == 2
    assert "newer BindBench (store schema 99" in capsys.readouterr().err

    older = tmp_path / "older"  # schema 0: no leases, unfinished runs `running`
    older.mkdir()
    db = sqlite3.connect(older / "runs.db")
    db.executescript(SCHEMA_0)
    db.executemany(
        "INSERT INTO runs (id, experiment, spec, status, metrics, position) VALUES (?, 'toy', '{}', ?, ?, ?)",
        [("a", "done", '{"score": 1.0}', 0), ("b", "running", None, 1)],
    )
    db.commit()
    db.close()
    with Store(older, create=False) as store:  # read as it is
        assert store.counts() == {"done": 1, "running": 1}
    with Store(older) as store:  # a command that writes upgrades it
        assert store.counts() == {"done": 1, "pending": 1}
        assert store.run("a")["metrics"] == {"score": 1.0}
        assert store.claim(["a", "b"], "me 1 x", "cpu", {}) == ["b"]


SCHEMA_0 = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY, experiment TEXT NOT NULL, spec TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'diverged')),
    metrics TEXT, extra TEXT, error TEXT, device TEXT, versions TEXT, position INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0, started REAL, finished REAL, seconds REAL
);
CREATE TABLE curves (
    run_id TEXT NOT NULL REFERENCES runs(id), step INTEGER NOT NULL, values_json TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1 400 Bad Request\r\n\r\n"])
def test_an_address_where_something_else_listens_is_one_line_in_seconds(tmp_path, capsys, tiny, reply):
    """A listener that is not Ray (silent, or an HTTP/1 server) fails the gRPC handshake:
    one line and exit 2 within seconds, and nothing written (ray.init would hang)."""
    pytest.importorskip("ray")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        conn.sendall(reply)
        time.sleep(30)

    threading.Thread(target=serve, daemon=True).start()
    out, address = tmp_path / "r", f"127.0.0.1:{port}"
    start = time.time()
    code = main(["run", "composition", "--out", str(out), "--backend", "ray", "--address", address])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.splitlines() == [
        f"bindbench: error: --address 127.0.0.1:{port}: something listens there, but it is not Ray "
        "(no gRPC handshake)"
    ]
    assert time.time() - start < 15 and not out.exists()
    listener.close()


def _ray_start(env: dict, *args: str) -> subprocess.Popen:
    """One Ray node (its own raylet), in its own session so that it can be removed whole."""
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-cpus", "1"]
    command += ["--node-ip-address", "127.0.0.1", "--disable-usage-stats", *args]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _node_processes(node: subprocess.Popen) -> set[int]:
    """Every process of a node: its session and everything below it (Ray's workers may start
    sessions of their own)."""
    processes = reaper._processes()
    mine = set(reaper.descendants(node.pid, processes))
    for pid in processes:
        try:
            if os.getsid(pid) == node.pid:
                mine.add(pid)
        except OSError:
            pass
    return mine


def _runs_a_task(node: subprocess.Popen) -> bool:
    """Whether a worker of this node is executing a run (Ray names such a process after the
    task, `ray::run_unit`; an idle one is `ray::IDLE`)."""
    for pid in _node_processes(node):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"ray::run_unit"):
                    return True
        except OSError:
            pass
    return False


def _remove(node: subprocess.Popen) -> None:
    """kill -9 of every process of the node: the machine is gone."""
    for pid in _node_processes(node):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    node.wait()


ON_THE_CLUSTER = """
import sys, time, ray, bindbench
from bindbench.core.ray_backend import runtime_env
ray.init(address=sys.argv[1], runtime_env=runtime_env(), log_to_driver=False)
while len([n for n in ray.nodes() if n["Alive"]]) < 2: time.sleep(0.5)
@ray.remote(num_cpus=1)
def where():
    import bindbench; time.sleep(1); return ray.get_runtime_context().get_node_id(), bindbench.__file__
print(sorted(set(ray.get([where.remote() for _ in range(4)]))))
"""


def test_a_sweep_on_a_two_node_cluster_ships_bindbench_and_survives_losing_a_node(tmp_path, tiny):
    """A local cluster of two raylets (`ray start --head`, `ray start --address`) with token
    authentication: without the token the command is one line, exit 2; with it, the workers
    import the BindBench that Ray shipped (not the one installed), and removing the second
    node mid-sweep is exit 1 and one line, nothing `running`, and the rerun finishes."""
    pytest.importorskip("ray")
    with socket.create_server(("127.0.0.1", 0)) as free:
        address = f"127.0.0.1:{free.getsockname()[1]}"
    token = "0" * 63 + "7"
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's files (and socket paths: short)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "OMP_NUM_THREADS": "1"}
    env["TMPDIR"] = temp  # its address file too: `--address auto` elsewhere never finds this cluster
    head = _ray_start(env, "--head", "--port", address.split(":")[1], "--include-dashboard", "false")
    second = None
    try:
        time.sleep(3)
        second = _ray_start(env, "--address", address)
        out = tmp_path / "r"
        args = _argv(out, _sets(tiny, "train.steps=4000", "train.eval_every=4000", "seed=[0,1,2,3,4,5]"))
        args += ["--backend", "ray", "--address", address]
        tokenless = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(tmp_path)}
        proc = subprocess.run(args, env=tokenless, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "wants its token: set RAY_AUTH_MODE=token" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()

        shipped = subprocess.run(
            [sys.executable, "-c", ON_THE_CLUSTER, address],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert shipped.returncode == 0, shipped.stderr[-2000:]
        placed = ast.literal_eval(shipped.stdout.strip().splitlines()[-1])
        installed = os.path.dirname(os.path.dirname(os.path.abspath(__import__("bindbench").__file__)))
        assert len({node for node, _ in placed}) == 2, placed  # both nodes ran tasks
        assert all("runtime_resources" in path and not path.startswith(installed) for _, path in placed)

        driver = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        # a run leased by the driver may still wait for its worker to start; removing the node
        # then only moves it to the head, so wait until the second node's worker is training
        while time.time() < deadline and driver.poll() is None and not _runs_a_task(second):
            time.sleep(0.2)
        _remove(second)
        _, err = driver.communicate(timeout=180)
        assert driver.returncode == 1 and err.strip().splitlines()[-1].startswith(
            "bindbench: error: a worker died"
        )
        statuses = _statuses(out)
        assert "running" not in statuses and 0 < statuses.get("pending", 0) < 6, statuses
        rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert _statuses(out) == {"done": 6}
    finally:
        for node in (second, head):
            if node is not None and node.poll() is None:
                _remove(node)
        shutil.rmtree(temp, ignore_errors=True)


def test_every_test_the_readme_guarantees_name_exists():
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    section = readme.split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(?:tests/[\w/]+\.py::)?(test_\w+)", section))
    here = "".join(
        open(os.path.join(root, name)).read()
        for root, _, files in os.walk(os.path.dirname(__file__))
        for name in files
        if name.endswith(".py")
    )
    assert len(named) >= 10 and [n for n in named if f"def {n}(" not in here] == []
