"""`bindbench bench`: speed, measured side by side in one process and reported as ratios.

(a) a vectorized ensemble of 32 small MLPs against the same 32 trained one after another;
(b) achieved GFLOP/s of training a width-1024 depth-4 MLP against the peak matmul GFLOP/s
    measured in the same run (the best of square matmuls of 1,024, 2,048 and 4,096);
(c) generating a hyperteacher batch as a fraction of a training step;
(d)-(g) SCAN, scenes, the flow generator and preference demonstrations, likewise.
Every case includes what a real run does per step: a fresh batch, forward, backward, AdamW.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from rich.table import Table

from bindbench.core.device import keep_freed_memory, others_busy, threads_per_worker, use_cpu
from bindbench.core.ensemble import Ensemble, StackedAdamW
from bindbench.core.errors import SpecError
from bindbench.core.training import autocast, make_optimizer
from bindbench.experiments.hyperteacher.setup import student_inputs
from bindbench.models import MLP
from bindbench.tasks.hyperteacher import HyperTeacher

BATCH_TASKS = 128  # the reference's batch: 128 tasks x 16 samples


def _seconds(step: Callable[[], None], repeats: int, warmup: int = 2) -> float:
    """Mean seconds per call, after `warmup` calls."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def _batch(teacher: HyperTeacher, generator: torch.Generator, tasks: int = BATCH_TASKS):
    batch = teacher.sample(tasks, "train", generator)
    return student_inputs(batch.encoding, batch.x), batch.y


