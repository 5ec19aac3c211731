"""``distill_checkpoint``: teach a student from a teacher, measure both, save the student or refuse.

The one implementation behind ``squeeze distill`` and later recipe steps. Training is
``squeeze.train.train`` with the distillation terms as its ``extra_loss``; the best student on the
validation part is kept, and both models are then scored on the test part (which neither was
tuned on) and timed together with identical settings.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from squeeze.accel import is_main_process
from squeeze.checkpoint import (
    atomic_output,
    check_output,
    load,
    resolve_local,
    size_stats,
    weight_bytes,
    write_checkpoint,
)
from squeeze.data import DataSpec, Encoded, encode_for, evaluation_part, held_out_part
from squeeze.data import training_part as training_spec
from squeeze.distill.loss import DistillConfig, attention_loss, hidden_loss, logit_kd
from squeeze.distill.student import StudentSpec, build_student, distill_module, teacher_outputs
from squeeze.errors import DataError, UnsupportedError
from squeeze.evaluate import LOWER_IS_BETTER, evaluate
from squeeze.gate import Gated, GateMissed
from squeeze.resume import check_resume, checkpoint_dir_for
from squeeze.train import TrainConfig, TrainResult, train
from squeeze.types import Evaluation, LoadedModel, ProgressFactory, Task, no_progress

SUMMARY_FILE = "distill.json"


@dataclass
class ModelFigures:
    """One side of the comparison: size, speed and (with data) the metric."""

    params: int
    bytes_on_disk: int
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DistillResult(Gated):
    """Teacher against student, measured the same way; the gate compares their metrics."""

    out: Path
    student: str
    config: dict[str, Any]
    teacher_figures: ModelFigures
    student_figures: ModelFigures
    metric_before: Evaluation  # the teacher's
    metric_after: Evaluation  # the distilled student's
    student_initial: Evaluation
    train: TrainResult
    seconds: float
    bench: dict[str, Any] | None = None
    max_accuracy_drop: float | None = None
    written: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def recovered(self) -> float:
        """The student's share of the teacher's score (inverted for lower-is-better metrics)."""
        t, s = self.metric_before.primary, self.metric_after.primary
        if t.name in LOWER_IS_BETTER:
            return t.value / s.value if s.value else 0.0
        return s.value / t.value if t.value else 0.0

    @property
    def speedup(self) -> float | None:
        t, s = self.teacher_figures.latency_p50_ms, self.student_figures.latency_p50_ms
        return t / s if t and s else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "written": self.written,
            "student": self.student,
            "config": self.config,
            "teacher": self.teacher_figures.to_dict(),
            "student_figures": self.student_figures.to_dict(),
            "student_initial": self.student_initial.to_dict(),
            **self.gate_fields(),
            "recovered": self.recovered,
            "speedup": self.speedup,
            "bench": self.bench,
            "train": self.train.to_dict(),
            "seconds": self.seconds,
            "notes": self.notes,
        }


def _distill_loss(teacher: LoadedModel, config: DistillConfig) -> Any:
    """The ``extra_loss`` for the training loop: the teacher's signals against the student's."""
    causal = teacher.task is Task.CAUSAL_LM

    def extra(model: Any, inputs: dict[str, Any], outputs: Any) -> Any:
        target = teacher_outputs(teacher, config, inputs)
        mask = inputs["attention_mask"]
        loss = 0.0
        if config.kd_weight:
            kd = logit_kd(
                outputs.logits, target.logits, config.temperature, mask if causal else None
            )
            loss = loss + config.kd_weight * kd
        if config.needs_hidden:
            loss = loss + config.hidden_weight * hidden_loss(
                outputs.hidden_states, target.hidden_states, mask
            )
        if config.needs_attentions:
            loss = loss + config.attention_weight * attention_loss(
                outputs.attentions, target.attentions, mask
            )
        return loss

    return extra


def _mask_keeper(student: LoadedModel, masks: dict[str, Any] | None) -> Any:
    """Re-zero a magnitude-pruned student's pruned weights after every optimizer step."""
    if masks is None:
        return None
    import torch

    params = dict(student.model.named_parameters())

    def on_step(_: Any) -> None:
        with torch.no_grad():
            for name, mask in masks.items():
                params[name].mul_(mask.to(params[name].device))

    return on_step


def _figures(loaded: LoadedModel, folder: Path) -> ModelFigures:
    stats = size_stats(loaded, folder)
    return ModelFigures(params=stats.params_total, bytes_on_disk=weight_bytes(folder))


def _bench(
    teacher: Path, student: Path, settings: Any, figures: tuple[ModelFigures, ModelFigures]
) -> dict[str, Any]:
    """Time teacher and student in one rotating measurement; fill in their latencies."""
    from squeeze.bench.run import bench_models

    results, _ = bench_models([str(teacher), str(student)], settings)
    for result, side in zip(results, figures, strict=True):
        latency = result.latencies[0]
        side.latency_p50_ms, side.latency_p90_ms = latency.p50_ms, latency.p90_ms
    return {"settings": asdict(settings), "results": [r.to_dict() for r in results]}


