"""Train Large, Then Compress (Li et al. 2020), measured honestly: tiny models or real ones.

The claim: for a fixed training budget, a larger model trained for fewer steps and then compressed
hard beats a smaller model trained for more steps, at equal inference latency or size. For each
seed this script:

1. takes the task: with ``--real``, the movie-review sentences (``python -m squeeze.data.assets
   movie-reviews``; squeeze's content-hash split, 80/10/10: fine-tuning sees the train part, model
   selection the validation part, every reported accuracy is on the test part); without it, a
   task generated offline with the tiny vocabulary (train.csv, split the same way, and a separate
   test.csv);
2. takes a SMALL and a LARGE model: with ``--real``, all-MiniLM-L6-v2 (22.7M parameters, the
   demo's encoder) and all-mpnet-base-v2 (109M, ``python -m squeeze.data.assets mpnet``), both
   pre-trained encoders without a task head (``--small``/``--large`` name others); without it,
   two tiny random BERTs (``squeeze.model.tiny``);
3. fine-tunes both on the same data for the same wall-clock budget. ``TrainConfig`` has steps,
   not seconds, so each model's seconds per step are measured first, in short alternating bursts
   (small, large, small, large, ...) so that background load hits both alike, and each model then
   gets ``max_steps = budget / seconds_per_step`` through ``squeeze.methods.finetune``. The seconds
   each run really trained are reported next to the budget;
4. compresses both with the same sweep (``squeeze.plan``: the library behind ``squeeze run``):
   int8; 30%, 50% and 70% of heads and FFN neurons removed, each with the same recovery
   fine-tuning, then int8; distillation into half the layers, then int8. One results.json and
   report per model;
5. times every artifact of both models again in one rotating measurement (the two sweeps timed
   theirs at different moments, and load drifts), then writes comparison.md, comparison.png and
   comparison.json to the seed's folder and says which model is more accurate at each latency
   and size budget. Both models are scored on the same test sentences, so each difference gets a
   95% paired bootstrap interval (``squeeze.core.stats``); a difference whose interval holds 0 is a
   tie.

After the last seed, summary.md, summary.json and summary.png in --out put the seeds side by side.

    python examples/train_large_then_compress.py --real [--seeds 0,1,2] [--budget-s 180]
    python examples/train_large_then_compress.py [--out .cache/tltc] [--seeds 0] [--quick]

Times on a 2-core Xeon: ``--real`` about 19 minutes per seed (3 minutes of fine-tuning per
model, validation, the two sweeps and the timing); the tiny version about 4 minutes per seed;
``--quick`` (tiny models, tiny budgets, few timing runs) checks the plumbing in under a minute
and its figures mean nothing. One seed is one sample: the step counts come from a timing, so
two runs differ. Believe a gap only if the seeds agree.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass(frozen=True)
class ModelSpec:
    """One side of the comparison: a checkpoint (``path``) or a tiny BERT built from ``shape``
    (hidden, layers, heads), and the learning rate it fine-tunes and recovers with."""

    name: str
    lr: float
    path: str | None = None
    shape: tuple[int, int, int] | None = None
    label: str = ""  # how tables name the checkpoint (its folder's name by default)


# The tiny pair: the large one has 25x the parameters and takes about 3x as long per training
# step on a CPU thread (tiny models are overhead-bound). Each learning rate was the best of three
# in 60 s runs on the tiny task (about 6,800 and 2,000 steps; validation accuracy small: 5e-4
# 0.67, 1e-3 0.72, 2e-3 0.55; large: 2.5e-4 0.76, 5e-4 0.77, 1e-3 0.54): sizes are compared
# fairly only when neither gets the other's settings.
TINY = (ModelSpec("small", 1e-3, shape=(32, 2, 4)), ModelSpec("large", 5e-4, shape=(128, 4, 4)))
# The real pair's learning rates are the ones each model's earlier runs here used (the demo's
# MiniLM fine-tune, benchmarks/mpnet.py); no search was run for this comparison.
REAL_LR = {"small": 1e-4, "large": 5e-5}
COLOURS = {"small": "tab:blue", "large": "tab:orange"}
MARKERS = ("o", "s", "^", "D", "v", "P")
LABELS = ("0", "1")
PRUNE_LEVELS = (0.3, 0.5, 0.7)


@dataclass(frozen=True)
class Settings:
    """What --real and --quick change (sizes and repetitions, never the method)."""

    real: bool
    budget_s: float
    calibration_steps: int
    calibration_rounds: int
    recovery_steps: int
    bench_runs: int
    bench_warmup: int
    bench_rounds: int
    max_length: int
    threads: int
    rows: int = 0  # tiny task size
    batch_size: int = 32
    seed: int = 0  # weight initialisation (tiny) or head initialisation, and batch order


def settings_for(quick: bool, real: bool, budget_s: float | None) -> Settings:
    """Tiny models run on one thread (they gain nothing from a second, and two threads on two
    shared cores spin-wait for each other: the same tiny step took 16 to 300 ms on a busy CI
    machine); real ones use both cores. Tiny sentences hold at most 6 words, so 8 tokens."""
    if real:
        return Settings(True, budget_s or 180.0, 8, 3, 40, 30, 5, 3, max_length=64, threads=2)
    if quick:
        return Settings(False, budget_s or 2.0, 3, 1, 2, 3, 1, 1, 8, 1, rows=1000)
    return Settings(False, budget_s or 60.0, 15, 3, 150, 40, 5, 3, 8, 1, rows=10000)


def pair_table_task(n: int, *, seed: int, table_seed: int = 1, rank: int = 16) -> list[tuple]:
    """``n`` sentences of 3-6 tiny-vocabulary words labelled by a fixed function of their first
    two words: sign(u[x] . v[y]) for random rank-``rank`` vectors.

    The order task (``squeeze.model.tiny.order_task``) is solved by a 1-layer, 16-wide model within
    a few hundred steps, so it cannot separate a small model from a large one; nor could the vote
    task, which is linear. This one is a 1,600-entry table with structure: a model has to find
    the two positions and learn a high-rank bilinear function, which takes capacity. Neither
    model gets near 100% in minutes, and the large one, after a slower start, keeps improving
    where the small one levels off; in 60-120 s budgets it ended 0-4 points ahead on validation.
    """
    from squeeze.model.tiny import FILLER_WORDS

    table_rng = random.Random(table_seed)
    u = {w: [table_rng.gauss(0, 1) for _ in range(rank)] for w in FILLER_WORDS}
    v = {w: [table_rng.gauss(0, 1) for _ in range(rank)] for w in FILLER_WORDS}
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.choices(FILLER_WORDS, k=rng.randint(3, 6))
        score = sum(p * q for p, q in zip(u[words[0]], v[words[1]], strict=True))
        rows.append((" ".join(words), LABELS[score > 0]))
    return rows


def task_data(folder: Path, s: Settings, reviews: str | None) -> tuple[Any, Any]:
    """The training data spec and the test spec (None: the test part of the same file).

    Tiny: train.csv (train + validation parts) and test.csv, other sentences drawn with another
    seed and labelled by the same table. Real: the movie reviews, label = sign of the score."""
    from squeeze.data.spec import DataSpec

    if s.real:
        if reviews is None:
            from squeeze.data.assets import movie_reviews

            reviews = str(movie_reviews(".cache/demo"))
        spec = DataSpec(reviews, text_column="text", label_column="score", label_map="sign")
        return spec, None
    from squeeze.model.tiny import write_rows

    folder.mkdir(parents=True, exist_ok=True)
    train = write_rows(folder / "train.csv", pair_table_task(s.rows, seed=0), ("text", "label"))
    test = write_rows(folder / "test.csv", pair_table_task(s.rows // 5, seed=1), ("text", "label"))
    return DataSpec(str(train)), DataSpec(str(test))


def model_specs(real: bool, small: str | None, large: str | None) -> tuple[ModelSpec, ...]:
    """The pair to compare: tiny BERTs, or checkpoints (by default MiniLM and MPNet)."""
    if not real:
        return TINY
    from squeeze.data.assets import demo_model_path, mpnet

    # MiniLM's package keeps the checkpoint in a folder called "model": name the defaults.
    picked = {
        "small": (small, "") if small else (str(demo_model_path()), "all-MiniLM-L6-v2"),
        "large": (large, "") if large else (str(mpnet(".cache/mpnet")), "all-mpnet-base-v2"),
    }
    return tuple(
        ModelSpec(name, REAL_LR[name], path=path, label=label or Path(path).name)
        for name, (path, label) in picked.items()
    )


def base_models(specs: tuple[ModelSpec, ...], folder: Path, seed: int) -> dict[str, Path]:
    """Each model's starting checkpoint: the given one, or a seeded untrained tiny classifier."""
    from squeeze.model.tiny import build_tiny, tiny_config

    out = {}
    for m in specs:
        if m.path is not None:
            out[m.name] = Path(m.path)
            continue
        hidden, layers, heads = m.shape
        config = tiny_config("bert", hidden=hidden, layers=layers, heads=heads)
        out[m.name] = build_tiny(
            "bert", folder / m.name, seed=seed, label_names=LABELS, config=config
        )
    return out


