"""The difference a change makes: mean metric of run folder A minus that of folder B.

Runs are matched by the settings that vary within A (seeds aside; keys only one folder has,
such as a key added since B was run, are not settings here), averaged over seeds; the table
has a column per value of the setting with most values and a row per combination of the
others, as the report's headline table, each cell mean(A) - mean(B).

    python tools/compare_runs.py A B --metric ood_r2 [--metric decodability_r2] [--where KEY=VALUE]
        [--experiment NAME]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from statistics import mean

from bindbench.core.config import flatten
from bindbench.core.report import format_cell
from bindbench.core.store import Store


def _runs(folder: str, where: dict[str, str], experiment: str | None) -> list[dict]:
    with Store(folder, create=False) as store:
        runs = [r for r in store.runs(experiment) if r["status"] == "done"]
    if len({r["experiment"] for r in runs}) > 1:
        raise SystemExit(f"compare_runs: {folder} holds several experiments: name one with --experiment")
    for run in runs:
        run["flat"] = flatten(run["spec"])
    return [r for r in runs if all(format_cell(r["flat"].get(k)) == v for k, v in where.items())]


def difference(a: list[dict], b: list[dict], metric: str) -> dict:
    """{"columns": [...], "rows": [[...], ...]} of mean(A) - mean(B) per setting."""
    values = defaultdict(set)
    for run in a:
        for key, value in run["flat"].items():
            values[key].add(format_cell(value))
    keys = [k for k, v in values.items() if len(v) > 1 and k != "seed"]
    if not keys:
        raise SystemExit("compare_runs: no setting varies within A")
    across = max(keys, key=lambda k: len(values[k]))
    down = [k for k in keys if k != across]
    means = []
    for runs in (a, b):
        cells = defaultdict(list)
        for run in runs:
            if metric in run["metrics"]:
                cells[tuple(run["flat"].get(k) for k in down), run["flat"].get(across)].append(
                    run["metrics"][metric]
                )
        means.append({cell: mean(found) for cell, found in cells.items()})
    columns = sorted({c for _, c in means[0]}, key=lambda v: (isinstance(v, str), v))
    rows = []
    for row in sorted({r for r, _ in means[0]}, key=lambda r: [format_cell(v) for v in r]):
        pairs = [(means[0].get((row, c)), means[1].get((row, c))) for c in columns]
        diffs = [f"{x - y:+.3f}" if x is not None and y is not None else "" for x, y in pairs]
        rows.append([", ".join(map(format_cell, row)) or metric, *diffs])
    corner = f"{', '.join(down)} \\ {across}" if down else across
    return {"columns": [corner, *map(format_cell, columns)], "rows": rows}


def markdown(table: dict) -> str:
    lines = ["| " + " | ".join(table["columns"]) + " |", "|" + "---|" * len(table["columns"])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in table["rows"]])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--metric", action="append", required=True)
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--experiment", help="the experiment to compare, in folders that hold several")
    args = parser.parse_args(argv)
    where = dict(item.split("=", 1) for item in args.where)
    a, b = (_runs(folder, where, args.experiment) for folder in (args.a, args.b))
    for metric in args.metric:
        print(f"{metric}, mean over seeds: {args.a} minus {args.b}\n\n{markdown(difference(a, b, metric))}\n")


if __name__ == "__main__":
    main()
