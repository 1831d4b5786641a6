"""The command line: parses, validates, and calls the experiments and core.

Every bad input ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import shlex
import sqlite3
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from bindbench.core.errors import SpecError

# the plain help formatter: flags shown as flags, brackets as written (no rich markup)
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="BindBench: the binding problem, measured.",
)
# piped: 160 columns, not 80 (keys never cut; per-run lines never wrapped, see soft_wrap)
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


INTERRUPTED = "bindbench: interrupted; finished runs are kept, rerun to finish the rest"


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so that workers stop and leases are given back."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_on(signum: int, frame) -> None:
    raise Stopped(signum)


def _interrupted(err: BaseException) -> int:
    """The interrupt's line on stderr and its exit code (130 Ctrl-C, 128 + N signal N)."""
    import signal

    if isinstance(err, Stopped):
        name = signal.Signals(err.signum).name
        print(INTERRUPTED.replace("interrupted", f"stopped by {name}"), file=sys.stderr)
        return 128 + err.signum
    print(INTERRUPTED, file=sys.stderr)
    return 130


def _path(value: str) -> Path:
    """A path option's value; an empty one (`--out ''`) would be the current folder."""
    if not value.strip():
        raise typer.BadParameter("is empty: give a path")
    return Path(value)


def _print_version(value: bool) -> None:
    if value:
        from bindbench import __version__

        print(f"bindbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """BindBench: the binding problem, measured."""


@app.command("run")
def run_command(
    target: str = typer.Argument(None, help="experiment, suite or spec YAML (default: the default suite)"),
    profile: str = typer.Option("quick", help="quick | full | paper"),
    set_: list[str] = typer.Option(
        [], "--set", metavar="KEY=VALUE", help="override a key (KEY=[a,b] sweeps); repeatable"
    ),
    out: Path = typer.Option(
        None, parser=_path, metavar="PATH", help="output folder (default: runs/<target>-<profile>-<hash>)"
    ),
    workers: int = typer.Option(1, min=1, help="worker processes for the runs of a sweep"),
    threads: int = typer.Option(
        None, min=1, help="torch threads per worker (default: the free cores, split between workers)"
    ),
    no_ensemble: bool = typer.Option(
        False, "--no-ensemble", help="train every run alone, not as vectorized ensembles"
    ),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N | auto"),
    backend: str = typer.Option("local", help="local (processes here) | ray (Ray tasks)"),
    address: str = typer.Option(None, help="Ray cluster: host:port, ray://host:port or auto"),
    seed: int = typer.Option(None, min=0, help="set the seed of every run"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or per-run lines"),
    log_to: list[str] = typer.Option(
        [], "--log-to", metavar="SINK", help="mirror each run to mlflow or tensorboard (repeatable)"
    ),
    save_models: bool = typer.Option(
        None,
        "--save-models/--no-save-models",
        help="keep every trained model in <out>/models/ as safetensors (default: those up to 100 MB)",
        show_default=False,
    ),
) -> int:
    """Run an experiment or suite (missing runs only) and write its report.

    Exit code: 0 every run done, 1 some failed or diverged, 2 bad input, 130 interrupted
    (143 SIGTERM, 129 SIGHUP)."""
    import signal

    from bindbench.api import run
    from bindbench.core.config import parse_overrides

    parse_overrides(set_)  # a key given twice is an error here (in Python, the last one wins)
    command = shlex.join(["bindbench", *sys.argv[1:]]) if sys.argv[1:2] == ["run"] else None
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on)
    interrupt = None
    try:
        folder = run(
            target,
            profile=profile,
            sets=set_,
            seed=seed,
            out=out,
            command=command,
            device=device,
            workers=workers,
            threads=threads,
            ensemble=not no_ensemble,
            backend=backend,
            address=address,
            quiet=quiet,
            console=console,
            save_models=save_models,
            log_to=tuple(log_to),
        )
    except KeyboardInterrupt as err:  # caught here: Typer would turn it into a silent exit 130
        interrupt = err
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
    if interrupt is not None:
        return _interrupted(interrupt)
    console.print(f"report: {folder / 'report.html'}")
    return _exit_code(folder)


def _exit_code(folder: Path) -> int:
    """0 when every run of the folder finished well, else 1 with one line saying how many did not."""
    from bindbench.core.store import Store

    with Store(folder, create=False) as store:
        counts = store.counts()
    bad = {status: counts[status] for status in ("failed", "diverged") if status in counts}
    if not bad:
        return 0
    said = ", ".join(f"{n} {status}" for status, n in bad.items())
    shown = f"{said} of {sum(counts.values())} runs in {folder} (the report shows which)"
    print(f"bindbench: {shown}", file=sys.stderr)
    return 1


@app.command("list")
def list_command(
    experiment: str = typer.Argument(
        None, help="show this experiment's (or each of this suite's) keys, defaults and profiles"
    ),
) -> None:
    """List experiments, suites and profiles, or one experiment's spec keys."""
    from bindbench import catalog

    listing = catalog.load()  # cached: the experiments (and torch) are imported only when it is stale
    experiments, suites = listing["experiments"], listing["suites"]
    if experiment in suites:  # a suite: its experiments, each listed in turn
        console.print(f"[bold]{experiment}[/bold] (suite): {suites[experiment]['description']}")
        for name in suites[experiment]["experiments"]:
            _show_experiment(name, experiments[name])
        return
    if experiment is not None:
        if experiment not in experiments:
            raise SpecError(f"unknown experiment '{experiment}': known are {', '.join(sorted(experiments))}")
        _show_experiment(experiment, experiments[experiment])
        return

    table = Table("experiment", "profiles", "what it tests", box=None)
    for name, entry in experiments.items():
        table.add_row(name, ", ".join(entry["profiles"]), entry["title"])
    console.print(table)
    table = Table("suite", "experiments", "description", box=None)
    for name, suite in suites.items():
        table.add_row(name, ", ".join(suite["experiments"]), suite["description"])
    console.print(table)
    console.print(f"profiles: {', '.join(listing['profiles'])} (quick is the default)")


def _show_experiment(name: str, entry: dict) -> None:
    console.print(f"[bold]{name}[/bold]: {entry['title']}")
    table = Table(box=None)
    table.add_column("key", no_wrap=True)  # a key is never cut: it is what one types
    for column in ("type", "default", "meaning"):
        table.add_column(column)
    for row in entry["keys"]:
        table.add_row(*row)
    console.print(table)
    for profile, blocks in entry["profiles"].items():
        for number, shown in enumerate(blocks):
            console.print(f"profile {profile}{f' [{number + 1}]' if len(blocks) > 1 else ''}: {shown}")


@app.command("report")
def report_command(
    folder: Path = typer.Argument(..., help="an output folder of `bindbench run`"),
    figures: Path = typer.Option(None, help="also write every figure as FIGURES/<experiment>-<n>.png"),
    markdown: bool = typer.Option(
        False, "--markdown", help="print the claims and summary tables as Markdown"
    ),
) -> None:
    """Rebuild report.html and report.json from a folder's run store."""
    import json

    import bindbench.experiments  # noqa: F401
    from bindbench.core import report

    html_path, json_path = report.build_report(folder, figures)
    if markdown:
        print(report.markdown(json.loads(json_path.read_text())))
        return
    console.print(f"report: {html_path}\njson: {json_path}" + (f"\nfigures: {figures}" if figures else ""))


@app.command("export")
def export_command(
    folder: Path = typer.Argument(..., help="an output folder of `bindbench run`"),
    format_: str = typer.Option("csv", "--format", help="csv | parquet"),
    out: Path = typer.Option(
        None, parser=_path, metavar="PATH", help="file to write (default: <folder>/runs.<format>)"
    ),
) -> None:
    """Write the runs table (spec and metrics, one row per run) as CSV or Parquet."""
    from bindbench.core.export import export_runs

    console.print(f"wrote {export_runs(folder, format_, out)}")


data_app = typer.Typer(no_args_is_help=True, help="Write a benchmark's data as files.")
app.add_typer(data_app, name="data")


@data_app.command("scan")
def data_scan_command(
    split: str = typer.Option("simple", help="a SCAN split, e.g. simple, length, addprim_jump"),
    out: Path = typer.Option(
        ...,
        parser=_path,
        metavar="PATH",
        help="folder for tasks_train_<split>.txt and tasks_test_<split>.txt",
    ),
    seed: int = typer.Option(0, min=0, help="seed of the random simple split"),
) -> None:
    """Write a SCAN split in the original file format (IN: <command> OUT: <actions>)."""
    from bindbench.tasks import scan

    try:
        made = scan.make_split(split, seed)
    except ValueError as err:  # an unknown split, named with the known ones
        raise SpecError(str(err)) from None
    for path, rows in zip(scan.write_split(made, out), (made.train, made.test)):
        console.print(f"wrote {path} ({len(rows)} rows)")


@data_app.command("scenes")
def data_scenes_command(
    n: int = typer.Option(..., "--n", min=1, help="number of scenes"),
    out: Path = typer.Option(
        ...,
        parser=_path,
        metavar="PATH",
        help="folder for one PNG per scene and scenes.npz (labels, attributes)",
    ),
    seed: int = typer.Option(0, min=0, help="seed of the scene generator"),
    dataset: str = typer.Option("scenes", help="scenes (sprites with occlusion) | tetrominoes"),
    resolution: int = typer.Option(
        None, help="image side in pixels (default: 32; tetrominoes: a multiple of 7, default 35)"
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="a scene key=value, as the experiments' data.* keys (bindbench list segregation): "
        "min_objects, max_objects, sizes, colours, texture, distinct_colours, background, held_out",
    ),
) -> None:
    """Write multi-object scenes as PNGs and an .npz of instance labels and object attributes.

    The defaults are the segregation experiment's scenes (textured objects in continuous hues);
    with the same keys the files hold the same distribution as the experiment's scenes."""
    import torch

    from bindbench.core.config import build_spec, parse_overrides
    from bindbench.experiments.objects import setup
    from bindbench.experiments.objects.segregation import SEGREGATION_SCENES
    from bindbench.tasks.scenes import save_scenes

    if dataset not in ("scenes", "tetrominoes"):
        raise SpecError(f"--dataset {dataset!r}: choose from scenes, tetrominoes")
    base = SEGREGATION_SCENES.model_dump()
    if dataset == "tetrominoes":  # the DeepMind set: 3 flat pieces on a 7 x 7 board of 5 px blocks
        base = setup.SceneSpec(
            dataset="tetrominoes", resolution=35, min_objects=3, max_objects=3
        ).model_dump()
    overrides = parse_overrides(set_)
    overrides = {key.removeprefix("data."): value for key, value in overrides.items()}
    if resolution is not None:
        overrides["resolution"] = resolution
    scenes = build_spec(setup.SceneSpec, base=base, overrides=overrides)
    slots = setup.AutoencoderSpec(num_slots=scenes.max_objects + 1)
    try:  # the experiments' own check: the same one-line errors for the same keys
        setup.check(
            setup.SlotsSpec(
                data=scenes, model=slots, train=setup.SLOT_TRAIN.model_copy(update={"pixels": None})
            )
        )
    except ValueError as err:
        raise SpecError(str(err).replace("data.", "").splitlines()[0]) from None
    batch = setup.make_scenes(scenes).sample(n, torch.Generator().manual_seed(seed))
    path = save_scenes(batch, out)
    console.print(f"wrote {n} PNGs and {path}")


@app.command("bench")
def bench_command(
    quick: bool = typer.Option(False, "--quick", help="fewer repeats (a smoke test, noisier)"),
    only: list[str] = typer.Option(
        None, "--only", help="run only these groups: ensemble, mlp, scan, scenes, flow, preferences"
    ),
    out: Path = typer.Option(
        None, parser=_path, metavar="PATH", help="also write the figures as JSON to this file"
    ),
    compare: str = typer.Option(
        None,
        metavar="COMMAND",
        help="time BindBench's training loop against COMMAND (which prints '<number> steps/s'), A/B/A/B",
    ),
    width: int = typer.Option(256, min=1, help="--compare: the MLP's width (depth 4, batch 128 x 16)"),
    steps: int = typer.Option(300, min=1, help="--compare: training steps per round"),
    rounds: int = typer.Option(4, min=1, help="--compare: rounds of A then B"),
) -> None:
    """Measure speed side by side (ensemble vs one-by-one, GFLOP/s vs peak, data cost, or
    BindBench's training loop against another command)."""
    import json

    from bindbench.bench import GROUPS, machine, results_table, run_benchmarks

    unknown = sorted(set(only or GROUPS) - set(GROUPS))
    if unknown:
        raise SpecError(f"--only {unknown[0]!r}: choose from {', '.join(GROUPS)}")
    if compare is not None:
        from bindbench.bench import compare as compare_loops

        results = {"machine": machine(), "compare": compare_loops(compare, width, 4, steps, rounds)}
    else:
        results = run_benchmarks(quick=quick, only=tuple(only or GROUPS))
    console.print(results_table(results))
    machine = results["machine"]
    console.print(f"machine: {machine['processor']}, {machine['cores']} cores, torch {machine['torch']}")
    if out is not None:
        out.write_text(json.dumps(results, indent=1))
        console.print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI and returns its exit code: 0 ok, 1 runs that failed or diverged (or a
    worker that died), 2 bad input, 130 interrupted (128 + N: stopped by signal N)."""
    try:
        result = app(args=argv, prog_name="bindbench", standalone_mode=False)
    except SpecError as err:
        print(f"bindbench: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a path that cannot be read or written: the user's to fix
        where = f": {err.filename}" if err.filename else ""
        print(f"bindbench: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as err:  # damaged while in use, or a full disk under the store
        print(f"bindbench: error: the run store failed: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, typer.Abort) as err:
        return _interrupted(err)
    except Exception as err:
        # a worker died: only possible once the worker module (and torch) was imported, which
        # `--help` and `list` never do, so that they start fast
        worker = sys.modules.get("bindbench.core.worker")
        if worker is not None and isinstance(err, worker.WorkerDied):
            print(f"bindbench: error: {err}", file=sys.stderr)
            return 1
        # Typer's (vendored click) usage errors: bad option, missing argument, wrong type.
        if not hasattr(err, "format_message") or not hasattr(err, "exit_code"):
            raise
        if type(err).__name__ == "NoArgsIsHelpError":
            print(err.format_message())
            return 0
        print(f"bindbench: error: {' '.join(err.format_message().split())}", file=sys.stderr)
        return err.exit_code
    return result if isinstance(result, int) else 0


def entry() -> None:
    sys.exit(main())
