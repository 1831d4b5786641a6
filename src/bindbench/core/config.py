"""Specs, `--set` overrides, sweep grids and run ids.

A Spec is a pydantic model with `extra="forbid"`. Overrides are dotted paths with YAML
values (`model.width=512`, `task.support=equal`); a list value on a scalar field is a
sweep axis, and several axes make a grid. Every problem is a `SpecError` whose message
is one line naming the key, the value and what is allowed.

Values are read as YAML 1.2's core schema (`StrictLoader`): only true/false are booleans
(YAML 1.1 also took yes/no/on/off), numbers are decimal, 0o octal or 0x hex (no base-60
`1:2:3`, no octal `010`), and a key given twice in a mapping is an error. Specs refuse a
boolean where a number belongs and infinite or NaN numbers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from bindbench.core.errors import SpecError  # noqa: F401  (re-exported: its home for most callers)


@dataclass(frozen=True)
class ReferenceKeys:
    """The keys of a spec that describe an experiment's reference model, which a user's model
    (`model.factory`) replaces. With a factory set they are left at their defaults when the
    spec is built, so that a profile's sweep over them (composition's widths) is one run of
    the user's model, and out of the stored JSON, so that no table shows a width the run
    never had. `part`: the sub-spec holding them (None: the model spec holding `factory`);
    `kept`: its keys that still apply to a user's model. Or `dropped`: keys of an experiment
    spec itself (neurons' `depth`), whose `model.factory` is the user's."""

    kept: tuple[str, ...] = ()
    part: str | None = None
    dropped: tuple[str, ...] = ()

    def applies(self, data: Any) -> bool:
        model = data if self.part is None and not self.dropped else _get(data, "model")
        return _get(model, "factory") is not None

    def reset(self, data: dict) -> dict:
        if self.dropped:
            return {k: v for k, v in data.items() if k not in self.dropped}
        if self.part is None:
            return self._keep(data)
        sub = data.get(self.part)
        sub = sub.model_dump() if isinstance(sub, BaseModel) else sub
        return {**data, self.part: self._keep(sub)} if isinstance(sub, dict) else data

    def _keep(self, values: dict) -> dict:
        return {k: v for k, v in values.items() if k in (*self.kept, "factory")}


def _get(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, dict) else getattr(data, key, None)


class Spec(BaseModel):
    """Base of every experiment spec: unknown keys are errors, values are validated.

    Specs are frozen: a spec's hash is its run id, so it must not change once built
    (`spec.model_copy(update=...)` gives a changed copy)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    REFERENCE: ClassVar[ReferenceKeys | None] = None  # what a user's model replaces, if anything

    @model_validator(mode="before")
    @classmethod
    def _reference_keys_reset(cls, data: Any) -> Any:
        if cls.REFERENCE is not None and isinstance(data, dict) and cls.REFERENCE.applies(data):
            return cls.REFERENCE.reset(data)
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic takes True as 1: `model.width=true` would train a width-1 model
        if isinstance(value, bool) and not _admits_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"{str(value).lower()} is a boolean, not a value of this key")
        return value

    @model_serializer(mode="wrap")
    def _omit_keys_at_default(self, handler: SerializerFunctionWrapHandler) -> dict:
        # a key added after runs were stored (`json_schema_extra={"omit_at_default": True}`)
        # stays out of the JSON, and so of the run id, while it has its default
        data = handler(self)
        for name, info in type(self).model_fields.items():
            extra = info.json_schema_extra
            if (
                isinstance(extra, dict)
                and extra.get("omit_at_default")
                and getattr(self, name) == info.default
            ):
                data.pop(name, None)
        if self.REFERENCE is not None and self.REFERENCE.applies(self):
            data = self.REFERENCE.reset(data)
        return data


def _admits_bool(annotation: Any) -> bool:
    """Whether a field of this type takes a boolean: bool itself, Any, or a union or Literal with one."""
    if annotation is bool or annotation is Any:
        return True
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return any(isinstance(a, bool) for a in args)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_admits_bool(a) for a in args)
    return False


