"""The house rules of the package layout, checked on the imports of every module under src/bindbench.

Layers, top to bottom: the top (cli, api, bench, catalog, the package root, __main__), experiments,
tasks and models, core. `violations` reads every import with `ast` (those inside functions too,
relative ones resolved) and returns one line per broken rule; the synthetic trees below show that
each rule catches what it should.
"""

import ast
from pathlib import Path

import pytest

import bindbench

TOP = {
    "bindbench",
    "bindbench.cli",
    "bindbench.api",
    "bindbench.bench",
    "bindbench.catalog",
    "bindbench.__main__",
}
ABOVE = (
    "bindbench.experiments",
    "bindbench.cli",
    "bindbench.api",
    "bindbench.bench",
    "bindbench.catalog",
    "bindbench",
)
FORBIDDEN = {  # layer -> what it never imports (a prefix covers its submodules; "bindbench" is the root only)
    "tasks": ("bindbench.models", *ABOVE),
    "models": ("bindbench.tasks", *ABOVE),
    "core": ("bindbench.tasks", "bindbench.models", *ABOVE),
    "experiments": ("bindbench.cli", "bindbench.api", "bindbench.bench", "bindbench.catalog"),
}


def _imports(name: str, path: Path, is_package: bool, known: set[str]) -> set[str]:
    """The bindbench modules `name` imports; `from x import y` means x.y when that is a module, else x."""
    package = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    return {m for m in found if (m == "bindbench" or m.startswith("bindbench.")) and m != name}


def _layer(name: str) -> str:
    return "top" if name in TOP else name.split(".")[1]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or (prefix != "bindbench" and name.startswith(prefix + "."))


def _role(name: str, packages: set[str]) -> tuple[str, str | None]:
    """(init, claim or setup; its family) for a module of bindbench.experiments."""
    rest = name.split(".")[2:]
    if name in packages:
        return "init", None
    return ("setup" if rest[1:] == ["setup"] else "claim"), (rest[0] if len(rest) > 1 else None)


