"""Run a chain of steps through the cache: each step is its command's library function."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from squeeze.data import DataSpec, training_part
from squeeze.errors import ConfigError
from squeeze.sweep.cache import data_key, step_key
from squeeze.sweep.steps import StepCall
from squeeze.types import ProgressFactory, no_progress


@dataclass(frozen=True)
class StepContext:
    """What every step may need besides its input: the recipe's model (distillation's teacher),
    its data, and where to run."""

    model: str
    data: DataSpec | None
    eval_data: DataSpec | None
    max_length: int
    device: str = "cpu"
    trust_remote_code: bool = False
    progress: ProgressFactory = no_progress


@dataclass
class ChainOutput:
    """Where a chain's final artifact is and what producing it cost (0 s when cached)."""

    artifact: Path
    cached: bool
    seconds: float
    notes: list[str] = field(default_factory=list)


def _train_config(call: StepCall, steps: int, default_lr: float) -> Any:
    from squeeze.train import TrainConfig

    p = call.params
    return TrainConfig(
        max_steps=max(steps, 1), lr=p["lr"] or default_lr, batch_size=p["batch_size"]
    )


def _needs_data(call: StepCall, ctx: StepContext) -> DataSpec:
    if ctx.data is None:
        raise ConfigError(
            f"{call.canonical()} needs data: give the recipe a data section or --data"
        )
    return ctx.data


def run_step(call: StepCall, source: Path | str, out: Path, ctx: StepContext) -> list[str]:
    """Run one step from ``source`` into ``out`` (which must not exist); return its notes."""
    p = call.params
    common = {"trust_remote_code": ctx.trust_remote_code}
    if call.kind in ("magnitude", "structured"):
        from squeeze.prune.magnitude import MagnitudePruneConfig
        from squeeze.prune.run import prune_checkpoint
        from squeeze.prune.structured import StructuredPruneConfig

        if call.kind == "magnitude":
            method: Any = MagnitudePruneConfig(sparsity=p["sparsity"], scope=p["scope"])
            data_driven = bool(p["finetune_steps"])
        else:
            importance = p["importance"] or ("taylor" if ctx.data is not None else "magnitude")
            method = StructuredPruneConfig(
                heads=p["heads"], ffn=p["ffn"], layers=p["layers"], importance=importance
            )
            data_driven = importance == "taylor" or bool(p["finetune_steps"])
        result = prune_checkpoint(
            str(source), out, method,
            data=_needs_data(call, ctx) if data_driven else None,
            finetune_steps=p["finetune_steps"],
            train_config=_train_config(call, p["finetune_steps"], 5e-5),
            schedule=p.get("schedule", "oneshot"), max_length=ctx.max_length,
            device=ctx.device, progress=ctx.progress, **common,
        )  # fmt: skip
        return result.notes
    if call.kind == "distill":
        from squeeze.distill.loss import DistillConfig
        from squeeze.distill.run import distill_checkpoint
        from squeeze.distill.student import PRUNE_SUMMARY, StudentSpec
        from squeeze.resume import LAST, STATE_FILE, checkpoint_dir_for

        if p["layers"] is not None:
            student = StudentSpec(layers=p["layers"])
        elif (Path(source) / PRUNE_SUMMARY).is_file():
            student = StudentSpec(pruned=str(source))
        else:
            student = StudentSpec(path=str(source))
        config = DistillConfig(
            **{k: p[k] for k in ("temperature", "kd_weight", "task_weight", "hidden_weight",
                                 "attention_weight")}
        )  # fmt: skip
        # A run interrupted mid-training continues from its checkpoint.
        resume = (checkpoint_dir_for(out) / LAST / STATE_FILE).is_file()
        result = distill_checkpoint(
            ctx.model, out, student, _needs_data(call, ctx), eval_data=ctx.eval_data,
            config=config, train_config=_train_config(call, p["steps"], 1e-4),
            max_length=ctx.max_length, resume=resume, device=ctx.device,
            progress=ctx.progress, **common,
        )  # fmt: skip
        return result.notes
    if call.kind == "quantize":
        from squeeze.quantize.run import quantize_checkpoint

        config = call.quantize_config()
        calibration = training_part(_needs_data(call, ctx)) if config.static else None
        result = quantize_checkpoint(
            str(source), out, config, calibration_data=calibration,
            max_length=ctx.max_length, progress=ctx.progress, **common,
        )  # fmt: skip
        return result.notes
    from squeeze.export.onnx import ExportConfig, export_onnx

    result = export_onnx(str(source), out, config=ExportConfig(optimize=p["optimize"]), **common)
    return result.notes


def run_chain(
    calls: tuple[StepCall, ...], ctx: StepContext, cache_dir: Path, model_key: str
) -> ChainOutput:
    """Run ``calls`` from the recipe's model, reusing every step output already in the cache."""
    source: Path | str = ctx.model
    key = model_key
    cached, notes = True, []
    start = time.perf_counter()
    for call in calls:
        uses_data = call.kind in ("distill", "structured", "magnitude") or call.params.get("static")
        key = step_key(
            key,
            call.canonical(),
            data=data_key(ctx.data) if uses_data else None,
            eval_data=data_key(ctx.eval_data) if call.kind == "distill" else None,
            max_length=ctx.max_length,
            teacher=model_key if call.kind == "distill" else None,
        )
        out = cache_dir / f"{key[:20]}-{call.kind}"
        if not out.exists():
            cached = False
            notes += [f"{call.canonical()}: {n}" for n in run_step(call, source, out, ctx)]
        source = out
    return ChainOutput(Path(source), cached, 0.0 if cached else time.perf_counter() - start, notes)