def _plain_step(
    model, optimizer, teacher, generator, tasks: int = BATCH_TASKS, precision: str = "fp32"
) -> Callable[[], None]:
    mixed = autocast(precision, torch.device("cpu"))

    def step() -> None:
        inputs, targets = _batch(teacher, generator, tasks)
        with mixed:
            loss = torch.nn.functional.mse_loss(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _student_step(width: int, depth: int, precision: str = "fp32"):
    """(teacher, generator, model, step): a seeded hyperteacher student and its training step."""
    teacher = HyperTeacher()
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = MLP(teacher.encoding_dim + teacher.input_dim, teacher.output_dim, width, depth)
    step = _plain_step(model, make_optimizer(model, 3e-4, 3e-3), teacher, generator, precision=precision)
    return teacher, generator, model, step


PEAK_SIZES = (1024, 2048, 4096)  # one size is not the peak: 2048^3 reached half of 4096^3 here


def peak_matmul_gflops(sizes: tuple[int, ...] = PEAK_SIZES, repeats: int = 3, rounds: int = 3) -> dict:
    """fp32 GFLOP/s of square matmuls, best of `rounds` at each size, and the best over the
    sizes ("gflops"): what these cores can do, the measure of every "fraction of peak"."""
    by_size = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        best = min(_seconds(functools.partial(torch.mm, a, b), repeats, warmup=1) for _ in range(rounds))
        by_size[n] = 2 * n**3 / best / 1e9
    return {"gflops": max(by_size.values()), "by_size": by_size}


def bench_ensemble(
    members: int = 32,
    width: int = 64,
    depth: int = 4,
    steps: int = 10,
    batch_tasks: int = BATCH_TASKS,
    peak: float | None = None,
) -> dict:
    """(a) one ensemble step for all members against one plain step per member.

    With `peak` (matmul GFLOP/s), also the ceiling of any speed-up from batching: the
    plain loop's time against the members' matmul FLOPs done at the peak rate."""
    teacher = HyperTeacher()
    batch = functools.partial(_batch, tasks=batch_tasks)
    dim = teacher.encoding_dim + teacher.input_dim
    models = []
    for seed in range(members):
        torch.manual_seed(seed)
        models.append(MLP(dim, teacher.output_dim, width, depth))
    generators = [torch.Generator().manual_seed(seed) for seed in range(members)]
    plain = [_plain_step(m, make_optimizer(m, 3e-4, 3e-3), teacher, g) for m, g in zip(models, generators)]
    plain_seconds = _seconds(lambda: [step() for step in plain], steps)

    ensemble = Ensemble(models)
    optimizer = StackedAdamW(
        ensemble.parameters(), torch.full((members,), 3e-4), torch.full((members,), 3e-3)
    )
    ones = torch.ones(members)

    def ensemble_step() -> None:
        inputs, targets = zip(*(batch(teacher, g) for g in generators))
        losses = (ensemble(torch.stack(inputs)) - torch.stack(targets)).pow(2).mean(dim=(1, 2, 3))
        optimizer.zero_grad()
        losses.sum().backward()
        optimizer.step(ones)

    ensemble_seconds = _seconds(ensemble_step, steps)
    flops = members * _training_flops(models[0], batch_tasks * teacher.num_samples)
    result = {
        "case": f"ensemble of {members} MLPs (width {width}, depth {depth}, {batch_tasks} tasks x 16 "
        "per step) vs one after another",
        "plain_ms_per_step_all_members": 1e3 * plain_seconds,
        "ensemble_ms_per_step_all_members": 1e3 * ensemble_seconds,
        "speedup": plain_seconds / ensemble_seconds,
        "plain_gflops": flops / plain_seconds / 1e9,
        "ensemble_gflops": flops / ensemble_seconds / 1e9,
        "target": ">= 8x",
    }
    if peak is not None:
        result["ceiling_at_peak"] = plain_seconds / (flops / (peak * 1e9))
    return result


def _training_flops(model: torch.nn.Module, rows: int) -> float:
    """Forward + backward matmul FLOPs of one step: 6 x rows x weights of the Linear layers."""
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return 6.0 * rows * weights


def bench_mlp(
    width: int = 1024, depth: int = 4, steps: int = 5, peak: float | None = None, precision: str = "fp32"
) -> dict:
    """(b) achieved GFLOP/s of a training step, and (c) data generation's share of it;
    `precision="bf16"`: the forward and loss under bfloat16 autocast (train.precision)."""
    teacher, generator, model, step = _student_step(width, depth, precision)
    step_seconds = _seconds(step, steps)
    data_seconds = _seconds(lambda: _batch(teacher, generator), 20)
    gflops = _training_flops(model, BATCH_TASKS * teacher.num_samples) / step_seconds / 1e9
    result = {
        "case": f"training step, MLP width {width} depth {depth}, batch 128 tasks x 16 samples"
        + (", bf16 autocast" if precision == "bf16" else ""),
        "ms_per_step": 1e3 * step_seconds,
        "steps_per_second": 1 / step_seconds,
        "achieved_gflops": gflops,
        "data_ms_per_batch": 1e3 * data_seconds,
        "data_fraction_of_step": data_seconds / step_seconds,
    }
    if peak is not None:
        result["peak_matmul_gflops"] = peak
        result["fraction_of_peak"] = gflops / peak
    return result


def bench_memory(width: int = 256, depth: int = 4, steps: int = 10, rounds: int = 4) -> dict:
    """The training step with freed memory kept for reuse (what runs do,
    `core.device.keep_freed_memory`) against malloc's default thresholds, in alternating
    rounds of `steps` steps in one process: medians of steps/s and page faults per step."""
    step = _student_step(width, depth)[-1]
    speed: dict[bool, list[float]] = {True: [], False: []}
    faults: dict[bool, list[float]] = {True: [], False: []}
    try:
        for i in range(2 * rounds + 1):  # round 0 grows the heap and is not counted
            keep = i % 2 == 0
            keep_freed_memory(keep)
            step()  # the first step after a change pays for it
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            seconds = _seconds(step, steps, warmup=0)
            if i:
                speed[keep].append(1 / seconds)
                faults[keep].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps)
    finally:
        keep_freed_memory()
    kept, returned = statistics.median(speed[True]), statistics.median(speed[False])
    return {
        "case": f"training step, MLP width {width} depth {depth}: freed memory kept vs returned",
        "kept_steps_per_second": kept,
        "returned_steps_per_second": returned,
        "kept_faults_per_step": statistics.median(faults[True]),
        "returned_faults_per_step": statistics.median(faults[False]),
        "speedup": kept / returned,
    }


