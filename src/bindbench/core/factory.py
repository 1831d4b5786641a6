"""A user's own model in an experiment: `model.factory=package.module:callable`.

The factory is called with the experiment's documented sizes as keyword arguments
(`factory(input_dim=22, output_dim=16)`) and returns the `torch.nn.Module` the experiment
trains in place of its reference model. The spec holds the import path, so the run id
includes it and results of different models stay apart (the id does not hash the factory's
code: a changed model under the same path belongs in a new folder or under a new name).

A callable passed from Python is registered under its import path (`register`), so it works
in this process even where its module cannot be imported again (a notebook's function);
worker processes (`workers > 1`, Ray) import the path, which must then be importable there.
A module in the working directory is found, as `python -m` would find it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable
from typing import Annotated, Any

import torch
from pydantic import AfterValidator, Field

from bindbench.core.errors import SpecError
from bindbench.core.inputs import Inputs, call

_PATH = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
_REGISTERED: dict[str, Callable[..., torch.nn.Module]] = {}


def _check_path(path: str) -> str:
    if path not in _REGISTERED and not _PATH.match(path):
        raise ValueError(f"{path!r} must look like package.module:callable")
    return path


FactoryPath = Annotated[str, AfterValidator(_check_path)]


def factory_field(sizes: str) -> Any:
    """The `factory` key of an experiment's model spec; `sizes` names the keyword arguments.

    Left out of the spec's JSON (and so of its run id) while unset: runs stored before the key
    existed keep their ids."""
    return Field(
        None,
        description=f"package.module:callable building your model from {sizes} (null: the reference)",
        json_schema_extra={"omit_at_default": True},
    )


def register(factory: Callable[..., torch.nn.Module]) -> str:
    """Remembers a callable for this process and returns the import path that names it."""
    if not callable(factory):
        raise SpecError(f"model.factory: {factory!r} is not callable")
    path = f"{factory.__module__}:{factory.__qualname__}"
    _REGISTERED[path] = factory
    return path


def resolve(path: str) -> Callable[..., torch.nn.Module]:
    """The callable an import path names (a registered one first)."""
    if path in _REGISTERED:
        return _REGISTERED[path]
    if "<locals>" in path:
        raise _error(
            path,
            "a function defined inside another is known only to the process that passed it;"
            " define it at the top of a module (or run with workers=1)",
        )
    module_name, _, attribute = path.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # as `python -m` would: the user's own module beside them
    try:
        found: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise _error(path, f"cannot import {module_name} ({err}); is it on PYTHONPATH?") from None
    except Exception as err:  # the user's module failed while importing
        raise _error(path, f"importing {module_name} raised {_one_line(err)}") from None
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise _error(path, f"{module_name} has no {attribute}")
        found = getattr(found, part)
    if not callable(found):
        raise _error(path, f"{attribute} is a {type(found).__name__}, not a callable")
    return found


def build(path: str, **sizes: int) -> torch.nn.Module:
    """The module `factory(**sizes)` returns, checked to be an `nn.Module`."""
    factory = resolve(path)
    shown = ", ".join(f"{k}={v}" for k, v in sizes.items())
    try:
        model = factory(**sizes)
    except Exception as err:
        raise _error(path, f"calling it with ({shown}) raised {_one_line(err)}") from None
    if not isinstance(model, torch.nn.Module):
        raise _error(path, f"it returned a {type(model).__name__} for ({shown}), not a torch.nn.Module")
    return model


def accepts(model: torch.nn.Module, keyword: str) -> bool:
    """Whether the model's forward takes `keyword` (or any keyword)."""
    parameters = inspect.signature(model.forward).parameters.values()
    return any(p.name == keyword or p.kind is p.VAR_KEYWORD for p in parameters)


def try_forward(path: str, model: torch.nn.Module, inputs: Inputs, interface: str, **keywords) -> Any:
    """`model(inputs, **keywords)` on an example batch in eval mode, without gradients; a
    forward that raises becomes one line naming the interface the experiment expects."""
    model.eval()
    try:
        with torch.no_grad():
            return call(functools.partial(model, **keywords), inputs)
    except SpecError:
        raise
    except Exception as err:
        raise _error(path, f"the experiment calls {interface}; it raised {_one_line(err)}") from None


def expect_tensor(path: str, value: Any, shape: tuple[int, ...], interface: str, what: str = "the output"):
    """Raises one line unless `value` is a floating tensor of `shape`."""
    if not (isinstance(value, torch.Tensor) and value.is_floating_point() and tuple(value.shape) == shape):
        shown = str(tuple(value.shape)) if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
        raise _error(path, f"{what} is {shown}, not {shape}: the experiment calls {interface}")


def _error(path: str, text: str) -> SpecError:
    return SpecError(f"model.factory={path}: {text}")


def _one_line(err: Exception) -> str:
    lines = str(err).splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
