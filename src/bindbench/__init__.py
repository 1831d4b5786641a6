"""BindBench: runnable, measured experiments on the binding problem in neural networks.

The Python API, each the library's own function (its signature and docstring:
`help(bindbench.probe)`):

- `run(target, profile=, sets=, ...)`: what `bindbench run` does; returns the output folder.
- `plan(target, profile=, sets=)`: the runs a command would make, without running them.
- `probe(model, inputs, targets, layers=, ...)`: linear decodability from any module's layers.
- `find_subnetwork(model, (inputs, targets), method=)`: a binary weight mask for one function;
  `apply_mask`, `ablate`, `density`, `mask_iou`, `random_mask` work with its masks.
- `Store(folder)`: a folder's runs table (`Store(folder, create=False).runs()`).
- `load_model(folder, run_id)`: a finished run's trained model, from its safetensors checkpoint.
- `causal_binding_tests(model, tokenizer, entities, attributes)`: do a causal LM's activations
  carry binding IDs (Feng & Steinhardt 2024)? Activation patching, per block, with controls.

They are imported when first used, so `import bindbench` (and the command line's `--help`)
stays fast.
"""

from importlib import import_module

_WHERE = {
    "run": "bindbench.api",
    "plan": "bindbench.api",
    "probe": "bindbench.core.probes",
    "find_subnetwork": "bindbench.core.masks",
    "apply_mask": "bindbench.core.masks",
    "ablate": "bindbench.core.masks",
    "density": "bindbench.core.masks",
    "mask_iou": "bindbench.core.masks",
    "random_mask": "bindbench.core.masks",
    "Store": "bindbench.core.store",
    "load_model": "bindbench.api",
    "causal_binding_tests": "bindbench.api",
}


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(import_module(_WHERE[name]), name)
        globals()[name] = value  # the next access is a plain attribute
        return value
    if name == "__version__":
        # read from the package metadata (pyproject.toml) when asked for: importlib.metadata
        # costs a command that never prints it (`--help`) a tenth of its start
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("bindbench")
        except PackageNotFoundError:  # a source tree that was never installed
            return "unknown"
    raise AttributeError(f"module 'bindbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE, "__version__"])


__all__ = ["__version__", *_WHERE]
