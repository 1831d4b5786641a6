"""Generation: does linear decodability predict which new combinations a generator fails to draw?

Redhardt, Akram & Schug (2025) find that where networks compose, the task's constituents are
linearly decodable from their activations, and that this decodability "correlates with
failures of text-to-image generation models to compose known concepts". BindBench's version
runs end to end on a CPU with a ground truth in place of a judge model:

- prompts are combinations of scene attributes ("a large red circle"; "a red circle left of
  a blue square"), a seeded 30% of the combinations held out of training (tasks.prompts);
- a small text-to-image U-Net is trained by flow matching on renders of the training
  combinations (models.flow);
- a judge, a classifier per concept trained on true renders of every combination (it never
  sees a generated image), reads each generated image back (models.judge): a prompt's
  success is the fraction of its samples whose every prompted attribute the judge reads;
- decodability as the reference measures it: the generator's blocks hooked while it draws,
  pooled over space at several points of the sampling schedule and their mean, one
  standardized logistic probe per concept fit on training prompts and scored on held-out
  combinations, the best layer by held-out F1; a prompt's decodability is minus its samples'
  mean log-loss there, to rank prompts against their success.

A run is one generator (width, coverage, seed); the report correlates decodability with
held-out success across prompts within a run and across runs.
"""

from __future__ import annotations

import base64
import math
from collections import defaultdict
from typing import Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from pydantic import Field, field_validator
from scipy import stats

from bindbench.core.claims import HELD, NOT_HELD, NOT_MEASURED, Claim, Verdict, exceeds, values
from bindbench.core.config import Spec, get_path
from bindbench.core.probes import capture, concept_probe
from bindbench.core.registry import Experiment, RunResult, register
from bindbench.core.report import Plot, column_width, panels
from bindbench.core.seeds import generator, seed_init, stream_seed
from bindbench.core.training import TrainSpec, train
from bindbench.models.flow import CrossAttention, FlowUNet, ResBlock, flow_loss, sample
from bindbench.models.judge import AttributeJudge, train_judge
from bindbench.tasks.prompts import DEFAULT_COLOURS, Prompts
from bindbench.tasks.scenes import SHAPES

JUDGE_BOUND = 0.95  # a judge less accurate on true renders than this makes its run's success figures moot
GRID_PROMPTS, GRID_SAMPLES = 4, 3  # the report's sample grid: prompts per split, samples per prompt
CHUNK = 256  # images per forward pass when judging or probing


class PromptSpec(Spec):
    form: Literal["object", "pair"] = Field(
        "object", description="one object (size x colour x shape) or two (colour and shape of each)"
    )
    colours: int = Field(8, ge=2, le=len(DEFAULT_COLOURS), description="colours named")
    shapes: int = Field(4, ge=2, le=len(SHAPES), description="shapes named")
    resolution: int = Field(
        32, ge=16, multiple_of=8, description="image side in pixels (the U-Net halves 2x2 patches twice)"
    )
    held_out: float = Field(
        0.3, gt=0, lt=1, description="fraction of the combinations held out of training (coverage: 1 - this)"
    )
    hue_jitter: float = Field(0.03, ge=0, le=0.1, description="hue drawn within this of the colour's")


class GeneratorSpec(Spec):
    width: int = Field(
        32, ge=8, multiple_of=8, description="U-Net channels at the top, twice that below (group norms of 8)"
    )
    dim: int = Field(64, ge=4, multiple_of=4, description="prompt and time features (4 attention heads)")
    drop_prompt: float = Field(0.1, ge=0, lt=1, description="training rows given the null prompt (guidance)")