class StrictLoader(yaml.SafeLoader):
    """YAML 1.2 core-schema scalars, and no key twice in a mapping (see the module's docstring)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_CORE = "tag:yaml.org,2002:"
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_CORE + "bool", _CORE + "int", _CORE + "float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _pattern, _first in [
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?)$", "-+.0123456789"),
    ("float", r"^(?:[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+."),
]:
    StrictLoader.add_implicit_resolver(_CORE + _tag, re.compile(_pattern), list(_first))


def _core_int(loader: StrictLoader, node) -> int:
    text = loader.construct_scalar(node)
    return int(text, 0) if text[:2] in ("0o", "0x") else int(text, 10)


def _core_bool(loader: StrictLoader, node) -> bool:
    return loader.construct_scalar(node).lower() == "true"


StrictLoader.add_constructor(_CORE + "int", _core_int)
StrictLoader.add_constructor(_CORE + "bool", _core_bool)


def load_strict(text: str) -> Any:
    """`yaml.safe_load` with `StrictLoader`."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)


def field_annotation(model: type[BaseModel], path: str):
    """Returns the type annotation of a dotted path, or raises naming the bad key."""
    parts = path.split(".")
    current: Any = model
    for depth, part in enumerate(parts):
        fields = current.model_fields
        if part not in fields:
            prefix = ".".join(parts[:depth])
            where = f" under '{prefix}'" if prefix else ""
            raise SpecError(f"unknown key '{path}'{where}: allowed are {', '.join(sorted(fields))}")
        annotation = fields[part].annotation
        if depth < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                raise SpecError(f"unknown key '{path}': '{'.'.join(parts[: depth + 1])}' has no sub-keys")
            current = annotation
    return annotation


def _is_list_type(annotation) -> bool:
    origin = typing.get_origin(annotation)
    return origin in (list, tuple) or annotation in (list, tuple)


def parse_value(text: str) -> Any:
    """Parses an override's value as YAML (`0.5`, `true`, `[32, 128]`, `relu`)."""
    try:
        return load_strict(text)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError(f"cannot parse value {text!r}: {problem}") from None


def parse_override(item: str) -> tuple[str, Any]:
    """Splits `key=value` into the dotted key and its parsed value."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(f"--set {item!r} must look like key=value (for example model.width=512)")
    return key, parse_value(value.strip())


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Every `key=value` of a command line, in order; a key given twice is an error (the
    second would silently win), where a list sweeps: `key=[a,b]`."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, value = parse_override(item)
        if key in parsed:
            raise SpecError(
                f"--set {key} is given twice ({parsed[key]!r} and {value!r}): give it once, "
                f"or sweep both with {key}=[a,b]"
            )
        parsed[key] = value
    return parsed


def _set_path(tree: dict, path: str, value: Any) -> None:
    node = tree
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"cannot set '{path}': '{part}' is a value, not a group of keys")
    node[leaf] = value


def get_path(tree: Mapping, path: str) -> Any:
    """Returns the value at a dotted path of a nested mapping (KeyError if absent)."""
    node: Any = tree
    for part in path.split("."):
        node = node[part]
    return node


def split_sweep(spec_cls: type[Spec], overrides: Mapping[str, Any]) -> tuple[dict, dict]:
    """Separates fixed overrides from sweep axes (a list on a field that is not a list)."""
    fixed, axes = {}, {}
    for key, value in overrides.items():
        annotation = field_annotation(spec_cls, key)
        sweeping = isinstance(value, list) and (
            not _is_list_type(annotation) or (value and all(isinstance(v, list) for v in value))
        )
        if sweeping:
            if not value:
                raise SpecError(f"--set {key}=[] is an empty sweep: give at least one value")
            axes[key] = value
        else:
            fixed[key] = value
    return fixed, axes


def _describe_error(spec_cls: type[Spec], err: ValidationError) -> str:
    first = err.errors()[0]
    path = ".".join(str(p) for p in first["loc"])
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        parent = ".".join(str(p) for p in first["loc"][:-1])
        try:
            model = spec_cls
            for part in first["loc"][:-1]:
                model = model.model_fields[part].annotation
            allowed = f": allowed are {', '.join(sorted(model.model_fields))}"
        except (KeyError, AttributeError):
            allowed = ""
        where = f" under '{parent}'" if parent else ""
        return f"unknown key '{path}'{where}{allowed}"
    value = first.get("input")
    if first["type"] == "value_error" and isinstance(value, dict):
        # a validator across several fields: its own message names them and their values
        return str(first["ctx"]["error"]) if "ctx" in first else message.removeprefix("Value error, ")
    shown = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
    return f"{path}={shown}: {message[0].lower() + message[1:]}"


def _merged(defaults: dict, values: Mapping) -> dict:
    """`defaults` with `values` laid over it, nested dicts merged key by key."""
    tree = dict(defaults)
    for key, value in values.items():
        if isinstance(value, Mapping) and isinstance(tree.get(key), dict):
            value = _merged(tree[key], value)
        tree[key] = value
    return tree


def build_spec(spec_cls: type[Spec], base: Mapping | None = None, overrides: Mapping | None = None) -> Spec:
    """Returns the validated spec from base values (nested dict) plus dotted overrides.

    Both are laid over the spec's own defaults, so overriding one key of a nested spec keeps
    the other values its parent gives it (`train: TrainSpec = TrainSpec(lr=1e-3)` keeps lr
    when only `train.steps` is set), not the nested class's defaults."""
    defaults = json.loads(spec_cls.model_construct().model_dump_json())
    tree = _merged(defaults, json.loads(json.dumps(dict(base or {}))))  # deep copy of plain data
    for key, value in (overrides or {}).items():
        field_annotation(spec_cls, key)
        _set_path(tree, key, value)
    try:
        return spec_cls.model_validate(tree)
    except ValidationError as err:
        raise SpecError(_describe_error(spec_cls, err)) from None


