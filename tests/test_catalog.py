import json
import os
import subprocess
import sys

from bindbench import catalog


def test_the_cached_listing_is_the_live_registrys(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # a cache of this registry (tests add to it)
    catalog.load()  # builds the cache
    cached = catalog.load()
    assert cached == json.loads(json.dumps(catalog.build()))
    assert "segregation" in cached["experiments"] and "default" in cached["suites"]


def test_a_changed_source_rebuilds_and_the_cache_is_read_when_unchanged(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(catalog, "fingerprint", lambda: "aaaa")
    (tmp_path / "bindbench").mkdir()
    (tmp_path / "bindbench" / "catalog-aaaa.json").write_text('{"experiments": {}, "suites": {}}')
    assert catalog.load() == {"experiments": {}, "suites": {}}  # read, not rebuilt
    monkeypatch.setattr(catalog, "fingerprint", lambda: "bbbb")
    assert "scan" in catalog.load()["experiments"]
    folder = tmp_path / "bindbench"
    assert sorted(p.name for p in folder.iterdir()) == ["catalog-aaaa.json", "catalog-bbbb.json"]
    for number in range(catalog.KEEP + 2):  # other checkouts' listings: only the newest few are kept
        (folder / f"catalog-old{number}.json").write_text("{}")
        os.utime(folder / f"catalog-old{number}.json", (number, number))
    monkeypatch.setattr(catalog, "fingerprint", lambda: "cccc")
    catalog.load()
    names = {p.name for p in folder.iterdir()}
    assert len(names) == catalog.KEEP and "catalog-cccc.json" in names and "catalog-old0.json" not in names


def test_a_corrupt_cache_is_rebuilt_and_an_unwritable_one_skipped(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = catalog.cache_dir() / f"catalog-{catalog.fingerprint()}.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"experiments": {"sc')
    assert "scan" in catalog.load()["experiments"]
    assert json.loads(path.read_text()) == catalog.load()
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))  # a file where the folder would go
    assert "scan" in catalog.load()["experiments"]


def test_the_fingerprint_follows_the_source_and_ignores_bytecode(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "__pycache__").mkdir()
    before = catalog.fingerprint(tmp_path)
    (tmp_path / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert catalog.fingerprint(tmp_path) == before
    (tmp_path / "a.py").write_text("x = 2\n")
    assert catalog.fingerprint(tmp_path) != before


def test_list_with_a_warm_cache_imports_neither_torch_nor_matplotlib(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    script = (
        "import sys; from bindbench.cli import main; code = main(['list', 'representation']);"
        "print(code, sorted(m for m in ('torch', 'matplotlib', 'scipy') if m in sys.modules))"
    )
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)  # warms
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True)
    assert out.stdout.splitlines()[-1] == "0 []"
