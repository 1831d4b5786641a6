"""BindBench: runnable, measured experiments on the binding problem in neural networks."""

__version__ = "0.1.0"


def run(*args, **kwargs):
    """Runs an experiment or suite and returns its output folder (see `bindbench.api.run`)."""
    from bindbench.api import run as _run

    return _run(*args, **kwargs)


def probe(*args, **kwargs):
    """Linear decodability of targets from a model's layers (see `bindbench.core.probes.probe`)."""
    from bindbench.core.probes import probe as _probe

    return _probe(*args, **kwargs)


__all__ = ["__version__", "probe", "run"]
