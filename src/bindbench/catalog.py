"""What `bindbench list` shows, without importing the experiments each time.

Importing the experiments imports torch, scipy and matplotlib (about 5 s); the listing is
a function of the package's source only, so it is kept as JSON in the user's cache under a
fingerprint of that source, and rebuilt (by importing the experiments) whenever a file of
the package changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

PACKAGE = Path(__file__).parent
KEEP = 8  # listings kept in the cache (one per source fingerprint, newest first)


def fingerprint(root: Path = PACKAGE) -> str:
    """A hash of every source file of the package (paths and contents)."""
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build() -> dict:
    """The listing from the live registry: experiments with their keys, defaults and
    profiles, suites, and the profile names."""
    import bindbench.experiments  # noqa: F401  (they register)
    from bindbench.core.config import describe_fields
    from bindbench.core.registry import EXPERIMENTS, PROFILES, SUITES

    return {
        "experiments": {
            name: {
                "title": exp.title,
                # a profile's blocks of overrides (a list of them: grids that are joined)
                "profiles": {
                    profile: ["  ".join(f"{k}={v}" for k, v in block.items()) for block in blocks]
                    for profile, overrides in exp.profiles.items()
                    for blocks in [overrides if isinstance(overrides, list) else [overrides]]
                },
                "keys": [
                    [key, kind, repr(default), meaning]
                    for key, kind, default, meaning in describe_fields(exp.spec)
                ],
            }
            for name, exp in sorted(EXPERIMENTS.items())
        },
        "suites": {
            name: {"description": suite.description, "experiments": [e for e, _ in suite.entries]}
            for name, suite in sorted(SUITES.items())
        },
        "profiles": list(PROFILES),
    }


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bindbench"


def load() -> dict:
    """The listing: from the cache when the source is unchanged, else built and cached (a
    cache that cannot be written is skipped; a corrupt one is rebuilt)."""
    path = cache_dir() / f"catalog-{fingerprint()}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    catalog = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # several checkouts may share the cache: keep the newest few listings, not only this one
        kept = sorted(path.parent.glob("catalog-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in kept[KEEP - 1 :]:
            stale.unlink()
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(catalog))
        partial.replace(path)  # whole or not at all: a reader never sees half a file
    except OSError:
        pass
    return catalog
