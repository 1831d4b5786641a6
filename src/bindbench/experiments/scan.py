"""Composition on SCAN (Lake & Baroni 2018): seq2seq networks learn the random split and fail
on held-out compositions (add-jump) and on longer outputs (length).

One run trains one model (Transformer or LSTM with attention) on one split and scores
greedy decoding on that split's test commands: exact-match sequence accuracy (the
published metric), token accuracy, and exact match by output length.
"""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from pydantic import Field, model_validator

from bindbench.core import factory
from bindbench.core.claims import Claim, beyond, every, in_every, per_setting, values
from bindbench.core.config import ReferenceKeys, Spec
from bindbench.core.errors import SpecError
from bindbench.core.factory import FactoryPath, factory_field
from bindbench.core.registry import Experiment, RunResult, register
from bindbench.core.report import Plot, bars, column_width
from bindbench.core.seeds import generator, seed_init
from bindbench.core.training import TrainSpec, train
from bindbench.models import LSTMSeq2Seq, TransformerSeq2Seq
from bindbench.models.seq2seq import PrefixSeq2Seq, by_target_length, greedy_score, sequence_loss
from bindbench.tasks import scan

# Exact-match test accuracy (%) published for seq2seq RNNs, research note section 1.5
REFERENCE = {
    "simple": (99.7, "Lake & Baroni 2018, overall-best RNN"),
    "length": (13.8, "Lake & Baroni 2018, overall-best RNN (best 20.8)"),
    "addprim_jump": (0.08, "Lake & Baroni 2018, overall-best RNN (best 1.2)"),
    "addprim_turn_left": (90.0, "Lake & Baroni 2018, about 90 (best 90.3)"),
    "template_around_right": (2.5, "Loula et al. 2018, RNN about 0-2.5"),
}


class Seq2SeqSpec(Spec):
    kind: Literal["transformer", "lstm"] = "transformer"
    d_model: int = Field(128, ge=2, description="model width (LSTM: hidden units)")
    layers: int = Field(2, ge=1, description="layers of the encoder and of the decoder")
    heads: int = Field(4, ge=1, description="attention heads (transformer)")
    ff: int = Field(256, ge=1, description="feed-forward units (transformer)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout")
    factory: FactoryPath | None = factory_field("source_vocab, target_vocab")
    REFERENCE = ReferenceKeys()

    @model_validator(mode="after")
    def _heads_divide_width(self) -> Seq2SeqSpec:
        if self.kind == "transformer" and self.d_model % self.heads:
            raise ValueError(f"model.d_model={self.d_model} must be a multiple of model.heads={self.heads}")
        return self


class ScanTrainSpec(TrainSpec):
    """The training settings (batches of commands drawn with replacement), with length groups."""

    length_groups: int = Field(
        4,
        ge=1,
        description="a batch runs as this many groups of similar output length (same loss, less padding)",
    )


class ScanSpec(Spec):
    seed: int = Field(0, ge=0, description="initialization, data order, and the simple split")
    split: str = Field("simple", description=f"one of {', '.join(scan.SPLITS)} (any name with from_file)")
    from_file: str | None = Field(
        None, description="folder with tasks_{train,test}_<split>.txt to use instead of the generator"
    )
    files_sha256: str | None = Field(
        None,
        description="with from_file: the files' content hash, filled in when the spec is built"
        " (so a changed file is a new run)",
    )
    model: Seq2SeqSpec = Seq2SeqSpec()
    train: ScanTrainSpec = ScanTrainSpec(
        steps=3000, batch_size=64, lr=1e-3, weight_decay=0.0, warmup_steps=200, eval_every=1000, clip_norm=5.0
    )
    eval_subset: int = Field(
        512, ge=1, description="test commands scored at intermediate evaluations (the last scores all)"
    )

    @model_validator(mode="before")
    @classmethod
    def _hash_the_files(cls, data):
        # the run id must change with the files, not only with their folder's name
        if isinstance(data, dict) and data.get("from_file") and data.get("files_sha256") is None:
            paths = split_files(data.get("split", "simple"), data["from_file"])
            data = {**data, "files_sha256": files_digest(paths)}
        return data

    @model_validator(mode="after")
    def _known_split(self) -> ScanSpec:
        if self.from_file is None and self.split not in scan.SPLITS:
            raise ValueError(
                f"split={self.split!r} is not a SCAN split; choose from {', '.join(scan.SPLITS)}"
            )
        return self