def expand_grid(axes: Mapping[str, list]) -> list[dict]:
    """Returns one dict of values per grid point, in row-major order of the axes."""
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]


def load_yaml(path: str | Path) -> dict:
    """Reads a YAML mapping, with one-line errors for missing or malformed files."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file {path} does not exist")
    try:
        data = load_strict(path.read_text())
    except UnicodeDecodeError:
        raise SpecError(f"spec file {path} is not text (UTF-8): is it the right file?") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError(f"spec file {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"spec file {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """Turns a nested mapping into dotted keys: {'a': {'b': 1}} -> {'a.b': 1}."""
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def varying(specs: list[Mapping], ignore: Iterable[str] = ()) -> list[str]:
    """The dotted keys whose values differ between the specs (sorted), but those in `ignore`:
    what tells runs apart, beyond what a caller already shows."""
    flat = [flatten(s) for s in specs]
    keys = sorted({k for f in flat for k in f} - set(ignore))
    return [k for k in keys if len({repr(f.get(k)) for f in flat if _applies(f, k)}) > 1]


FACTORY_KEY = "model.factory"  # where every experiment takes a user's model


def _applies(flat: dict, key: str) -> bool:
    """Whether a flattened spec has a value at `key`: present, or absent at its default. A
    run of a user's model lacks the reference model's keys (ReferenceKeys): they do not apply."""
    return key in flat or FACTORY_KEY not in flat


def describe_fields(
    model: type[BaseModel], prefix: str = "", defaults: BaseModel | None = None
) -> list[tuple[str, str, Any, str]]:
    """Returns (dotted key, type, default, description) for every leaf field of a spec.

    `defaults` is an instance of `model` whose values are shown instead of the class's."""
    rows = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        # a parent can give a nested spec its own default instance (`train: TrainSpec =
        # TrainSpec(lr=1e-3)`): build_spec starts from its values, so they are the defaults
        default = (
            getattr(defaults, name) if defaults is not None else info.get_default(call_default_factory=True)
        )
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested = default if isinstance(default, BaseModel) else None
            rows += describe_fields(annotation, f"{prefix}{name}.", nested)
            continue
        args = typing.get_args(annotation)
        shown = (
            " | ".join(map(str, args))
            if typing.get_origin(annotation) is typing.Literal
            else getattr(annotation, "__name__", str(annotation))
        )
        rows.append((f"{prefix}{name}", shown, default, info.description or ""))
    return rows


def spec_json(spec: BaseModel) -> str:
    """Canonical JSON of a fully resolved spec (sorted keys, no whitespace)."""
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def run_id(experiment: str, spec: BaseModel) -> str:
    """Returns the run id: a hash of the experiment name and its fully resolved spec."""
    digest = hashlib.sha256(f"{experiment}\n{spec_json(spec)}".encode()).hexdigest()
    return digest[:16]


def short_hash(items: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:8]


__all__ = [
    "describe_fields",
    "field_annotation",
    "Spec",
    "SpecError",
    "build_spec",
    "expand_grid",
    "flatten",
    "load_yaml",
    "parse_override",
    "parse_overrides",
    "parse_value",
    "run_id",
    "short_hash",
    "spec_json",
    "split_sweep",
    "get_path",
]
