"""The Python entry point: `bindbench.run(...)` does what `bindbench run` does."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path

from bindbench.core.device import describe_device, resolve_device
from bindbench.core.executor import RunOptions, execute
from bindbench.core.plan import Plan, make_plan
from bindbench.core.progress import Shown
from bindbench.core.report import build_report
from bindbench.core.store import Store

Sets = str | Iterable[str] | Mapping[str, object]


def plan(target: str | None = None, profile: str = "quick", sets: Sets = (), seed: int | None = None) -> Plan:
    """Resolves a target (experiment, suite or spec file) into its runs without running them.

    `sets` as in `run`. `plan("composition", sets={"model.width": [16, 32]}).jobs` are the
    runs, each with its resolved `spec` and `run_id`.
    """
    import bindbench.experiments  # noqa: F401  (registers experiments and suites)

    return make_plan(target, profile, as_sets(sets), seed)


def as_sets(sets: Sets) -> list[str]:
    """`--set` overrides from one "key=value" string, a list of them, or a mapping
    {key: value} (a list value sweeps; nested mappings give dotted keys; a callable, such as
    `{"model.factory": build_my_model}`, stands for its import path)."""
    if isinstance(sets, str):
        return [sets]
    if isinstance(sets, Mapping):
        return [f"{key}={json.dumps(_named(value))}" for key, value in _dotted(sets)]
    return list(sets)


def _named(value: object) -> object:
    """A value as `--set` writes it: a callable (a model factory) by its import path, which it
    is registered under for this process (`core.factory.register`)."""
    if isinstance(value, (list, tuple)):
        return [_named(v) for v in value]
    if callable(value):
        from bindbench.core.factory import register

        return register(value)
    return value


def _dotted(mapping: Mapping, prefix: str = "") -> list[tuple[str, object]]:
    items = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            items += _dotted(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def run(
    target: str | None = None,
    *,
    profile: str = "quick",
    sets: Sets = (),
    seed: int | None = None,
    out: str | Path | None = None,
    command: str | None = None,
    quiet: bool = False,
    console=None,
    **options,
) -> Path:
    """Runs a target's missing runs, writes the report, and returns the output folder.

    `sets` are the command line's `--set` overrides: one "key=value" string, a list of
    them, or a mapping ({"model.width": [16, 32], "train": {"steps": 500}}); a list value
    sweeps. `options` are those of `core.executor.RunOptions`: device, workers, ensemble,
    backend, address, threads, save_models (each run's trained model kept in
    `<folder>/models/`, for `bindbench.load_model`; None: those up to 100 MB), and the
    progress callbacks on_start, on_finish, on_eval.
    Progress is shown as on the command line (the runs to do, a bar, a line per finished
    run) on `console` (a `rich.console.Console`; default: standard output) unless `quiet`.
    Everything is validated before the output folder is touched (a `SpecError` names the
    problem). Example:

        >>> folder = bindbench.run("composition", sets={"model.width": [16, 32]}, workers=2)
        >>> runs = bindbench.Store(folder, create=False).runs()  # spec, status, metrics
    """
    sets = as_sets(sets)
    the_plan = plan(target, profile, sets, seed)
    shown = Shown(f"{target or 'default'} ({profile})", console, quiet)
    theirs = {name: options.pop(name, None) for name in ("on_start", "on_eval", "on_finish")}
    callbacks = shown.callbacks(**theirs)  # the progress first, then the caller's own
    how = RunOptions(**options, **callbacks)
    described = describe_device(resolve_device(how.device))
    if how.backend == "ray":
        from bindbench.core.ray_backend import check_backend

        check_backend(how.address)
    folder = Path(out) if out else the_plan.default_out()
    command = command or _as_command(target, profile, sets, seed, how.device)
    with Store(folder) as store:
        before = store.meta()  # a folder may be shared: keep what earlier commands said
        commands = before.get("commands") or ([before["command"]] if "command" in before else [])
        sweeps = {name: list(keys) for name, keys in before.get("sweeps", {}).items()}
        for name, keys in the_plan.sweeps.items():
            sweeps[name] = list(dict.fromkeys([*sweeps.get(name, []), *keys]))
        store.set_meta(
            target=the_plan.target,
            profile=profile,
            sweeps=sweeps,
            device=described,
            command=command,
            commands=list(dict.fromkeys([*commands, command])),
        )
        try:
            execute(the_plan.jobs, store, how)
        finally:
            shown.stop()
    build_report(folder)
    return folder


def load_model(folder: str | Path, run_id: str):
    """The trained model of a finished run, in eval mode on the CPU: its architecture rebuilt
    from the run's spec, its weights read from `<folder>/models/<run id>.safetensors` (weights
    only: nothing is unpickled).

    `run_id` may be the short id the progress lines show (a unique prefix). The model is what
    the experiment trained: composition's and scaling's student (the MLP, or your
    `model.factory`'s module), structure's base model, segregation's and slot_probe's
    autoencoder. It is ready for `probe` and `find_subnetwork`. Raises `SpecError` with one
    line if the run is not done, has no checkpoint, or the file is not a BindBench
    safetensors checkpoint. Example:

        >>> folder = bindbench.run("composition", sets={"model.width": 64})
        >>> (run,) = bindbench.Store(folder, create=False).runs()
        >>> model = bindbench.load_model(folder, run["id"])
        >>> bindbench.probe(model, inputs, targets, layers=["hidden.0", "hidden.1"])
    """
    import bindbench.experiments  # noqa: F401  (registers them, for the run's experiment)
    from bindbench.core.checkpoints import load

    return load(folder, run_id)


def _as_command(target, profile, sets, seed, device) -> str:
    words = ["bindbench", "run"] + ([target] if target else [])
    words += ["--profile", profile] + [w for s in sets for w in ("--set", s)]
    words += ["--seed", str(seed)] if seed is not None else []
    words += ["--device", device] if device != "cpu" else []
    return shlex.join(words)


def causal_binding_tests(
    model,
    tokenizer,
    entities: list[str],
    attributes: list[str],
    bindings: int = 3,
    contexts: int = 200,
    layers: list[str] | None = None,
    seed: int = 0,
    **templates: str,
) -> dict[str, dict[str, float]]:
    """The binding-ID causal tests (`core.patching`) on any causal LM with a Hugging Face-style
    interface (`model(input_ids)` gives logits, or an output with `.logits`) and its tokenizer:
    {layer: {"accuracy", each test's score, and its "_control"}}, per block by default.

    Contexts are written from the `entities` and `attributes` (one token each) with the
    `statement` and `query` templates of `tasks.contexts.TextContexts`; `contexts` of them
    are tested, each with a donor of other words (where there are 2 x `bindings` of each),
    and as many more fit the slot means.
    """
    import torch

    from bindbench.core.patching import binding_tests, block_names
    from bindbench.tasks.contexts import TextContexts

    text = TextContexts(tokenizer, entities, attributes, **templates)
    generator = torch.Generator().manual_seed(seed)
    tested, donors = text.sample_with_donors(contexts, generator, bindings)
    fit = text.sample(contexts, generator, bindings)
    return binding_tests(model, layers or block_names(model), tested, donors, fit, generator)