_generated = functools.lru_cache(maxsize=16)(scan.make_split)


def split_files(split: str, from_file: str) -> list[Path]:
    """The train and test files of `split` in the folder `from_file`; both must exist."""
    paths = [Path(from_file) / name for name in scan.file_names(split)]
    for path in paths:
        if not path.is_file():
            raise ValueError(f"from_file: {path} does not exist")
    return paths


def files_digest(paths: list[Path]) -> str:
    """sha256 over the files' bytes, in order (the first 16 hex digits)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def load_split(spec: ScanSpec) -> scan.Split:
    """The split a run trains and tests on: generated, or read from the user's files (read
    afresh each time, and refused if they changed since the spec was built)."""
    if spec.from_file is None:
        return _generated(spec.split, spec.seed)
    paths = split_files(spec.split, spec.from_file)
    if files_digest(paths) != spec.files_sha256:
        raise ValueError(f"from_file: the files in {spec.from_file} changed since the run was planned; rerun")
    return scan.read_split(*paths, name=spec.split)


# what a model of the user's must be (docs/models.md)
INTERFACE = (
    "model(source, target_in): (batch, source_len), (batch, target_len) -> (batch, target_len, target_vocab)"
)


def check(spec: ScanSpec) -> None:
    load_split(spec)  # a missing or malformed file fails here
    if spec.model.factory is not None:
        check_own_model(spec.model)


def check_own_model(spec: Seq2SeqSpec) -> None:
    """Builds a user's model and calls it on a padded example batch: the logits must be
    (batch, target_len, target_vocab) and causal (greedy decoding feeds back its own tokens;
    a decoder that sees later target tokens learns to copy them under teacher forcing)."""
    path, model = spec.factory, make_model(spec)
    examples = _generated("simple", 0).train[:2]
    source, target = scan.encode(examples)
    target_in = target[:, :-1]
    shape = (*target_in.shape, len(scan.TARGET_VOCAB))
    logits = factory.try_forward(path, model, (source, target_in), INTERFACE)
    factory.expect_tensor(path, logits, shape, INTERFACE)
    changed = target_in.clone()
    changed[:, -1] = scan.TARGET_VOCAB.index("I_JUMP")
    later = factory.try_forward(path, model, (source, changed), INTERFACE)
    if not torch.allclose(logits[:, :-1], later[:, :-1], atol=1e-5):
        raise SpecError(
            f"model.factory={path}: the logits before the last target position changed with the last"
            " target token; the decoder must be causal (position t sees target_in[:, :t + 1] only)"
        )


def make_model(spec: Seq2SeqSpec) -> torch.nn.Module:
    vocab = (len(scan.SOURCE_VOCAB), len(scan.TARGET_VOCAB))
    ids = {"pad": scan.PAD, "bos": scan.BOS, "eos": scan.EOS}
    if spec.factory is not None:
        own = factory.build(spec.factory, source_vocab=vocab[0], target_vocab=vocab[1])
        return PrefixSeq2Seq(own, **ids)
    if spec.kind == "lstm":
        return LSTMSeq2Seq(*vocab, hidden=spec.d_model, layers=spec.layers, dropout=spec.dropout, **ids)
    return TransformerSeq2Seq(
        *vocab,
        d_model=spec.d_model,
        heads=spec.heads,
        layers=spec.layers,
        ff=spec.ff,
        dropout=spec.dropout,
        **ids,
    )


def model_of(spec: ScanSpec) -> torch.nn.Module:
    """A run's untrained model, as its checkpoint holds it (`Experiment.make_model`)."""
    return make_model(spec.model)


def by_length(exact: torch.Tensor, examples: list[scan.Example]) -> dict[str, float]:
    """Exact match per output length (number of actions)."""
    groups = defaultdict(list)
    for hit, e in zip(exact.tolist(), examples):
        groups[len(e.actions.split())].append(hit)
    return {str(n): float(np.mean(groups[n])) for n in sorted(groups)}