def _classifier(path: Path, labels: list[str]) -> Any:
    """``path`` loaded as a sequence classifier, given a fresh head when it has none (as
    ``squeeze.methods.finetune`` does)."""
    import squeeze
    from squeeze.core.types import Task
    from squeeze.model.checkpoint import detect_task, read_config

    has_head = detect_task(read_config(str(path))) is Task.SEQUENCE_CLASSIFICATION
    return squeeze.load(
        str(path),
        task=Task.SEQUENCE_CLASSIFICATION,
        allow_new_weights=not has_head,
        label_names=None if has_head else labels,
    )


def seconds_per_step(models: dict[str, Path], data: Any, s: Settings) -> dict[str, float]:
    """Mean seconds per optimizer step of each model, from alternating bursts of
    ``squeeze.train.loop.train`` on throw-away in-memory copies (the first step of a burst, which
    sets up the optimizer, is not counted). The mean, not the median: a budget is a sum of
    steps, and batches of long sentences make the step times skewed (the median of MiniLM's
    bursts once promised 300 s for a run that took 400)."""
    from squeeze.core.types import Task
    from squeeze.data.encoding import encode
    from squeeze.data.examples import load_dataset
    from squeeze.data.spec import training_part
    from squeeze.train.loop import TrainConfig, train

    dataset = load_dataset(training_part(data))
    labels = dataset.labels()
    loaded = {name: _classifier(path, labels) for name, path in models.items()}
    encoded = {
        name: encode(
            dataset,
            m.tokenizer,
            input_names=m.input_names,
            max_length=s.max_length,
            label2id=m.label2id,
        )
        for name, m in loaded.items()
    }
    gaps: dict[str, list[float]] = {name: [] for name in models}
    for burst in range(s.calibration_rounds):
        for name, m in loaded.items():
            stamps: list[float] = []
            # Another seed per burst: other batches, so the sentence lengths average out.
            config = TrainConfig(
                max_steps=s.calibration_steps + 1, batch_size=s.batch_size, seed=1000 + burst
            )
            train(
                m.model,
                Task.SEQUENCE_CLASSIFICATION,
                encoded[name],
                config,
                on_step=lambda _state, stamps=stamps: stamps.append(time.perf_counter()),
            )
            gaps[name] += [b - a for a, b in itertools.pairwise(stamps)]
    return {name: statistics.fmean(g) for name, g in gaps.items()}


