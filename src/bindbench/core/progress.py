"""What a running command shows: a line of what is to do, a bar of runs (and of the steps
of the run in training), and one line per finished run. `bindbench run` and
`bindbench.run(quiet=False)` show the same."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class Shown:
    """The progress of one command; its `on_start`, `on_eval`, `on_finish` are the executor's
    callbacks (`core.executor.RunOptions`), each followed by the caller's own, if any."""

    def __init__(self, heading: str, console: Console | None = None, quiet: bool = False):
        self.heading, self.quiet = heading, quiet
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console or Console(highlight=False),
            disable=quiet,
        )
        self.runs = self.steps = None

    def callbacks(self, on_start=None, on_eval=None, on_finish=None) -> dict[str, Callable]:
        """The three callbacks, each calling this display and then the given one."""

        def chain(mine: Callable, theirs: Callable | None) -> Callable:
            if theirs is None:
                return mine

            def both(*args) -> None:
                mine(*args)
                theirs(*args)

            return both

        return {
            "on_start": chain(self.on_start, on_start),
            "on_eval": chain(self.on_eval, on_eval),
            "on_finish": chain(self.on_finish, on_finish),
        }

    def on_start(self, pending) -> None:
        if not self.quiet:
            self.bar.console.print(f"{self.heading}: {len(pending)} runs to do")
        self.runs = self.bar.add_task("runs", total=len(pending))
        self.bar.start()

    def on_eval(self, job, step: int, point: dict) -> None:  # runs trained in this process
        total = getattr(getattr(job.spec, "train", None), "steps", None)
        if self.steps is None:
            self.steps = self.bar.add_task("steps", total=total)
        description = f"{job.run_id[:8]} steps"
        self.bar.update(self.steps, completed=step, total=total, description=description, visible=True)

    def on_finish(self, job, outcome: dict) -> None:
        self.bar.advance(self.runs)
        if self.steps is not None:  # shown again by the next unit's first evaluation
            self.bar.update(self.steps, visible=False)
        if self.quiet:
            return
        label = " ".join(f"{k.split('.')[-1]}={v}" for k, v in job.label.items())
        metrics = outcome.get("metrics") or {}
        shown = " ".join(f"{k}={metrics[k]:.3f}" for k in job.experiment.metrics[:2] if k in metrics)
        error = (outcome.get("error") or "").splitlines()[:1]
        where = ", by another command" if outcome.get("elsewhere") else ""
        self.bar.console.print(  # one record per line, wrapped by the terminal, not by rich
            f"{outcome['status']:>8} {job.experiment.name} {job.run_id[:8]} {label} {shown}"
            f"{' ' + error[0] if error else ''} ({outcome['seconds']:.0f} s{where})",
            soft_wrap=True,
        )

    def stop(self) -> None:
        if self.runs is not None:
            self.bar.stop()