def run(spec: ScanSpec, ctx) -> RunResult:
    split = load_split(spec)
    device = ctx.device
    train_source, train_target = (t.to(device) for t in scan.encode(split.train))
    test_source, test_target = (t.to(device) for t in scan.encode(split.test))
    seed_init(spec.seed)
    model = make_model(spec.model).to(device)
    data = generator(spec.seed, "data", device=device)
    held = generator(spec.seed, "eval")
    subsets = {
        name: torch.randperm(len(rows), generator=held)[: spec.eval_subset].to(device)
        for name, rows in (("train", split.train), ("test", split.test))
    }

    def sample_batch(step: int):
        rows = torch.randint(len(train_source), (spec.train.batch_size,), generator=data, device=device)
        return by_target_length(train_source[rows], train_target[rows], spec.train.length_groups, scan.PAD)

    def evaluate(model) -> dict[str, float]:
        out = {}
        for name, (source, target) in (
            ("train", (train_source, train_target)),
            ("test", (test_source, test_target)),
        ):
            scored = greedy_score(model, source[subsets[name]], target[subsets[name]])
            out[f"{name}_exact"] = float(scored["exact"].float().mean())
        return out

    trained = train(model, spec.train, sample_batch, sequence_loss, evaluate, ctx.on_eval)
    if trained.diverged:
        return RunResult(metrics={}, curve=trained.curve, diverged=True)
    model.eval()
    final = greedy_score(model, test_source, test_target)
    metrics = {
        "exact_match": float(final["exact"].float().mean()),
        "token_accuracy": final["token_accuracy"],
        "train_exact": trained.final["train_exact"],
        "train_loss": trained.final.get("train_loss", float("nan")),
        "test_commands": float(len(split.test)),
        "seconds_training": trained.seconds,
    }
    extra = {"exact_by_length": by_length(final["exact"], split.test)}
    return RunResult(metrics=metrics, curve=trained.curve, extra=extra, model=model)


def _label(spec: dict) -> str:
    return spec["model"].get("factory") or spec["model"]["kind"]


def accuracy_plot(runs: list[dict]) -> Plot | None:
    """Exact match per split and model (mean and every seed) beside the published figures,
    with the same numbers as a summary table."""
    done = [r for r in runs if r["status"] == "done" and "exact_match" in r["metrics"]]
    if not done:
        return None
    cells = defaultdict(list)
    for r in done:
        cells[(r["spec"]["split"], _label(r["spec"]))].append(100 * r["metrics"]["exact_match"])
    splits = sorted({s for s, _ in cells}, key=lambda s: (s != "simple", s))  # ID first
    models = sorted({m for _, m in cells})
    fig = Figure(figsize=(column_width(1.3 + 1.2 * len(splits)), 3.6), layout="constrained")
    ax = fig.subplots()
    bars(ax, splits, {m: [cells.get((s, m), []) for s in splits] for m in models}, dots=8)
    for j, split in enumerate(splits):
        if split in REFERENCE:
            ax.hlines(REFERENCE[split][0], j - 0.4, j + 0.4, colors="grey", linestyles="--")
    ax.plot([], [], "--", color="grey", label="published RNN")
    rows = []
    for split in splits:
        reference, source = REFERENCE.get(split, (None, ""))
        for model in models:
            if values := cells.get((split, model)):
                mean, std = float(np.mean(values)), float(np.std(values))
                rows.append(dict(split=split, model=model, mean=mean, std=std, seeds=values))
                rows[-1].update(reference=reference, source=source)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    ax.set_ylabel("exact match on test (%)")
    ax.set_ylim(0, 105)
    ax.set_title("SCAN: ID (simple) against held-out splits")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)

    def percent(r: dict) -> str:
        return f"{r['mean']:.2f}" + (f" ± {r['std']:.2f}" if len(r["seeds"]) > 1 else "")

    table = {
        "columns": ["split", "model", "exact match %", "per seed", "published %", "source"],
        "rows": [
            [
                r["split"],
                r["model"],
                percent(r),
                ", ".join(f"{v:.2f}" for v in r["seeds"]),
                r["reference"],
                r["source"],
            ]
            for r in rows
        ],
    }
    return Plot("exact match per split, beside the published figures", fig, {"rows": rows}, table)


