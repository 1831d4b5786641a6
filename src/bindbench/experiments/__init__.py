"""Experiments: claims grouped in families that share a recipe (a family's setup.py), and
single claims; importing this package registers them and the suites."""

from pathlib import Path

from bindbench.core.config import SpecError, load_yaml
from bindbench.core.registry import Suite, register_suite
from bindbench.experiments import binding_ids, generation, hyperteacher, objects, scan, structure  # noqa: F401  (they register)

SUITE_DIR = Path(__file__).parent / "suites"


def _load_suites() -> None:
    for path in sorted(SUITE_DIR.glob("*.yaml")):
        data = load_yaml(path)
        entries = []
        for item in data.get("experiments", []):
            if isinstance(item, str):
                item = {"experiment": item}
            if not isinstance(item, dict) or "experiment" not in item:
                raise SpecError(f"suite {path.name}: each entry needs an 'experiment' key")
            entries.append((item["experiment"], item.get("profiles", {}) or {}))
        register_suite(Suite(path.stem, data.get("description", ""), tuple(entries)))


_load_suites()