def _encode(loaded: LoadedModel, spec: DataSpec, max_length: int, notes: list[str]) -> Encoded:
    encoded, dataset = encode_for(loaded, spec, max_length=max_length)
    notes += [n for n in dataset.notes if n not in notes]
    return encoded


def distill_checkpoint(
    teacher_source: str,
    out: str | Path,
    student_spec: StudentSpec,
    data: DataSpec,
    *,
    eval_data: DataSpec | None = None,
    config: DistillConfig | None = None,
    train_config: TrainConfig | None = None,
    max_length: int = 128,
    max_accuracy_drop: float | None = None,
    bench: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    device: str = "cpu",
    progress: ProgressFactory = no_progress,
) -> DistillResult:
    """Distil ``teacher_source`` into the student and save it to ``out`` if it passes the gate.

    ``bench`` (a ``BenchSettings``) times teacher and student after training; None skips it.
    While training, the whole run is checkpointed next to ``out`` (``OUT.checkpoint``) so that
    ``resume=True`` continues an interrupted run; the folder is removed when the run completes.

    Raises:
        ConfigError: options that do not fit (student, projection, resume).
        UnsupportedError: a teacher that is neither a classifier nor a causal LM.
    """
    config = config or DistillConfig()
    train_config = train_config or TrainConfig()
    local = resolve_local(teacher_source)
    student_local = resolve_local(student_spec.path or student_spec.pruned or teacher_source)
    check_output(out, overwrite=overwrite, inputs=[local, student_local])
    checkpoint_dir = checkpoint_dir_for(out)
    resuming = check_resume(checkpoint_dir, resume=resume, overwrite=overwrite)
    start = time.perf_counter()

    teacher = load(teacher_source, trust_remote_code=trust_remote_code, device=device)
    if teacher.task not in (Task.SEQUENCE_CLASSIFICATION, Task.CAUSAL_LM):
        raise UnsupportedError(
            "distill needs a sequence-classification or causal-LM teacher, "
            f"not {teacher.task.value}"
        )
    teacher.model.requires_grad_(False)
    student, masks, notes = build_student(
        student_spec, teacher, trust_remote_code=trust_remote_code, device=device
    )
    module = distill_module(student, teacher, config, train_config.seed)

    train_spec = training_spec(data)
    test_spec = eval_data or evaluation_part(train_spec)
    train_enc = _encode(teacher, train_spec, max_length, notes)
    teacher_test = _encode(teacher, test_spec, max_length, notes)
    student_test = _encode(student, test_spec, max_length, notes)
    try:
        validation = _encode(student, held_out_part(train_spec, "validation"), max_length, notes)
    except DataError as e:
        validation = None
        notes.append(f"no validation split ({e}); kept the last step instead of the best")
    notes.append(f"metric on {len(teacher_test)} held-out examples ({test_spec.split or 'given'})")

    metric_teacher = evaluate(teacher, teacher_test, device=device, progress=progress)
    metric_initial = evaluate(student, student_test, device=device, progress=progress)
    result = train(
        module,
        teacher.task,
        train_enc,
        train_config,
        evaluate_fn=(lambda: evaluate(student, validation, device=device)) if validation else None,
        extra_loss=_distill_loss(teacher, config),
        task_weight=config.task_weight,
        on_step=_mask_keeper(student, masks),
        checkpoint_dir=checkpoint_dir,
        resume=resuming,
        progress=progress,
        device=device,
    )
    if resuming:
        notes.append(f"resumed from the checkpoint at step {result.resumed_from}")
    notes += result.notes
    metric_student = evaluate(student, student_test, device=device, progress=progress)

    summary = DistillResult(
        out=Path(out),
        student=student_spec.describe(),
        config={
            "distill": asdict(config),
            "train": asdict(train_config),
            "student": student_spec.to_dict(),
            "max_length": max_length,
        },
        teacher_figures=_figures(teacher, teacher.path),
        student_figures=ModelFigures(params=0, bytes_on_disk=0),
        metric_before=metric_teacher,
        metric_after=metric_student,
        student_initial=metric_initial,
        train=result,
        seconds=0.0,
        max_accuracy_drop=max_accuracy_drop,
        notes=notes,
    )
    if not is_main_process():
        return summary
    try:
        with atomic_output(out, overwrite=overwrite, inputs=[local, student_local]) as tmp:
            write_checkpoint(student, tmp)
            summary.student_figures = _figures(student, tmp)
            if bench is not None:
                summary.bench = _bench(
                    teacher.path, tmp, bench, (summary.teacher_figures, summary.student_figures)
                )
            summary.seconds = time.perf_counter() - start
            if not summary.passed:
                raise GateMissed(summary)
            summary.written = True
            (tmp / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2))
    except GateMissed:
        summary.notes.append(f"nothing was written to {out}: the accuracy gate failed")
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return summary