def bench_seq2seq(kind: str = "transformer", steps: int = 10, batch_size: int = 64) -> dict:
    """(d) SCAN training throughput: target tokens (actions and <eos>) per second of a full
    training step (batch drawn from the simple split, forward, backward, AdamW)."""
    from bindbench.experiments.scan import ScanSpec, make_model
    from bindbench.models.seq2seq import by_target_length, sequence_loss
    from bindbench.tasks import scan

    spec = ScanSpec.model_validate({"model": {"kind": kind}})
    source, target = scan.encode(scan.make_split("simple").train)
    torch.manual_seed(0)
    model = make_model(spec.model)
    optimizer = make_optimizer(model, spec.train.lr, spec.train.weight_decay)
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(steps + 2):
        rows = torch.randint(len(source), (batch_size,), generator=generator)
        batches.append(by_target_length(source[rows], target[rows], spec.train.length_groups, scan.PAD))
    queue = iter(batches)

    def step() -> None:
        loss = sequence_loss(model, next(queue))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = _seconds(step, steps)
    tokens = sum(int((t[:, 1:] != scan.PAD).sum()) for groups in batches[2:] for _, t in groups) / steps
    m = spec.model
    return {
        "case": f"SCAN {kind} (width {m.d_model}, {m.layers}+{m.layers} layers), batch {batch_size}",
        "ms_per_step": 1e3 * seconds,
        "target_tokens_per_second": tokens / seconds,
    }


def bench_scenes(resolution: int = 32, batch_size: int = 16, steps: int = 10, **sets) -> dict:
    """(e) Scenes generated per second, and the segregation autoencoder's training step (the
    experiment's loss, Adam) at the spec its `sets` give (dotted keys, e.g. model.decoder="conv");
    generation's share of a step is the target of issue 5 (< 5%)."""
    from bindbench.core.config import build_spec
    from bindbench.experiments.objects.setup import (
        SlotsSpec,
        batch_sampler,
        make_model,
        make_scenes,
        reconstruction_loss,
    )

    sets = {"data.resolution": resolution, "train.batch_size": batch_size, **sets}
    spec = build_spec(SlotsSpec, overrides=sets)
    scenes = make_scenes(spec.data)
    generator = torch.Generator().manual_seed(0)
    # generation is ~2 ms a batch: the best of 3 rounds of 50 keeps scheduler noise out of the share
    sample_seconds = min(_seconds(lambda: scenes.sample(batch_size, generator), 50) for _ in range(3))
    torch.manual_seed(0)
    model = make_model(spec.model, spec.data.resolution)
    optimizer = make_optimizer(model, spec.train.lr, spec.train.weight_decay)
    sample_batch = batch_sampler(spec, scenes, generator, generator)

    def step() -> None:
        loss = reconstruction_loss(model, sample_batch(0))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step_seconds = _seconds(step, steps)
    m = spec.model
    layout = f"stride {m.encoder_stride}, {m.decoder} decoder, {spec.train.pixels or 'all'} pixels"
    return {
        "case": f"{m.kind} autoencoder {resolution}x{resolution}, batch {batch_size}, {layout}",
        "scenes_per_second": batch_size / sample_seconds,
        "ms_per_step": 1e3 * step_seconds,
        "data_fraction_of_step": sample_seconds / step_seconds,
    }


def loop_speed(width: int = 256, depth: int = 4, steps: int = 300) -> float:
    """Steps/s of BindBench's own training loop (`core.training.train`) on a hyperteacher
    student: what a composition run does per step (fresh batch, forward, backward, AdamW),
    with one small evaluation at the end, on the threads a run would get."""
    from bindbench.core.training import train
    from bindbench.experiments.hyperteacher.setup import CompositionSpec, Setup, student_loss

    use_cpu(threads_per_worker(1))
    spec = CompositionSpec.model_validate(
        {
            "model": {"width": width, "depth": depth},
            "train": {"steps": steps, "eval_every": steps},
            "eval_tasks": 16,
        }
    )
    setup = Setup(spec, torch.device("cpu"))
    trained = train(setup.model, spec.train, lambda step: setup.batch(), student_loss, lambda model: {})
    return trained.steps / trained.seconds


SPEED = re.compile(r"([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?) steps/s")


def _timed(command: list[str] | str, shell: bool) -> float:
    """Runs a command and returns the last "<number> steps/s" it printed."""
    done = subprocess.run(command, shell=shell, capture_output=True, text=True)
    shown = command if shell else "bindbench's loop"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        raise SpecError(f"--compare: {shown!r} exited with {done.returncode}: {last}")
    found = SPEED.findall(done.stdout)
    if not found:
        raise SpecError(f"--compare: {shown!r} printed no '<number> steps/s' figure")
    return float(found[-1])


