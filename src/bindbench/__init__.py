"""BindBench: runnable, measured experiments on the binding problem in neural networks."""


def __getattr__(name: str):
    # `bindbench.__version__`, read from the package metadata (pyproject.toml) when asked for:
    # importlib.metadata costs a command that never prints it (`--help`) a tenth of its start
    if name != "__version__":
        raise AttributeError(f"module 'bindbench' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bindbench")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def run(*args, **kwargs):
    """Runs an experiment or suite and returns its output folder (see `bindbench.api.run`)."""
    from bindbench.api import run as _run

    return _run(*args, **kwargs)


def probe(*args, **kwargs):
    """Linear decodability of targets from a model's layers (see `bindbench.core.probes.probe`)."""
    from bindbench.core.probes import probe as _probe

    return _probe(*args, **kwargs)


def find_subnetwork(*args, **kwargs):
    """The binary weight mask of a frozen model that keeps one function (see
    `bindbench.core.masks.find_subnetwork`)."""
    from bindbench.core.masks import find_subnetwork as _find

    return _find(*args, **kwargs)


def ablate(*args, **kwargs):
    """A copy of a model without a mask's weights (see `bindbench.core.masks.ablate`)."""
    from bindbench.core.masks import ablate as _ablate

    return _ablate(*args, **kwargs)


__all__ = ["__version__", "ablate", "find_subnetwork", "probe", "run"]
