"""``prune_checkpoint``: load, measure, prune, recover, measure again, save (or refuse).

The one implementation behind ``squeeze prune`` and later recipe steps. With data, accuracy is
measured before and after on a held-out split the model was not tuned on, importance and
recovery use the training split, and ``max_accuracy_drop`` gates the result: a pruned model
that misses the gate is never moved into place.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from squeeze.checkpoint import (
    atomic_output,
    check_output,
    compressed_bytes,
    load,
    resolve_local,
    size_stats,
    write_checkpoint,
)
from squeeze.data import (
    DataSpec,
    encode_for,
    evaluation_part,
    training_part,
)
from squeeze.errors import ConfigError, UnsupportedError
from squeeze.evaluate import evaluate
from squeeze.gate import Gated, GateMissed
from squeeze.prune.importance import magnitude_importance, taylor_importance
from squeeze.prune.magnitude import (
    MagnitudePruneConfig,
    apply_masks,
    magnitude_masks,
    prunable_weights,
    sparsity_of,
)
from squeeze.prune.schedule import cubic_sparsity
from squeeze.prune.structured import StructuredPruneConfig, prune_structured
from squeeze.train import StepState, TrainConfig, train
from squeeze.types import Evaluation, LoadedModel, ProgressFactory, Task, no_progress

SUMMARY_FILE = "prune.json"
SCHEDULES = ("oneshot", "cubic")


@dataclass
class PruneResult(Gated):
    """What pruning did, measured: sizes and (with data) the metric before and after."""

    out: Path
    method: str
    config: dict[str, Any]
    before: dict[str, int]
    after: dict[str, int]
    seconds: float
    metric_before: Evaluation | None = None
    metric_after: Evaluation | None = None
    sparsity: float | None = None
    plain_transformers: bool = True
    max_accuracy_drop: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "method": self.method,
            "config": self.config,
            "before": self.before,
            "after": self.after,
            "sparsity": self.sparsity,
            **self.gate_fields(),
            "loads_with_plain_transformers": self.plain_transformers,
            "seconds": self.seconds,
            "notes": self.notes,
        }


def _sizes(loaded: LoadedModel, folder: Path) -> dict[str, int]:
    return {**asdict(size_stats(loaded, folder)), "bytes_compressed": compressed_bytes(folder)}


def _masking_hook(
    loaded: LoadedModel, config: MagnitudePruneConfig, schedule: str, steps: int
) -> tuple[Any, Any]:
    """Masks applied now (one-shot) or grown during recovery (cubic), and the step callback
    that keeps pruned weights at zero after every optimizer step."""
    weights = prunable_weights(loaded.model, loaded.family, config.include, config.exclude)
    state: dict[str, Any] = {}
    # The cubic schedule reaches the target at 2/3 of the steps; the rest tunes a fixed mask.
    ramp = max(1, (2 * steps) // 3)
    every = max(1, ramp // 10)

    def update(sparsity: float) -> None:
        state["masks"] = magnitude_masks(weights, sparsity, config.scope)
        apply_masks(weights, state["masks"])

    def on_step(step: StepState) -> None:
        if schedule == "cubic" and step.step <= ramp and step.step % every == 0:
            update(cubic_sparsity(step.step, ramp, config.sparsity))
        elif "masks" in state:
            apply_masks(weights, state["masks"])

    def finish() -> None:
        """Final masks: the target for cubic; for one-shot, the masks fixed at the start."""
        if schedule == "cubic":
            update(config.sparsity)
        else:
            apply_masks(weights, state["masks"])

    if schedule == "oneshot":
        update(config.sparsity)
    return on_step, finish


def prune_checkpoint(
    source: str,
    out: str | Path,
    method: MagnitudePruneConfig | StructuredPruneConfig,
    *,
    data: DataSpec | None = None,
    eval_data: DataSpec | None = None,
    finetune_steps: int = 0,
    train_config: TrainConfig | None = None,
    schedule: str = "oneshot",
    max_length: int = 128,
    max_accuracy_drop: float | None = None,
    importance_batches: int = 16,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    device: str = "cpu",
    progress: ProgressFactory = no_progress,
) -> PruneResult:
    """Prune a checkpoint and save it to ``out`` if it passes the gate.

    Raises:
        ConfigError: options that do not fit together (a schedule without recovery steps,
            data-driven importance without data, a gate without data).
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"--schedule must be one of {', '.join(SCHEDULES)}")
    structured = isinstance(method, StructuredPruneConfig)
    if schedule == "cubic" and (structured or not finetune_steps):
        raise ConfigError("--schedule cubic needs --method magnitude and --finetune-steps")
    if (finetune_steps or max_accuracy_drop is not None) and data is None:
        raise ConfigError("--finetune-steps and --max-accuracy-drop need --data")
    if structured and method.importance == "taylor" and data is None:
        raise ConfigError("--importance taylor needs --data")
    local = resolve_local(source)
    check_output(out, overwrite=overwrite, inputs=[local])
    start = time.perf_counter()
    loaded = load(source, trust_remote_code=trust_remote_code, device=device)
    if loaded.task not in (Task.SEQUENCE_CLASSIFICATION, Task.CAUSAL_LM, Task.BASE, Task.MASKED_LM):
        raise UnsupportedError(f"cannot prune a {loaded.task.value} model")
    before = _sizes(loaded, loaded.path)
    notes = list(loaded.notes)

    train_enc = eval_enc = metric_before = None
    if data is not None:
        if loaded.task not in (Task.SEQUENCE_CLASSIFICATION, Task.CAUSAL_LM):
            raise UnsupportedError(
                f"--data needs a classifier or causal LM to score, not a {loaded.task.value} model"
            )
        train_spec = training_part(data)
        eval_spec = eval_data or evaluation_part(train_spec)
        encoded = []
        for spec in (train_spec, eval_spec):
            part, dataset = encode_for(loaded, spec, max_length=max_length)
            encoded.append(part)
            notes += [n for n in dataset.notes if n not in notes]
        train_enc, eval_enc = encoded
        notes.append(f"metric on {len(eval_enc)} held-out examples ({eval_spec.split or 'given'})")
        metric_before = evaluate(loaded, eval_enc, device=device, progress=progress)

    on_step = finish = None
    sparsity = None
    if structured:
        if method.importance == "taylor":
            importance = taylor_importance(
                loaded.model, loaded.family, loaded.config, loaded.task, train_enc,
                max_batches=importance_batches, device=device,
            )  # fmt: skip
        else:
            importance = magnitude_importance(loaded.model, loaded.family, loaded.config)
        shapes, plain, structure_notes = prune_structured(
            loaded.model, loaded.family, method, importance
        )
        loaded.shapes = shapes
        notes += structure_notes
    else:
        plain = True
        on_step, finish = _masking_hook(loaded, method, schedule, finetune_steps)

    if finetune_steps:
        base = asdict(train_config or TrainConfig())
        config = TrainConfig(**{**base, "max_steps": finetune_steps})
        result = train(
            loaded.model, loaded.task, train_enc, config, on_step=on_step, progress=progress,
            device=device,
        )  # fmt: skip
        notes.append(
            f"recovery fine-tuning: {result.steps} steps, final loss {result.final_loss:.4f}"
        )
    if finish is not None:
        finish()
        weights = prunable_weights(loaded.model, loaded.family, method.include, method.exclude)
        sparsity = sparsity_of(weights)
        notes.append(
            "unstructured zeros shrink the compressed size, not the dense file or dense latency"
        )
    metric_after = (
        evaluate(loaded, eval_enc, device=device, progress=progress) if eval_enc else None
    )

    summary = PruneResult(
        out=Path(out),
        method="structured" if structured else "magnitude",
        config={**asdict(method), "schedule": schedule, "finetune_steps": finetune_steps},
        before=before,
        after={},
        seconds=0.0,
        metric_before=metric_before,
        metric_after=metric_after,
        sparsity=sparsity,
        plain_transformers=plain,
        max_accuracy_drop=max_accuracy_drop,
        notes=notes,
    )
    try:
        with atomic_output(out, overwrite=overwrite, inputs=[local]) as tmp:
            write_checkpoint(loaded, tmp)
            summary.after = _sizes(loaded, tmp)
            summary.seconds = time.perf_counter() - start
            if not summary.passed:
                raise GateMissed(summary)
            (tmp / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2))
    except GateMissed:
        summary.notes.append(f"nothing was written to {out}: the accuracy gate failed")
    return summary