def train_for_budget(
    specs: tuple[ModelSpec, ...], models: dict[str, Path], data: Any, folder: Path, s: Settings
) -> dict[str, dict[str, Any]]:
    """Fine-tune each model for ``budget / seconds_per_step`` steps with
    ``squeeze.methods.finetune``."""
    from squeeze.methods.finetune import finetune
    from squeeze.train.loop import TrainConfig

    step_s = seconds_per_step(models, data, s)
    trained = {}
    for spec in specs:
        name = spec.name
        steps = max(2, int(s.budget_s / step_s[name]))
        print(f"{name}: {step_s[name] * 1000:.1f} ms/step -> {steps} steps in {s.budget_s:g} s")
        config = TrainConfig(
            max_steps=steps,
            lr=spec.lr,
            batch_size=s.batch_size,
            warmup_ratio=0.05,
            # Validation is not counted in the budget; real models check twice, tiny ones 5 times.
            eval_every=max(1, steps // (2 if s.real else 5)),
            seed=s.seed,
        )
        result = finetune(
            str(models[name]),
            data,
            folder / name,
            config=config,
            max_length=s.max_length,
            overwrite=True,
        )
        train_s = result.train.elapsed_s - result.train.eval_s
        trained[name] = {
            "path": result.out,
            "steps": steps,
            "ms_per_step": step_s[name] * 1000,
            "train_s": train_s,
            "validation": result.train.best_eval.primary.value,
        }
        accuracy = trained[name]["validation"]
        print(f"{name}: trained {train_s:.1f} s, validation accuracy {accuracy:.3f}")
    return trained


def sweep_variants(s: Settings, depth: int, lr: float) -> list[dict[str, str]]:
    """One sweep for both models: int8; heads and FFN neurons pruned at each of PRUNE_LEVELS with
    the same recovery fine-tuning, then int8; half the layers (``depth`` // 2, at least 1)
    distilled for as many steps, then int8. Each model recovers at its own learning rate."""
    steps = f"finetune_steps={s.recovery_steps}, lr={lr:g}"
    variants = [{"name": "int8", "steps": "quantize(int8)"}]
    for level in PRUNE_LEVELS:
        prune = f"structured(heads={level:g}, ffn={level:g}, {steps})"
        variants.append(
            {"name": f"slim{round(100 * level)}-int8", "steps": f"{prune} -> quantize(int8)"}
        )
    half = max(1, depth // 2)
    distill = f"distill(student_layers={half}, max_steps={s.recovery_steps}, lr={lr:g})"
    variants.append({"name": "half-depth-int8", "steps": f"{distill} -> quantize(int8)"})
    return variants


def bench_settings(s: Settings) -> Any:
    """Batch 1, at the task's length (tiny: one thread, which a busy machine disturbs less)."""
    from squeeze.measure.latency import BenchSettings

    return BenchSettings(
        batch_sizes=(1,),
        seq_len=s.max_length,
        threads=s.threads,
        runs=s.bench_runs,
        warmup=s.bench_warmup,
        rounds=s.bench_rounds,
    )


def _depth(path: Path) -> int:
    from squeeze.model.checkpoint import read_config

    return int(read_config(str(path)).num_hidden_layers)


def run_sweeps(
    specs: tuple[ModelSpec, ...],
    trained: dict[str, dict[str, Any]],
    data: Any,
    test: Any,
    out: Path,
    s: Settings,
) -> dict[str, Any]:
    """Compress each trained model with the same plan; one results.json and report per model."""
    from squeeze.plan.pipeline import run_plan
    from squeeze.plan.recipe import Plan, variants_from
    from squeeze.report.results import SweepResults

    sweeps = {}
    for spec in specs:
        path = trained[spec.name]["path"]
        plan = Plan(
            model=str(path),
            variants=variants_from(sweep_variants(s, _depth(path), spec.lr)),
            data=data,
            eval_data=test,
            max_length=s.max_length,
            bench=bench_settings(s),
            name=f"tltc-{spec.name}",
        )
        print(f"[{time.strftime('%H:%M:%S')}] sweeping {spec.name}: {len(plan.variants)} variants")
        folder = out / "sweeps" / spec.name
        run_plan(plan, folder, cache_dir=out.parent / "cache", overwrite=True)
        sweeps[spec.name] = SweepResults.load(folder / "results.json")
    return sweeps


@dataclass
class Point:
    """One variant of one model on the common comparison."""

    model: str
    variant: str
    accuracy: float
    latency_ms: float
    bytes: int
    params: int
    seed: int = 0
    # Per-sample test scores, for paired intervals between the models; not part of equality.
    scores: Any = field(default=None, compare=False, repr=False)


def joint_points(sweeps: dict[str, Any], s: Settings) -> list[Point]:
    """Every artifact of both sweeps, re-timed together in one rotating measurement."""
    from squeeze.measure.bench import bench_models

    entries = [(m, v) for m, res in sweeps.items() for v in res.variants]
    timed, _ = bench_models([v.artifact for _, v in entries], bench_settings(s))
    from squeeze.core.stats import Scores

    return [
        Point(
            m,
            v.name,
            v.metric,
            r.latencies[0].p50_ms,
            v.bytes_on_disk,
            v.params_total,
            s.seed,
            Scores.from_dict(v.scores),
        )
        for (m, v), r in zip(entries, timed, strict=True)
    ]


def difference(small: Point, large: Point, n_test: int) -> tuple[float, float]:
    """The 95% interval of large minus small accuracy, in points: paired over the shared test
    sentences when both have per-sample scores, else +-2 binomial standard errors."""
    from squeeze.core.stats import paired_drop_interval

    if small.scores is not None and large.scores is not None:
        interval = paired_drop_interval(large.scores, small.scores)  # large "before" small
        if interval is not None:
            return interval
    se = math.sqrt(sum(p.accuracy * (1 - p.accuracy) for p in (small, large)) / max(1, n_test))
    delta = 100 * (large.accuracy - small.accuracy)
    return delta - 200 * se, delta + 200 * se


def best_within(points: list[Point], model: str, limit: float, cost: str) -> Point | None:
    """The most accurate variant of ``model`` that costs at most ``limit``."""
    fits = [p for p in points if p.model == model and getattr(p, cost) <= limit]
    return max(fits, key=lambda p: (p.accuracy, -getattr(p, cost)), default=None)


def compare(points: list[Point], cost: str, n_test: int) -> list[dict[str, Any]]:
    """At each budget that some variant defines, the best variant of each model within it.

    A budget only counts once both models have something that fits; a difference whose 95%
    interval (see :func:`difference`) holds 0 is a tie.
    """
    rows = []
    for limit in sorted({getattr(p, cost) for p in points}):
        small = best_within(points, "small", limit, cost)
        large = best_within(points, "large", limit, cost)
        if small is None or large is None:
            continue
        low, high = difference(small, large, n_test)
        delta = large.accuracy - small.accuracy
        winner = "tie" if low <= 0 <= high else ("large" if delta > 0 else "small")
        rows.append(
            {"budget": limit, "small": small, "large": large, "delta": delta,
             "interval_points": [low, high], "winner": winner}
        )  # fmt: skip
        # Later budgets with the same pair of best variants say nothing new.
        if len(rows) > 1 and (rows[-2]["small"], rows[-2]["large"]) == (small, large):
            rows.pop()
    return rows


def verdict(points: list[Point], rows: list[dict[str, Any]], cost: str) -> str:
    """One sentence from the budget comparison, whichever model it favours, plus the range
    where only one model has anything to offer (a small model's cheapest variant is usually
    cheaper than anything the large one becomes)."""
    what = {"latency_ms": "latency", "bytes": "size"}[cost]
    show = (lambda x: f"{x:.3f} ms") if cost == "latency_ms" else kb
    cheapest = {m: min(getattr(p, cost) for p in points if p.model == m) for m in COLOURS}
    alone, other = sorted(cheapest, key=cheapest.get)
    below = f" Below {show(cheapest[other])} only the {alone} model has variants."
    if cheapest[alone] == cheapest[other]:
        below = ""
    if not rows:
        return f"At equal {what}: no budget fits variants of both models.{below}"
    wins = {w: sum(r["winner"] == w for r in rows) for w in ("large", "small")}
    n = len(rows)
    if wins["large"] and not wins["small"]:
        lead = (
            f"the LARGE model, compressed, is better at {wins['large']} of {n} budgets, never worse"
        )
    elif wins["small"] and not wins["large"]:
        lead = (
            f"the SMALL model is better at {wins['small']} of {n} budgets and never worse: "
            "training large did not pay off here"
        )
    elif wins["small"]:
        lead = f"it depends on the budget (large better at {wins['large']}, small at "
        lead += f"{wins['small']} of {n})"
    else:
        lead = f"no difference beyond noise at any of {n} budgets"
    return f"At equal {what}: {lead}.{below}"


def compression_costs(points: list[Point]) -> str:
    """How many points each compression cost each model against its own baseline: the other
    half of the claim is that large models lose less to the same compression."""
    base = {p.model: p.accuracy for p in points if p.variant == "baseline"}
    cost = {(p.model, p.variant): 100 * (base[p.model] - p.accuracy) for p in points}
    names = [p.variant for p in points if p.model == "small" and p.variant != "baseline"]

    def show(x: float) -> str:
        return f"{round(x, 1) + 0.0:.1f}"  # + 0.0 turns -0.0 into 0.0

    parts = [f"{v} {show(cost['small', v])} / {show(cost['large', v])}" for v in names]
    return "Accuracy lost to each compression (points, small / large): " + ", ".join(parts) + "."


def kb(n: int) -> str:
    """A size as people read it: KB for the tiny models, MB for real ones."""
    return f"{n / 1024:.0f} KB" if n < 10 * 2**20 else f"{n / 2**20:.1f} MB"


def write_markdown(
    path: Path, title: str, points: list[Point], trained: dict, budgets: dict, lines: list[str]
) -> str:
    """comparison.md: the training runs, every variant, the budget comparisons, the verdict."""
    out = [f"# Train Large, Then Compress: {title}", ""]
    out += [
        "| model | steps | ms/step | trained (s) | validation accuracy |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, t in trained.items():
        out.append(
            f"| {name} | {t['steps']} | {t['ms_per_step']:.1f} | {t['train_s']:.1f} | "
            f"{t['validation']:.3f} |"
        )
    out += [
        "",
        "| model | variant | accuracy | vs own baseline (points) | latency p50 (ms) | size "
        "| params |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    base = {p.model: p.accuracy for p in points if p.variant == "baseline"}
    for p in sorted(points, key=lambda p: p.latency_ms):
        change = 100 * (p.accuracy - base[p.model])
        out.append(
            f"| {p.model} | {p.variant} | {p.accuracy:.3f} | {change:+.1f} "
            f"| {p.latency_ms:.3f} | {kb(p.bytes)} | {p.params:,} |"
        )
    for cost, unit in (("latency_ms", "latency budget (ms)"), ("bytes", "size budget")):
        out += ["", f"| {unit} | best small | best large | large - small (points, 95%) | "
                "winner |", "|---:|---|---|---:|---|"]  # fmt: skip
        for r in budgets[cost]:
            limit = f"{r['budget']:.3f}" if cost == "latency_ms" else kb(r["budget"])
            s, lg = r["small"], r["large"]
            low, high = r["interval_points"]
            out.append(
                f"| {limit} | {s.variant} {s.accuracy:.3f} | {lg.variant} {lg.accuracy:.3f} "
                f"| {100 * r['delta']:+.1f} [{low:+.1f}, {high:+.1f}] | {r['winner']} |"
            )
    out += ["", *lines, ""]
    text = "\n".join(out)
    path.write_text(text)
    return text


def write_plot(path: Path, points: list[Point], title: str) -> None:
    """Accuracy against latency and against size, one colour per model and one marker per seed;
    the first seed's variants are labelled (the others sit near them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = sorted({p.seed for p in points})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, cost, label in (
        (axes[0], "latency_ms", "latency p50, batch 1 (ms)"),
        (axes[1], "bytes", "size on disk (MB)"),
    ):
        for (model, colour), seed in itertools.product(COLOURS.items(), seeds):
            mine = [p for p in points if p.model == model and p.seed == seed]
            mine.sort(key=lambda p: getattr(p, cost))
            xs = [getattr(p, cost) / (2**20 if cost == "bytes" else 1) for p in mine]
            ax.scatter(
                xs, [p.accuracy for p in mine], color=colour, zorder=3,
                marker=MARKERS[seeds.index(seed) % len(MARKERS)],
                label=f"{model}, seed {seed}" if len(seeds) > 1 else model,
            )  # fmt: skip
            if seed != seeds[0]:
                continue
            for i, (x, p) in enumerate(zip(xs, mine, strict=True)):
                ax.annotate(
                    p.variant,
                    (x, p.accuracy),
                    fontsize=7,
                    xytext=(4, 3 if i % 2 else -9),  # alternate sides: neighbours overlap
                    textcoords="offset points",
                    color=colour,
                )
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out accuracy")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Train Large, Then Compress: {title}; same training time, same sweep")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_seed(
    out: Path, specs: tuple[ModelSpec, ...], data: Any, test: Any, s: Settings, title: str
) -> tuple[dict[str, Any], list[Point]]:
    """One full comparison in ``out``: train both, sweep both, time everything together."""
    start = time.perf_counter()
    # Only what this script writes is replaced; anything else in the folder stays.
    for sub in ("base", "trained", "sweeps"):
        shutil.rmtree(out / sub, ignore_errors=True)
    models = base_models(specs, out / "base", s.seed)
    trained = train_for_budget(specs, models, data, out / "trained", s)
    sweeps = run_sweeps(specs, trained, data, test, out, s)
    print(f"[{time.strftime('%H:%M:%S')}] timing every variant of both models together")
    points = joint_points(sweeps, s)

    n_test = sweeps["small"].n_samples
    budgets = {cost: compare(points, cost, n_test) for cost in ("latency_ms", "bytes")}
    lines = [verdict(points, rows, cost) for cost, rows in budgets.items()]
    lines.append(compression_costs(points))
    threads = f"{s.threads} thread{'s' if s.threads > 1 else ''}"
    lines.append(
        f"Accuracy on {n_test} held-out sentences; latency re-measured for all variants together "
        f"(batch 1, {s.max_length} tokens, {threads}); training budget {s.budget_s:g} s per "
        f"model; seed {s.seed}."
    )
    if s.budget_s < 10:
        lines.append("Budgets far too small for these figures to mean anything.")
    text = write_markdown(out / "comparison.md", title, points, trained, budgets, lines)
    write_plot(out / "comparison.png", points, title)
    summary = {
        "title": title,
        "budget_s": s.budget_s,
        "seed": s.seed,
        "n_test": n_test,
        "models": {
            spec.name: {
                **{k: v for k, v in trained[spec.name].items() if k != "path"},
                "source": spec.path
                or dict(zip(("hidden", "layers", "heads"), spec.shape, strict=True)),
                "lr": spec.lr,
            }
            for spec in specs
        },
        "points": [{k: v for k, v in p.__dict__.items() if k != "scores"} for p in points],
        "budgets": {
            cost: [{**r, "small": r["small"].variant, "large": r["large"].variant} for r in rows]
            for cost, rows in budgets.items()
        },
        "verdict": lines[:2],
        "machine": sweeps["small"].machine,
        "seconds": time.perf_counter() - start,
    }
    (out / "comparison.json").write_text(json.dumps(summary, indent=2))
    print()
    print(text)
    print(
        f"wrote {out}/comparison.md, comparison.png, comparison.json in {summary['seconds']:.0f} s"
    )
    return summary, points


def summarise(out: Path, runs: list[tuple[dict[str, Any], list[Point]]], title: str) -> str:
    """summary.md/json/png: the seeds side by side, so a gap that one seed shows and the others
    do not is seen as noise."""
    lines = [f"# Train Large, Then Compress over {len(runs)} seed(s): {title}", ""]
    lines += [
        "| seed | small: steps, trained s, test acc | large: steps, trained s, test acc | "
        "large - small (points, 95%) | latency budgets won large / small / tie | "
        "size budgets won large / small / tie |",
        "|---:|---|---|---:|---|---|",
    ]
    for summary, points in runs:
        base = {p.model: p for p in points if p.variant == "baseline"}
        low, high = difference(base["small"], base["large"], summary["n_test"])
        delta = 100 * (base["large"].accuracy - base["small"].accuracy)
        cells = []
        for name in ("small", "large"):
            m = summary["models"][name]
            cells.append(f"{m['steps']}, {m['train_s']:.0f} s, {base[name].accuracy:.3f}")
        won = []
        for cost in ("latency_ms", "bytes"):
            rows = summary["budgets"][cost]
            won.append(
                " / ".join(
                    str(sum(r["winner"] == w for r in rows)) for w in ("large", "small", "tie")
                )
            )
        lines.append(
            f"| {summary['seed']} | {cells[0]} | {cells[1]} | "
            f"{delta:+.1f} [{low:+.1f}, {high:+.1f}] | {won[0]} | {won[1]} |"
        )
    lines += ["", "| model | variant | test accuracy per seed | latency p50 per seed (ms) | "
              "size per seed |", "|---|---|---|---|---|"]  # fmt: skip
    first = runs[0][1]
    for ref in sorted(first, key=lambda p: (p.model != "small", p.latency_ms)):
        same = [
            p for _, pts in runs for p in pts if (p.model, p.variant) == (ref.model, ref.variant)
        ]
        accuracy = ", ".join(f"{p.accuracy:.3f}" for p in same)
        latency = ", ".join(f"{p.latency_ms:.2f}" for p in same)
        # Sizes differ by seed: the int8 outlier guard keeps a different number of MatMuls fp32.
        size = ", ".join(kb(p.bytes) for p in same)
        lines.append(f"| {ref.model} | {ref.variant} | {accuracy} | {latency} | {size} |")
    lines.append("")
    for summary, _ in runs:
        lines += [f"Seed {summary['seed']}: " + " ".join(summary["verdict"])]
    seconds = sum(summary["seconds"] for summary, _ in runs)
    lines += ["", f"{len(runs)} seed(s) in {seconds / 60:.1f} minutes.", ""]
    text = "\n".join(lines)
    (out / "summary.md").write_text(text)
    write_plot(out / "summary.png", [p for _, pts in runs for p in pts], title)
    (out / "summary.json").write_text(
        json.dumps({"title": title, "seeds": [summary for summary, _ in runs]}, indent=2)
    )
    return text


def _title(specs: tuple[ModelSpec, ...]) -> str:
    if all(spec.path is None for spec in specs):
        return "small vs large tiny BERT, generated task"
    return " vs ".join(spec.label for spec in specs) + ", movie reviews"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", action="store_true",
                        help="pre-trained MiniLM vs MPNet on the movie reviews")  # fmt: skip
    parser.add_argument("--small", help="with --real: the small checkpoint (default MiniLM-L6)")
    parser.add_argument("--large", help="with --real: the large checkpoint (default MPNet-base)")
    parser.add_argument("--data", help="with --real: the movie-review TSV (default: fetched)")
    parser.add_argument("--out", type=Path, help="output folder (.cache/tltc[-real])")
    parser.add_argument("--budget-s", type=float,
                        help="training seconds per model (60 tiny, 180 real)")  # fmt: skip
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, one run each")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run")
    args = parser.parse_args(argv)
    if (args.small or args.large or args.data) and not args.real:
        parser.error("--small, --large and --data go with --real")
    if args.quick and args.real:
        parser.error("--quick is for the tiny models; --real with a small --budget-s instead")
    try:
        seeds = [int(x) for x in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds takes integers separated by commas, like 0,1,2; not {args.seeds}")
    base = settings_for(args.quick, args.real, args.budget_s)
    out: Path = args.out or Path(".cache/tltc-real" if args.real else ".cache/tltc")
    import torch

    torch.set_num_threads(base.threads)
    shutil.rmtree(out / "data", ignore_errors=True)
    data, test = task_data(out / "data", base, args.data)
    specs = model_specs(args.real, args.small, args.large)
    title = _title(specs)
    runs = []
    for seed in seeds:
        print(f"[{time.strftime('%H:%M:%S')}] seed {seed}")
        runs.append(
            run_seed(out / f"seed-{seed}", specs, data, test, replace(base, seed=seed), title)
        )
    text = summarise(out, runs, title)
    print()
    print(text)
    print(f"wrote {out}/summary.md, summary.png, summary.json and seed-*/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