class JudgeSpec(Spec):
    channels: int = Field(16, ge=1, description="convolution channels (twice that below)")
    hidden: int = Field(64, ge=1, description="features before the heads")
    steps: int = Field(800, ge=1, description="Adam steps on true renders of every combination")
    batch_size: int = Field(64, ge=2, description="renders per step")
    lr: float = Field(3e-3, gt=0, description="learning rate (cosine to a tenth)")
    check_images: int = Field(1000, ge=1, description="true held-out renders its accuracy is measured on")
    # added after the first full runs, out of the run id at their defaults: a run whose judge
    # reached the target after `steps` is the same as before
    target: float = Field(
        0.98,
        gt=0,
        le=1,
        description="below this accuracy the judge trains on, steps/2 at a time at a tenth of lr",
        json_schema_extra={"omit_at_default": True},
    )
    max_steps: int = Field(
        3200, ge=1, description="the most steps it trains in all", json_schema_extra={"omit_at_default": True}
    )


class SamplingSpec(Spec):
    prompts: int = Field(32, ge=2, description="prompts drawn per split (seen, held out), at most all")
    samples: int = Field(8, ge=1, description="images drawn per prompt")
    steps: int = Field(20, ge=1, description="Euler steps from noise to image")
    guidance: float = Field(3.0, ge=1, description="classifier-free guidance (1: none)")
    times: list[float] = Field(
        [0.3, 0.5, 0.7, 1.0],
        min_length=1,
        description="points of the schedule where the blocks are probed (the reference's), and their mean",
    )

    @field_validator("times")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0 <= t <= 1 for t in value) or len(set(value)) < len(value):
            raise ValueError(f"must be distinct fractions of the schedule in [0, 1], got {value}")
        return value


TRAIN = TrainSpec(  # the moving average draws far better than the last weights this early in training
    steps=1500,
    batch_size=32,
    lr=2e-3,
    weight_decay=0.0,
    warmup_steps=100,
    clip_norm=1.0,
    ema=0.999,
    eval_every=500,
)


class GenerationSpec(Spec):
    seed: int = Field(0, ge=0, description="the split, initialization, data and sampling")
    prompts: PromptSpec = PromptSpec()
    generator: GeneratorSpec = GeneratorSpec()
    judge: JudgeSpec = JudgeSpec()
    sampling: SamplingSpec = SamplingSpec()
    train: TrainSpec = TRAIN


def make_prompts(spec: GenerationSpec, device: torch.device | str = "cpu") -> Prompts:
    p = spec.prompts
    return Prompts(
        p.form,
        DEFAULT_COLOURS[: p.colours],
        SHAPES[: p.shapes],
        p.resolution,
        p.held_out,
        spec.seed,
        p.hue_jitter,
        device,
    )


def check(spec: GenerationSpec) -> None:
    """Rejects a split that holds no combination out, before any run."""
    prompts = make_prompts(spec)
    if len(prompts.test_index) == 0:
        raise ValueError(
            f"prompts.held_out={spec.prompts.held_out} holds out none of the {len(prompts.combinations)} "
            "combinations (none can go without leaving an attribute value untrained): raise it, or name "
            "more colours or shapes"
        )


def make_generator(spec: GenerationSpec) -> FlowUNet:
    """A run's untrained generator, as its checkpoint holds it (`Experiment.make_model`)."""
    prompts = make_prompts(spec)
    length = prompts.tokenize(prompts.combinations[:1]).shape[1]
    return FlowUNet(len(prompts.vocab), length, spec.generator.width, spec.generator.dim)


def blocks(model: torch.nn.Module) -> list[str]:
    """The names of the generator's blocks the probes read: its residual and attention blocks."""
    return [name for name, m in model.named_modules() if isinstance(m, (ResBlock, CrossAttention))]