def length_plot(runs: list[dict]) -> Plot | None:
    """Exact match against output length on the length split's test set."""
    done = [
        r
        for r in runs
        if r["status"] == "done" and r["spec"]["split"] == "length" and r["extra"].get("exact_by_length")
    ]
    if not done:
        return None
    fig = Figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.subplots()
    data = defaultdict(dict)
    for r in done:
        curve = r["extra"]["exact_by_length"]
        lengths = sorted(map(int, curve))
        label = f"{_label(r['spec'])} seed {r['spec']['seed']}"
        ax.plot(lengths, [100 * curve[str(n)] for n in lengths], "o-", ms=3, label=label)
        data[label] = curve
    ax.set_xlabel("output length (actions)")
    ax.set_ylabel("exact match (%)")
    ax.set_ylim(-2, 102)
    ax.set_title("length split: longer than any training output")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return Plot("exact match by output length (length split)", fig, dict(data))


def plots(runs: list[dict]) -> list[Plot]:
    return [p for p in (accuracy_plot(runs), length_plot(runs)) if p is not None]


def _splits_beyond(runs: list[dict], splits: dict[str, tuple[float, bool]]):
    """The mean exact match of each split at or above (True) or below its bound, per model
    and any other setting that varies."""

    def one(part: list[dict]):
        return every(
            {
                split: beyond(values(part, "exact_match", split=split), bound, f"{split} exact match", above)
                for split, (bound, above) in splits.items()
            }
        )

    return in_every(per_setting(runs, ["split"]), one)


CLAIMS = (
    Claim(
        "random_split",
        "A seq2seq model learns SCAN's random split: exact match at least 0.9 on simple",
        "99.7% exact match, overall-best RNN (Lake & Baroni 2018)",
        functools.partial(_splits_beyond, splits={"simple": (0.9, True)}),
    ),
    Claim(
        "systematic_splits",
        "It fails where the test needs new compositions or longer outputs: exact match below "
        "0.25 on add-jump and on length",
        "0.08% on add-jump, 13.8% on length, overall-best RNN (Lake & Baroni 2018)",
        functools.partial(_splits_beyond, splits={"addprim_jump": (0.25, False), "length": (0.25, False)}),
    ),
)


EXPERIMENT = register(
    Experiment(
        name="scan",
        title="Composition on SCAN: seq2seq on the random split against held-out compositions and lengths",
        spec=ScanSpec,
        run=run,
        check=check,
        plots=plots,
        make_model=model_of,
        profiles={
            # The LSTM learns SCAN faster than the Transformer on a CPU (simple: 97% after 3k
            # steps, against 91% after 2k for the Transformer); both are in `paper`.
            "quick": {
                "split": ["simple", "addprim_jump", "length"],
                "model.kind": "lstm",
                "train.steps": 800,  # keeps make demo under 10 minutes (1,000 steps: 96 s a run)
                "train.eval_every": 400,
            },
            "full": {
                "split": ["simple", "addprim_jump", "addprim_turn_left", "length"],
                "model.kind": "lstm",
                "train.steps": 3000,
                "seed": [0, 1, 2],
            },
            "paper": {
                "split": list(scan.SPLITS),
                "model.kind": ["transformer", "lstm"],
                "model.d_model": 256,
                "model.layers": 3,
                "train.steps": 50000,
                "train.eval_every": 5000,
                "seed": [0, 1, 2, 3, 4],
            },
        },
        columns=("split", "model.kind", "model.factory", "seed"),
        metrics=("exact_match", "token_accuracy", "train_exact", "train_loss"),
        tiny={
            "model.d_model": 16,
            "model.layers": 1,
            "model.heads": 2,
            "model.ff": 16,
            "train.steps": 10,
            "train.batch_size": 8,
            "train.eval_every": 5,
            "train.warmup_steps": 0,
            "eval_subset": 16,
        },
        claims=CLAIMS,
    )
)