def _cycle(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """The shortest import cycle through start, if there is one (breadth first, so the answer is stable)."""
    paths, frontier = {start: [start]}, [start]
    while frontier:
        reached = []
        for node in frontier:
            for target in sorted(graph[node]):
                if target == start:
                    return paths[node] + [start]
                if target not in paths:
                    paths[target] = paths[node] + [target]
                    reached.append(target)
        frontier = reached
    return None


def violations(root: Path) -> list[str]:
    """One readable line per broken house rule in the package at root (a folder named bindbench)."""
    files, packages = {}, set()
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
        if parts[-1] == "__init__":
            packages.add(name)
    folders = {".".join(p.relative_to(root.parent).parts) for p in root.rglob("*") if p.is_dir()}
    imports = {n: _imports(n, p, n in packages, set(files) | folders) for n, p in files.items()}
    show = {n: p.relative_to(root.parent).as_posix() for n, p in files.items()}
    out = []
    for name, targets in sorted(imports.items()):
        layer = _layer(name)
        forbidden = FORBIDDEN.get(layer, ()) + (("bindbench.cli",) if layer != "top" else ())
        for target in sorted(targets):
            bad = next((prefix for prefix in forbidden if _under(target, prefix)), None)
            why = None
            if bad == "bindbench":
                target, why = "bindbench (the package root)", f"{layer} never imports the package root"
            elif bad:
                why = f"{layer} never imports {bad}"
            elif layer == "experiments" and _layer(target) == "experiments" and target in files:
                (role, family), (target_role, target_family) = _role(name, packages), _role(target, packages)
                if "init" in (role, target_role):
                    continue  # package __init__ files import their claims to register them
                if target_role == "claim":
                    why = f"a {role} never imports a claim"
                elif target_family != family:
                    why = f"a {role} never imports another family's setup"
            if why:
                out.append(f"{show[name]} imports {target}: {why}")
    core = {n: {t for t in ts if t in files and _layer(t) == "core"} for n, ts in imports.items()}
    core = {n: ts for n, ts in core.items() if _layer(n) == "core"}
    in_a_reported_cycle: set[str] = set()
    for name in sorted(core):
        cycle = None if name in in_a_reported_cycle else _cycle(name, core)
        if cycle:
            in_a_reported_cycle.update(cycle)
            chain = " -> ".join(show[n] for n in cycle)
            out.append(f"core import cycle {chain}: core modules never import each other")
    return out


def test_the_package_keeps_the_house_rules():
    assert violations(Path(bindbench.__file__).parent) == []


CLEAN = {  # every layer, a family with its setup and a claim, and a top-level claim; all allowed imports
    "__init__.py": "from bindbench.api import run\n",
    "cli.py": "import bindbench.api\nfrom bindbench import experiments\n",
    "api.py": "from bindbench.core import config\n",
    "core/config.py": "import json\n",
    "core/store.py": "from bindbench.core.config import Spec\nfrom . import config\n",
    "tasks/__init__.py": "",
    "tasks/scan.py": "from bindbench.core import config\nfrom . import scenes\n",
    "tasks/scenes.py": "",
    "models/__init__.py": "from .mlp import MLP\n",
    "models/mlp.py": "from bindbench.core.config import Spec\n",
    "experiments/__init__.py": "from bindbench.experiments import objects, scan\n",
    "experiments/scan.py": "from bindbench.tasks import scan\nfrom bindbench.models import MLP\n",
    "experiments/objects/__init__.py": "from . import codes, setup\n",
    "experiments/objects/setup.py": "from bindbench.core import config\nfrom bindbench.models import mlp\n",
    "experiments/objects/codes.py": "def run():\n    from bindbench.experiments.objects import setup\n"
    "    from .setup import fit\n    from bindbench.tasks.scan import Scan\n",
}


def make_tree(tmp_path: Path, changes: dict[str, str]) -> Path:
    """The clean tree under tmp_path, with some files (path without .py -> source) replaced or added."""
    root = tmp_path / "bindbench"
    for rel, text in {**CLEAN, **{f"{k}.py": v for k, v in changes.items()}}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_clean_tree_keeps_the_house_rules(tmp_path):
    assert violations(make_tree(tmp_path, {})) == []


EXP, CORE = "bindbench.experiments", "bindbench/core"
CASES = {
    "tasks-import-models": (
        {"tasks/scan": "from bindbench.models import mlp"},
        "bindbench/tasks/scan.py imports bindbench.models.mlp: tasks never imports bindbench.models",
    ),
    "tasks-import-experiments-inside-a-function": (
        {"tasks/scan": "def f():\n    import bindbench.experiments.scan"},
        f"bindbench/tasks/scan.py imports {EXP}.scan: tasks never imports {EXP}",
    ),
    "models-import-tasks": (
        {"models/mlp": "from bindbench.tasks.scan import Scan"},
        "bindbench/models/mlp.py imports bindbench.tasks.scan: models never imports bindbench.tasks",
    ),
    "core-imports-experiments": (
        {"core/config": "from bindbench.experiments.objects import setup"},
        f"{CORE}/config.py imports {EXP}.objects.setup: core never imports {EXP}",
    ),
    "core-imports-the-package-root": (
        {"core/config": "from bindbench import __version__"},
        f"{CORE}/config.py imports bindbench (the package root): core never imports the package root",
    ),
    "core-imports-experiments-relatively": (
        {"core/config": "from ..experiments import foo"},
        f"{CORE}/config.py imports {EXP}: core never imports {EXP}",
    ),
    "core-imports-an-experiment-module-relatively": (
        {"core/config": "from ..experiments import scan"},
        f"{CORE}/config.py imports {EXP}.scan: core never imports {EXP}",
    ),
    "experiments-import-bench": (
        {"experiments/scan": "from bindbench.bench import GROUPS"},
        "bindbench/experiments/scan.py imports bindbench.bench: experiments never imports bindbench.bench",
    ),
    "a-module-outside-the-top-imports-cli": (
        {"other": "import bindbench.cli"},
        "bindbench/other.py imports bindbench.cli: other never imports bindbench.cli",
    ),
    "a-claim-imports-a-sibling-claim": (
        {"experiments/objects/codes": "from . import images", "experiments/objects/images": ""},
        f"bindbench/experiments/objects/codes.py imports {EXP}.objects.images: a claim never imports a claim",
    ),
    "a-top-level-claim-imports-another": (
        {"experiments/scan": "from bindbench.experiments import structure", "experiments/structure": ""},
        f"bindbench/experiments/scan.py imports {EXP}.structure: a claim never imports a claim",
    ),
    "a-claim-imports-another-familys-setup": (
        {"experiments/scan": "from bindbench.experiments.objects.setup import fit"},
        f"bindbench/experiments/scan.py imports {EXP}.objects.setup: "
        "a claim never imports another family's setup",
    ),
    "a-setup-imports-a-claim": (
        {"experiments/objects/setup": "from . import codes"},
        f"bindbench/experiments/objects/setup.py imports {EXP}.objects.codes: a setup never imports a claim",
    ),
    "a-setup-imports-another-familys-setup": (
        {"experiments/hyper/__init__": "", "experiments/hyper/setup": "from ..objects import setup"},
        f"bindbench/experiments/hyper/setup.py imports {EXP}.objects.setup: "
        "a setup never imports another family's setup",
    ),
    "two-core-modules-import-each-other": (
        {"core/config": "def f():\n    from bindbench.core import store"},
        f"core import cycle {CORE}/config.py -> {CORE}/store.py -> {CORE}/config.py: "
        "core modules never import each other",
    ),
    "three-core-modules-import-in-a-cycle": (
        {"core/a": "import bindbench.core.b", "core/b": "from . import c", "core/c": "from .a import x"},
        f"core import cycle {CORE}/a.py -> {CORE}/b.py -> {CORE}/c.py -> {CORE}/a.py: "
        "core modules never import each other",
    ),
}


@pytest.mark.parametrize(("changes", "expected"), CASES.values(), ids=CASES.keys())
def test_each_broken_rule_gives_exactly_its_violation(tmp_path, changes, expected):
    assert violations(make_tree(tmp_path, changes)) == [expected]