def _judged(judge: AttributeJudge, images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(n,) bool: the judge reads back every concept of the prompt."""
    return (judge.read(images, CHUNK) == values).all(1)


def fit_judge(
    spec: GenerationSpec, prompts: Prompts, device: torch.device
) -> tuple[AttributeJudge, float, int]:
    """The judge trained on true renders of every combination, its accuracy (every concept
    right) on fresh true renders of the held-out combinations, and the steps it took: `steps`,
    then `steps // 2` more at a tenth of the rate while that accuracy (on new renders each
    time) is below `target`, up to `max_steps`. The accuracy is that of the check that ended
    training: with the target above the claim's bound, its selection cannot carry a judge
    over the bound."""
    j, draws = spec.judge, generator(spec.seed, "judge", device=device)
    sizes = tuple(len(v) for v in prompts.concepts.values())
    torch.manual_seed(stream_seed(spec.seed, "judge", 1))  # its initialization: the run's, not the process's
    judge = AttributeJudge(sizes, j.channels, j.hidden).to(device)

    def draw(batch_size: int):
        batch = prompts.sample(batch_size, draws, split="all")
        return batch.scenes.images, batch.values

    def accuracy() -> float:
        held = prompts.sample(j.check_images, draws, split="test")
        return float(_judged(judge, held.scenes.images, held.values).double().mean())

    train_judge(judge, draw, j.steps, j.batch_size, j.lr)
    done, found = j.steps, accuracy()
    while found < j.target and done < j.max_steps:
        more = min(max(1, j.steps // 2), j.max_steps - done)
        train_judge(judge, draw, more, j.batch_size, j.lr / 10)
        done, found = done + more, accuracy()
    return judge, found, done


def evaluation_prompts(spec: GenerationSpec, prompts: Prompts) -> dict[str, torch.Tensor]:
    """The combinations drawn for each split (seeded, without repeats), each to be drawn
    `sampling.samples` times: {"seen": (m,), "held_out": (m,)} indices into combinations."""
    gen = generator(spec.seed, "samples")
    chosen = {}
    for split, pool in (("seen", prompts.train_index), ("held_out", prompts.test_index)):
        order = torch.randperm(len(pool), generator=gen)[: spec.sampling.prompts]
        chosen[split] = pool.cpu()[order.sort().values]
    return chosen


def draw(
    spec: GenerationSpec, model: FlowUNet, prompts: Prompts, combos: torch.Tensor, stream: int, device
) -> dict:
    """Samples of every chosen combination (noise from the run's `stream`-th samples stream):
    the images and each block's activations at the probed times of the schedule, pooled over
    space, {time: {block: (n, c)}}, their mean over the times {"mean": ...}, and the prompt
    encoder's output pooled over tokens {"text": {"prompt": (n, d)}}."""
    s = spec.sampling
    values = prompts.combinations[combos.to(prompts.device)].repeat_interleave(s.samples, 0)
    tokens = prompts.tokenize(values).to(device)
    gen = generator(spec.seed, "samples", stream, device=device)
    images, pooled = [], defaultdict(lambda: defaultdict(list))
    layers = blocks(model)
    for part in range(0, len(tokens), CHUNK):
        words = tokens[part : part + CHUNK]
        with torch.no_grad():
            pooled["text"]["prompt"].append(model.prompt(words).mean(1).double().cpu())
        out, at = sample(model, words, gen, s.steps, s.guidance, spec.prompts.resolution, tuple(s.times))
        images.append(out)
        for time, x in at.items():
            t = torch.full((len(x),), min(s.steps, round(time * s.steps)) / s.steps, device=device)
            nobody = torch.zeros(len(x), dtype=torch.bool, device=device)
            for name, act in capture(model, (x, t, words, nobody), layers).items():
                pooled[time][name].append(act.mean((2, 3)).double().cpu())
    acts = {time: {name: torch.cat(parts) for name, parts in by.items()} for time, by in pooled.items()}
    acts["mean"] = {name: sum(acts[t][name] for t in s.times) / len(s.times) for name in layers}
    return {"images": torch.cat(images), "values": values, "acts": acts}


def decodability(seen: dict, held: dict, concept_sizes: tuple[int, ...], samples: int) -> tuple[dict, dict]:
    """Probes per (time, block), fit on the seen prompts' samples, scored on the held-out
    ones. Returns (metrics of the best by held-out mean F1, extra): per-probe F1 and exact
    match, and the held-out prompts' decodability at the best (minus mean log-loss). The
    prompt encoder's probe ("text", when drawn) is reported beside, never the best: it reads
    the tokens, which name every concept whether or not the image pathway carries them."""
    table, best, metrics = {}, None, {}
    for time, by_layer in seen["acts"].items():
        for name, x in by_layer.items():
            found = concept_probe(
                x, seen["values"].cpu(), held["acts"][time][name], held["values"].cpu(), concept_sizes
            )
            key = name if time == "text" else f"{name}@{time}"
            table[key] = {"f1": found["mean_f1"], "exact_match": found["exact_match"]}
            if time == "text":
                metrics["decodability_text_f1"] = found["mean_f1"]
            elif best is None or found["mean_f1"] > best[1]["mean_f1"]:
                best = (key, found)
    key, found = best
    per_prompt = -found["log_loss"].reshape(-1, samples).mean(1)  # (m,) one per held-out prompt
    metrics.update(decodability_f1=found["mean_f1"], decodability_exact=found["exact_match"])
    return metrics, {"probes": table, "best_probe": key, "prompt_decodability": per_prompt.tolist()}


def _grid_pixels(images: torch.Tensor) -> dict:
    """8-bit pixels (n, h, w, 3) as base64 in JSON, with their shape."""
    pixels = (images.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return {"shape": list(pixels.shape), "base64": base64.b64encode(pixels.tobytes()).decode()}


def _grid(spec: GenerationSpec, prompts: Prompts, chosen: dict, drawn: dict) -> dict:
    """The report's sample grid: for the first prompts of each split, a true render beside samples."""
    grid, gen = {}, generator(spec.seed, "samples", 0, device=prompts.device)
    shown = min(GRID_SAMPLES, spec.sampling.samples)
    for split, combos in chosen.items():
        combos = combos[:GRID_PROMPTS]
        values = prompts.combinations[combos.to(prompts.device)]
        true = prompts.render(values, gen).images
        rows = torch.arange(len(combos))[:, None] * spec.sampling.samples + torch.arange(shown)
        generated = drawn[split]["images"][rows.flatten()].reshape(len(combos), shown, *true.shape[1:])
        cells = torch.cat([true[:, None].cpu(), generated.cpu()], 1).flatten(0, 1)
        grid[split] = {"prompts": prompts.describe(values), "columns": 1 + shown, **_grid_pixels(cells)}
    return grid


def run(spec: GenerationSpec, ctx) -> RunResult:
    device = ctx.device
    prompts = make_prompts(spec, device)
    judge, judge_accuracy, judge_steps = fit_judge(spec, prompts, device)
    seed_init(spec.seed)
    model = make_generator(spec).to(device)
    data, noise = generator(spec.seed, "data", device=device), generator(spec.seed, "noise", device=device)
    shared = generator(spec.seed, "eval", device=device)
    fixed = {split: prompts.sample(256, shared, split=split) for split in ("train", "test")}
    fixed_noise = stream_seed(spec.seed, "eval", 1)  # the noise of every evaluation of the loss

    def sample_batch(step):
        batch = prompts.sample(spec.train.batch_size, data)
        return batch.scenes.images, batch.tokens

    def loss(m, batch):
        return flow_loss(m, *batch, noise, spec.generator.drop_prompt)

    def evaluate(m):  # the flow loss on fixed renders of seen and held-out combinations, fixed noise
        held = torch.Generator(device=device)
        out = {}
        for name, split in (("loss_seen", "train"), ("loss_held_out", "test")):
            held.manual_seed(fixed_noise)
            out[name] = float(flow_loss(m, fixed[split].scenes.images, fixed[split].tokens, held, 0.0))
        return out

    trained = train(model, spec.train, sample_batch, loss, evaluate, ctx.on_eval)
    if trained.diverged:
        return RunResult(metrics={}, curve=trained.curve, diverged=True)

    model.eval()
    chosen = evaluation_prompts(spec, prompts)
    drawn = {
        split: draw(spec, model, prompts, combos, 1 + i, device)
        for i, (split, combos) in enumerate(chosen.items())
    }
    success, concepts = {}, {}
    for split, d in drawn.items():
        right = (judge.read(d["images"], CHUNK) == d["values"].to(device)).double().cpu()  # (n, c)
        success[split] = right.all(1).double().reshape(-1, spec.sampling.samples).mean(1)  # (m,) per prompt
        concepts[split] = dict(zip(prompts.concepts, right.mean(0).tolist()))  # each attribute read right
    sizes = tuple(len(v) for v in prompts.concepts.values())
    probed, extra = decodability(drawn["seen"], drawn["held_out"], sizes, spec.sampling.samples)
    per_prompt = extra["prompt_decodability"]
    within = (
        stats.spearmanr(per_prompt, success["held_out"]).statistic if success["held_out"].std() > 0 else None
    )
    metrics = {
        **trained.final,
        "success_held_out": float(success["held_out"].mean()),
        "success_seen": float(success["seen"].mean()),
        **probed,
        "prompt_spearman": float(within) if within is not None and np.isfinite(within) else math.nan,
        "judge_accuracy": judge_accuracy,
        "coverage": 1 - len(prompts.test_index) / len(prompts.combinations),
        "parameters": float(sum(p.numel() for p in model.parameters())),
        "seconds_training": trained.seconds,
    }
    extra.update(
        prompts_held_out=prompts.describe(prompts.combinations[chosen["held_out"].to(prompts.device)]),
        prompt_success=success["held_out"].tolist(),
        concept_success=concepts,
        judge_steps=judge_steps,
        grid=_grid(spec, prompts, chosen, drawn),
    )
    return RunResult(metrics=metrics, curve=trained.curve, extra=extra, model=model)


# --------------------------------------------------------------------------- report


def _done(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r["status"] == "done" and "success_held_out" in r["metrics"]]


def _coverage(run: dict) -> float:
    return round(run["metrics"]["coverage"], 3)


def _width(run: dict) -> int:
    return get_path(run["spec"], "generator.width")


def grid_plot(runs: list[dict]) -> Plot | None:
    """Samples of one run (the widest, at the highest coverage, the lowest seed) beside true
    renders: seen prompts on the left, held-out ones on the right, a row per prompt."""
    done = [r for r in _done(runs) if "grid" in r.get("extra", {})]
    if not done:
        return None
    shown = max(done, key=lambda r: (_width(r), _coverage(r), -r["spec"]["seed"]))
    grids = shown["extra"]["grid"]
    rows = max(len(g["prompts"]) for g in grids.values())
    columns = grids["seen"]["columns"]
    fig = Figure(figsize=(column_width(2 * 0.95 * columns + 0.8), 0.95 * rows + 0.5), layout="constrained")
    for sub, (split, title) in zip(
        fig.subfigures(1, 2), (("seen", "seen prompts"), ("held_out", "held-out prompts"))
    ):
        g = grids[split]
        pixels = np.frombuffer(base64.b64decode(g["base64"]), np.uint8).reshape(g["shape"])
        axes = np.atleast_2d(sub.subplots(rows, columns))
        for i, ax in enumerate(axes.flat):
            ax.set_xticks([])
            ax.set_yticks([])
            if i < len(pixels):
                ax.imshow(pixels[i], interpolation="nearest")
            else:
                ax.set_visible(False)
        for i, prompt in enumerate(g["prompts"]):
            axes[i, 0].set_ylabel(prompt.removeprefix("a ").replace(" left of a ", " |\n"), fontsize=6)
        for j, ax in enumerate(axes[0]):
            ax.set_title("true" if j == 0 else f"sample {j}", fontsize=7)
        sub.suptitle(title, fontsize=8)
    where = f"width {_width(shown)}, coverage {_coverage(shown):g}, seed {shown['spec']['seed']}"
    data = {"run": shown["id"], **{split: g["prompts"] for split, g in grids.items()}}
    return Plot(f"Samples of seen and held-out prompts beside true renders ({where})", fig, data)


def _mean_by(runs: list[dict], key, metric: str) -> dict:
    by = defaultdict(list)
    for r in runs:
        by[key(r)].append(r["metrics"][metric])
    return {k: (float(np.mean(v)), float(np.std(v))) for k, v in sorted(by.items())}


def success_plot(runs: list[dict]) -> Plot | None:
    """Seen and held-out success against coverage (a line per width) and width (per coverage)."""
    done = _done(runs)
    if not done:
        return None
    fig, axes = panels(2, height=2.9)
    data = {}
    for ax, (x_of, line_of, x_name, line_name) in zip(
        axes, ((_coverage, _width, "coverage", "width"), (_width, _coverage, "width", "coverage"))
    ):
        for j, line in enumerate(sorted({line_of(r) for r in done})):
            part = [r for r in done if line_of(r) == line]
            for metric, style in (("success_held_out", "-"), ("success_seen", "--")):
                means = _mean_by(part, x_of, metric)
                xs = list(means)
                ax.errorbar(
                    xs,
                    [m for m, _ in means.values()],
                    [s for _, s in means.values()],
                    color=f"C{j}",
                    linestyle=style,
                    marker="o",
                    capsize=2,
                    label=f"{line_name} {line:g}, {'held out' if metric == 'success_held_out' else 'seen'}",
                )
                data[f"{x_name}: {line_name}={line:g} {metric}"] = {str(k): v for k, v in means.items()}
        ax.set_xlabel(x_name)
        ax.set_ylabel("generation success")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[0].set_title("against coverage (solid: held out)", fontsize=9)
    axes[1].set_title("against width (dashed: seen)", fontsize=9)
    return Plot(
        "Generation success against coverage and width (mean ± std over seeds)",
        fig,
        data,
        _concept_table(done),
    )


def _concept_table(runs: list[dict]) -> dict | None:
    """Each attribute read right on the generated images, seen and held out, per width and
    coverage (mean over seeds): which part of a prompt fails."""
    runs = [r for r in runs if "concept_success" in r.get("extra", {})]
    if not runs:
        return None
    names = list(runs[0]["extra"]["concept_success"]["seen"])
    cells = defaultdict(list)
    for r in runs:
        cells[(_width(r), _coverage(r))].append(r["extra"]["concept_success"])
    rows = []
    for (width, coverage), found in sorted(cells.items()):
        row = [width, f"{coverage:g}"]
        for split in ("seen", "held_out"):
            row += [f"{np.mean([f[split][n] for f in found]):.2f}" for n in names]
        rows.append(row)
    columns = ["width", "coverage", *[f"{n} ({split})" for split in ("seen", "held out") for n in names]]
    return {"columns": columns, "rows": rows}


def rank_correlation(x, y) -> tuple[float, float, float]:
    """Spearman's rho with a 95% interval from Fisher's z with Fieller's standard error
    1.06 / sqrt(n - 3) (Fieller, Hartley & Pearson 1957); NaNs when n < 4 or a side is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 4 or x.std() == 0 or y.std() == 0:
        return math.nan, math.nan, math.nan
    rho = float(stats.spearmanr(x, y).statistic)
    z, half = math.atanh(min(max(rho, -0.999999), 0.999999)), 1.96 * 1.06 / math.sqrt(len(x) - 3)
    return rho, math.tanh(z - half), math.tanh(z + half)


def _interval(rho: float, low: float, high: float) -> str:
    return "n/a" if math.isnan(rho) else f"{rho:.2f} [{low:.2f}, {high:.2f}]"


def correlation_plot(runs: list[dict]) -> Plot | None:
    """Decodability against held-out success: one dot per held-out prompt, one per run."""
    done = [r for r in _done(runs) if "prompt_decodability" in r.get("extra", {})]
    if not done:
        return None
    fig, (by_prompt, by_run) = panels(2, height=3.0)
    widths = sorted({_width(r) for r in done})
    for r in done:
        colour = f"C{widths.index(_width(r))}"
        by_prompt.scatter(
            r["extra"]["prompt_decodability"], r["extra"]["prompt_success"], s=6, alpha=0.5, color=colour
        )
    within = [r["metrics"]["prompt_spearman"] for r in done if np.isfinite(r["metrics"]["prompt_spearman"])]
    median = f"{np.median(within):.2f}" if within else "n/a"
    by_prompt.set_title(f"held-out prompts; median within-run rho {median}", fontsize=9)
    by_prompt.set_xlabel("decodability (minus mean log-loss, best probe)")
    by_prompt.set_ylabel("success of the prompt")
    x = [r["metrics"]["decodability_f1"] for r in done]
    y = [r["metrics"]["success_held_out"] for r in done]
    coverages = sorted({_coverage(r) for r in done})
    for w in widths:
        for c in coverages:
            mine = [i for i, r in enumerate(done) if _width(r) == w and _coverage(r) == c]
            if mine:
                by_run.scatter(
                    [x[i] for i in mine],
                    [y[i] for i in mine],
                    s=18,
                    color=f"C{widths.index(w)}",
                    marker="os^vD"[coverages.index(c) % 5],
                    label=f"width {w}, coverage {c:g}",
                )
    rho, low, high = rank_correlation(x, y)
    by_run.set_title(f"runs; Spearman {_interval(rho, low, high)}", fontsize=9)
    by_run.set_xlabel("decodability F1 (held out, best probe)")
    by_run.set_ylabel("held-out success")
    by_run.legend(fontsize=6)
    for ax in (by_prompt, by_run):
        ax.grid(alpha=0.3)
        ax.set_ylim(-0.02, 1.02)
    data = {
        "across_runs": {"spearman": rho, "ci95": [low, high], "runs": len(done)},
        "within_run_spearman": within,
        "runs": [[a, b] for a, b in zip(x, y)],
    }
    return Plot("Decodability against held-out generation success", fig, data)


def _time_label(time: str) -> str:
    return "mean over the times" if time == "mean" else f"{float(time):.0%} of the schedule"


def layers_plot(runs: list[dict]) -> Plot | None:
    """Held-out decodability F1 of every block (in forward order) at each probed time and
    their mean, averaged over a width's runs; the prompt encoder's as a dotted line."""
    done = [r for r in _done(runs) if "probes" in r.get("extra", {})]
    widths = sorted({_width(r) for r in done})
    if not widths:
        return None
    fig, axes = panels(len(widths), height=2.9)
    data = {}
    for ax, width in zip(axes, widths):
        mine = [r["extra"]["probes"] for r in done if _width(r) == width]
        keys = [k for k in mine[0] if "@" in k]
        names = list(dict.fromkeys(k.split("@")[0] for k in keys))
        times = list(dict.fromkeys(k.split("@")[1] for k in keys))
        for j, time in enumerate(times):
            f1 = [float(np.mean([p[f"{n}@{time}"]["f1"] for p in mine])) for n in names]
            ax.plot(range(len(names)), f1, marker="o", markersize=3, color=f"C{j}", label=_time_label(time))
            data[f"width={width} t={time}"] = dict(zip(names, f1))
        if "prompt" in mine[0]:
            text = float(np.mean([p["prompt"]["f1"] for p in mine]))
            ax.axhline(text, color="k", linestyle=":", linewidth=1, label="prompt encoder")
            data[f"width={width} prompt encoder"] = text
        ax.set_xticks(range(len(names)), names, rotation=60, fontsize=6)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("held-out F1 (mean over concepts)")
        ax.set_title(f"width {width} ({len(mine)} runs)", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    return Plot("Decodability of the prompt's concepts per block and time (held-out prompts)", fig, data)


def plots(runs: list[dict]) -> list[Plot]:
    found = (grid_plot(runs), success_plot(runs), correlation_plot(runs), layers_plot(runs))
    return [p for p in found if p is not None]


# --------------------------------------------------------------------------- claims


def _judge_reliable(runs: list[dict]) -> Verdict:
    """Every run's judge at 0.95 or more: a run's success figures rest on its own judge."""
    found = values(runs, "judge_accuracy")
    if not found:
        return Verdict(NOT_MEASURED, {}, "no finished run gives judge accuracy")
    low, below = min(found), sum(a < JUDGE_BOUND for a in found)
    numbers = {"lowest": low, "mean": float(np.mean(found)), "runs below": below, "runs": len(found)}
    detail = (
        f"judge accuracy on held-out true renders {low:.3f} at the lowest, {below} of {len(found)} runs below"
    )
    return Verdict(NOT_HELD if below else HELD, numbers, f"{detail} {JUDGE_BOUND}")


def _held_out_below_seen(runs: list[dict]) -> Verdict:
    done = _done(runs)
    if not done:
        return Verdict(NOT_MEASURED, {}, "no finished run")
    smallest = min(_coverage(r) for r in done)
    at = [r for r in done if _coverage(r) == smallest]
    verdict = exceeds(values(at, "success_seen"), values(at, "success_held_out"), "seen", "held out")
    return Verdict(
        verdict.status,
        {"coverage": smallest, **verdict.numbers},
        f"at coverage {smallest:g}: {verdict.detail}",
    )


def _decodability_predicts(runs: list[dict]) -> Verdict:
    done = _done(runs)
    x, y = values(done, "decodability_f1"), values(done, "success_held_out")
    rho, low, high = rank_correlation(x, y)
    if math.isnan(rho):
        return Verdict(NOT_MEASURED, {}, f"{len(x)} runs with both figures (4 needed, neither constant)")
    numbers = {"spearman": rho, "ci95 low": low, "ci95 high": high, "runs": len(x)}
    held = low > 0
    side = "above" if held else "not above"
    detail = f"Spearman {_interval(rho, low, high)} over {len(x)} runs: the interval is {side} 0"
    return Verdict(HELD if held else NOT_HELD, numbers, detail)


ANCHOR = "Redhardt, Akram & Schug 2025, section on text-to-image models (research note scaling-compgen)"
CLAIMS = (
    Claim(
        "judge_reliable",
        "In every run the judge reads every attribute of true held-out renders: accuracy at "
        "least 0.95 (else that run's success figures mean nothing)",
        "BindBench's own check of its ground-truth judge",
        _judge_reliable,
    ),
    Claim(
        "held_out_below_seen",
        "At the smallest coverage, held-out prompts are drawn right less often than seen ones: "
        "seen success above held-out success by more than the seed spread",
        ANCHOR,
        _held_out_below_seen,
    ),
    Claim(
        "decodability_predicts_success",
        "Across generators, the decodability of the prompt's concepts from the generator's blocks "
        "goes with held-out success: Spearman rho's 95% interval above 0",
        ANCHOR,
        _decodability_predicts,
    ),
)


EXPERIMENT = register(
    Experiment(
        name="generation",
        title="Generation: does linear decodability predict which new combinations a generator cannot draw?",
        spec=GenerationSpec,
        run=run,
        check=check,
        plots=plots,
        make_model=make_generator,
        profiles={
            # quick: a look at the pipeline on one small generator, not at the claims (full)
            "quick": {
                "generator.width": 16,
                "train.steps": 300,
                "train.eval_every": 150,
                "judge.steps": 300,
                "judge.max_steps": 600,
                "sampling.prompts": 12,
                "sampling.samples": 4,
                "sampling.steps": 10,
            },
            # full: 2 widths x 2 coverages x 3 seeds, 2k steps: 80 min with --workers 2 (README)
            "full": {
                "generator.width": [16, 32],
                "prompts.held_out": [0.3, 0.7],
                "seed": [0, 1, 2],
                "train.steps": 2000,
            },
        },
        columns=("generator.width", "prompts.held_out", "prompts.form", "seed"),
        metrics=(
            "success_held_out",
            "success_seen",
            "decodability_f1",
            "prompt_spearman",
            "judge_accuracy",
            "coverage",
        ),
        tiny={
            "prompts.resolution": 16,
            "generator.width": 8,
            "generator.dim": 8,
            "judge.channels": 4,
            "judge.hidden": 8,
            "judge.steps": 2,
            "judge.max_steps": 2,
            "judge.batch_size": 8,
            "judge.check_images": 8,
            "sampling.prompts": 3,
            "sampling.samples": 2,
            "sampling.steps": 2,
            "sampling.times": [1.0],
            "train.steps": 2,
            "train.warmup_steps": 0,
            "train.batch_size": 4,
            "train.eval_every": 1,
        },
        claims=CLAIMS,
    )
)