def compare(command: str, width: int = 256, depth: int = 4, steps: int = 300, rounds: int = 4) -> dict:
    """BindBench's training loop against another command, in alternation (A B A B ...).

    Each side runs in a fresh process; `command` (a shell line: the reference's own loop,
    say) must print its speed as "<number> steps/s". Alternating rounds spread slow phases of
    the machine over both sides; the medians and their ratio are reported.
    """
    ours = [
        sys.executable,
        "-c",
        f"from bindbench.bench import loop_speed; print(loop_speed({width}, {depth}, {steps}), 'steps/s')",
    ]
    a, b = [], []
    for _ in range(rounds):
        a.append(_timed(ours, shell=False))
        b.append(_timed(command, shell=True))
    return {
        "case": f"training loop, MLP width {width} depth {depth}, {steps} steps, {rounds} rounds A/B",
        "command": command,
        "bindbench_steps_per_second": a,
        "other_steps_per_second": b,
        "ratio": statistics.median(a) / statistics.median(b),
    }


GROUPS = ("ensemble", "mlp", "scan", "scenes", "flow", "preferences")


def bench_flow(width: int = 32, batch_size: int = 32, steps: int = 10, sampling_steps: int = 20) -> dict:
    """(f) The generation experiment's generator at its spec's defaults but `width`: a training
    step (a batch of prompts and their renders, the flow-matching loss, AdamW), the prompts
    rendered per second and their share of a step, and images drawn per second (guided Euler
    steps, two forward passes each)."""
    from bindbench.core.config import build_spec
    from bindbench.experiments.generation import GenerationSpec, make_generator, make_prompts
    from bindbench.models.flow import flow_loss, sample

    spec = build_spec(GenerationSpec, overrides={"generator.width": width, "train.batch_size": batch_size})
    prompts, generator = make_prompts(spec), torch.Generator().manual_seed(0)
    render_seconds = min(_seconds(lambda: prompts.sample(batch_size, generator), 20) for _ in range(3))
    torch.manual_seed(0)
    model = make_generator(spec)
    optimizer = make_optimizer(model, spec.train.lr, spec.train.weight_decay)

    def step() -> None:
        batch = prompts.sample(batch_size, generator)
        loss = flow_loss(model, batch.scenes.images, batch.tokens, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step_seconds = _seconds(step, steps)
    tokens = prompts.sample(batch_size, generator, render=False).tokens
    draw = functools.partial(sample, model, tokens, generator, sampling_steps, spec.sampling.guidance)
    draw_seconds = _seconds(draw, max(1, steps // 5), warmup=1)
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "case": f"flow U-Net width {width} ({parameters / 1e6:.2f} M), 32x32, batch {batch_size}",
        "ms_per_step": 1e3 * step_seconds,
        "prompts_per_second": batch_size / render_seconds,
        "data_fraction_of_step": render_seconds / step_seconds,
        "images_per_second": batch_size / draw_seconds,
        "sampling_steps": sampling_steps,
    }


def bench_preferences(width: int = 1024, steps: int = 10, features: int = 16) -> dict:
    """(g) Demonstrations generated per second (value iteration, rollout and grids of a batch of
    128 episodes), and their share of the preferences student's training step (the
    experiment's masked cross-entropy, AdamW; depth 2, `width`); the target of issue 23 (< 5%)."""
    from bindbench.core.config import build_spec
    from bindbench.experiments.hyperteacher.preferences import PreferenceSetup, PreferencesSpec

    spec = build_spec(
        PreferencesSpec, overrides={"model.width": width, "task.num_features": features, "eval_tasks": 2}
    )
    setup = PreferenceSetup(spec, torch.device("cpu"))
    batch_size = spec.train.batch_size
    # the best of 3 rounds keeps scheduler noise out of a share of a few percent
    sample_seconds = min(_seconds(setup.batch, 20) for _ in range(3))
    optimizer = make_optimizer(setup.model, spec.train.lr, spec.train.weight_decay)

    def step() -> None:
        inputs, actions = setup.batch()
        loss = setup.loss(setup.model(inputs), actions)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step_seconds = _seconds(step, steps)
    return {
        "case": f"preferences MLP width {width} depth 2, batch {batch_size} episodes"
        f" x {spec.task.timelimit} steps, F={features}",
        "ms_per_step": 1e3 * step_seconds,
        "demonstrations_per_second": batch_size / sample_seconds,
        "data_ms_per_batch": 1e3 * sample_seconds,
        "data_fraction_of_step": sample_seconds / step_seconds,
    }


def run_benchmarks(quick: bool = False, only: tuple[str, ...] = GROUPS) -> dict:
    """Runs the groups of cases in `only` on the cores other processes leave free (as runs
    do: `core.device.threads_per_worker`); returns plain data."""
    busy = others_busy()
    use_cpu(threads_per_worker(1, busy))
    steps = 3 if quick else 10
    results = {"machine": {**machine(), "busy_cores_at_start": busy}}
    if "ensemble" in only or "mlp" in only:
        results["peak_matmul"] = peak_matmul_gflops(PEAK_SIZES[:2] if quick else PEAK_SIZES)
        peak = results["peak_matmul"]["gflops"]
    if "ensemble" in only:
        results["ensemble"] = bench_ensemble(steps=steps, peak=peak)
        # where per-call overhead, not arithmetic, dominates: what ensembles are for
        results["ensemble_small"] = bench_ensemble(width=16, depth=2, batch_tasks=16, steps=steps, peak=peak)
    if "mlp" in only:
        # first: a heap that other cases grew keeps freed buffers whatever malloc is told
        results["memory_1024"] = bench_memory(1024, 4, steps=max(2, steps // 3), rounds=2 if quick else 3)
        results["memory_256"] = bench_memory(256, 4, steps=steps, rounds=2 if quick else 4)
        results["mlp_1024"] = bench_mlp(1024, 4, steps=max(2, steps // 2), peak=peak)
        results["mlp_256"] = bench_mlp(256, 4, steps=steps, peak=peak)
        results["mlp_1024_bf16"] = bench_mlp(1024, 4, steps=max(2, steps // 2), peak=peak, precision="bf16")
        results["mlp_256_bf16"] = bench_mlp(256, 4, steps=steps, peak=peak, precision="bf16")
    if "scan" in only:
        results["scan_transformer"] = bench_seq2seq("transformer", steps=steps)
        results["scan_lstm"] = bench_seq2seq("lstm", steps=steps)
    if "scenes" in only:  # the experiment's defaults: stride 2, MLP decoder, 256 pixels
        few = max(2, steps // 2)
        results["scenes_32"] = bench_scenes(32, steps=steps)
        results["scenes_32_all_pixels"] = bench_scenes(32, steps=steps, **{"train.pixels": None})
        reference = {"model.encoder_stride": 1, "model.decoder": "conv", "train.pixels": None}
        results["scenes_32_reference_layout"] = bench_scenes(32, steps=few, **reference)
        results["scenes_64"] = bench_scenes(64, steps=few, **{"train.pixels": 1024})
        results["scenes_64_reference_layout"] = bench_scenes(64, steps=few, **reference)
    if "flow" in only:  # the generation experiment's full-profile widths
        results["flow_16"] = bench_flow(16, steps=steps)
        results["flow_32"] = bench_flow(32, steps=steps)
    if "preferences" in only:  # the reference's width and the full profile's largest
        results["preferences_1024"] = bench_preferences(1024, steps=max(2, steps // 2))
        results["preferences_512"] = bench_preferences(512, steps=steps)
        results["preferences_128"] = bench_preferences(128, steps=steps)
    return results


def cpu_info() -> tuple[str, list[str]]:
    """This CPU's model name and the vector and matrix extensions it reports (from Linux's
    /proc/cpuinfo; the platform's processor string and [] elsewhere)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    wanted = ("avx", "fma", "amx", "sse4_2")
    flags = sorted(f for f in fields.get("flags", "").split() if f.startswith(wanted))
    return fields.get("model name", platform.processor() or platform.machine()), flags


def machine() -> dict:
    processor, flags = cpu_info()
    return {
        "platform": platform.platform(),
        "processor": processor,
        "cores": os.cpu_count(),
        "cpu_flags": flags,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def results_table(results: dict) -> Table:
    """The figures of `run_benchmarks` as a table: what was measured, the ratio, the target."""
    table = Table("benchmark", "measured", "ratio", "target", box=None)
    if "peak_matmul" in results:
        sizes = results["peak_matmul"]["by_size"]
        table.add_row(
            "peak: fp32 square matmul, best size",
            ", ".join(f"{n}: {g:.0f}" for n, g in sizes.items()) + " GFLOP/s",
            f"{results['peak_matmul']['gflops']:.0f} GFLOP/s",
            "",
        )
    for key in ("ensemble", "ensemble_small"):
        if key not in results:
            continue
        ens = results[key]
        plain, together = ens["plain_ms_per_step_all_members"], ens["ensemble_ms_per_step_all_members"]
        table.add_row(
            ens["case"],
            f"{plain:.1f} ms vs {together:.1f} ms",
            f"{ens['speedup']:.2f}x (at most {ens['ceiling_at_peak']:.1f}x at peak)",
            ens["target"] if key == "ensemble" else "",
        )
    for key in (k for k in ("mlp_1024", "mlp_256", "mlp_1024_bf16", "mlp_256_bf16") if k in results):
        case, fp32 = results[key], results.get(key.removesuffix("_bf16"))
        measured = f"{case['steps_per_second']:.2f} steps/s"
        if key.endswith("_bf16"):  # against the fp32 step, not the fp32 peak
            ratio = (
                f"{case['steps_per_second'] / fp32['steps_per_second']:.2f}x the fp32 step" if fp32 else ""
            )
            table.add_row(case["case"], measured, ratio, ">= 1.5x")
            continue
        table.add_row(
            case["case"],
            f"{case['achieved_gflops']:.1f} of {case['peak_matmul_gflops']:.1f} GFLOP/s, {measured}",
            f"{100 * case['fraction_of_peak']:.0f}% of peak",
            ">= 60%" if key == "mlp_1024" else "",
        )
        table.add_row(
            "  hyperteacher batch generation",
            f"{case['data_ms_per_batch']:.2f} ms per batch",
            f"{100 * case['data_fraction_of_step']:.2f}% of a step",
            "< 5%",
        )
    for case in (results[key] for key in ("memory_1024", "memory_256") if key in results):
        table.add_row(
            case["case"],
            f"{case['kept_steps_per_second']:.2f} vs {case['returned_steps_per_second']:.2f} steps/s,"
            f" {case['kept_faults_per_step']:.0f} vs {case['returned_faults_per_step']:.0f} page faults/step",
            f"{case['speedup']:.2f}x",
            "",
        )
    for case in (results[key] for key in ("scan_transformer", "scan_lstm") if key in results):
        table.add_row(
            case["case"],
            f"{case['ms_per_step']:.1f} ms per step",
            f"{case['target_tokens_per_second']:.0f} tokens/s",
            "",
        )
    for case in (value for key, value in results.items() if key.startswith("scenes_")):
        table.add_row(
            case["case"],
            f"{case['ms_per_step']:.1f} ms per step, {case['scenes_per_second']:.0f} scenes/s generated",
            f"data {100 * case['data_fraction_of_step']:.2f}% of a step",
            "< 5%",
        )
    for case in (value for key, value in results.items() if key.startswith("flow_")):
        table.add_row(
            case["case"],
            f"{case['ms_per_step']:.1f} ms per step, {case['images_per_second']:.1f} images/s drawn"
            f" ({case['sampling_steps']} steps), {case['prompts_per_second']:.0f} prompts/s rendered",
            f"data {100 * case['data_fraction_of_step']:.2f}% of a step",
            "< 5%",
        )
    for case in (value for key, value in results.items() if key.startswith("preferences_")):
        table.add_row(
            case["case"],
            f"{case['ms_per_step']:.1f} ms per step,"
            f" {case['demonstrations_per_second']:.0f} demonstrations/s",
            f"data {100 * case['data_fraction_of_step']:.2f}% of a step",
            "< 5%",
        )
    if "compare" in results:
        case = results["compare"]
        a, b = case["bindbench_steps_per_second"], case["other_steps_per_second"]
        table.add_row(
            case["case"],
            f"bindbench {statistics.median(a):.2f} vs {statistics.median(b):.2f} steps/s (medians)",
            f"{case['ratio']:.2f}x",
            ">= 1x",
        )
    return table
