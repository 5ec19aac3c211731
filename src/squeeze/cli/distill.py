"""``squeeze distill``: train a smaller or compressed student from a teacher, with a gate for CI."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from squeeze.cli._options import (
    DeviceOpt,
    EvalDataOpt,
    JsonOpt,
    MaxLengthOpt,
    OutOpt,
    OverwriteOpt,
    QuietOpt,
    TrustOpt,
    optional_data_spec,
    with_data_options,
    with_train_options,
)
from squeeze.cli._render import fmt_bytes, fmt_count, print_notes, progress_factory, report_and_gate
from squeeze.cli._render import stdout as console
from squeeze.data import DataSpec
from squeeze.train import TrainConfig


@with_train_options(lr=1e-4, epochs=3.0)
@with_data_options
def distill(
    teacher: Annotated[
        str, typer.Argument(help="Teacher checkpoint (classifier or causal LM), folder or hub id.")
    ],
    data: DataSpec,
    train_config: TrainConfig,
    output: OutOpt,
    student: Annotated[
        str | None, typer.Option(help="Student checkpoint (same tokenizer; same labels or none).")
    ] = None,
    student_layers: Annotated[
        int | None,
        typer.Option(min=1, help="Student = the teacher with N of its layers, evenly spaced."),
    ] = None,
    from_pruned: Annotated[
        str | None, typer.Option(help="Student = a `squeeze prune` output of this teacher.")
    ] = None,
    temperature: Annotated[float, typer.Option(help="Softens both models' logits.")] = 2.0,
    kd_weight: Annotated[float, typer.Option(help="Weight of the KL term on logits.")] = 1.0,
    task_weight: Annotated[float, typer.Option(help="Weight of the task loss on labels.")] = 0.5,
    hidden_weight: Annotated[
        float, typer.Option(help="Weight of hidden-state matching (MSE); 0 = off.")
    ] = 0.0,
    attention_weight: Annotated[
        float, typer.Option(help="Weight of attention-map matching (MSE); 0 = off.")
    ] = 0.0,
    projection: Annotated[
        str, typer.Option(help="Hidden widths differ: none (error), learned or fixed.")
    ] = "none",
    eval_data: EvalDataOpt = None,
    max_length: MaxLengthOpt = 128,
    max_accuracy_drop: Annotated[
        float | None,
        typer.Option(help="Fail (exit 1, nothing written) if the student trails the teacher more."),
    ] = None,
    bench: Annotated[
        bool, typer.Option(help="Time teacher and student (batch 1, --max-length tokens).")
    ] = True,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted run from OUTPUT.checkpoint.")
    ] = False,
    device: DeviceOpt = "cpu",
    overwrite: OverwriteOpt = False,
    trust_remote_code: TrustOpt = False,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Distil TEACHER into a student on --data and save the best student to -o (distill.json).

    The loss is KL on temperature-softened logits (next-token logits for causal LMs) plus the task
    loss, optionally with hidden-state and attention matching. Teacher and student are scored on
    the held-out test part and timed together. A checkpoint is kept beside -o while training;
    --resume continues from it. For several GPUs: `accelerate launch -m squeeze distill ...`.
    """
    from squeeze.accel import is_main_process, training_device
    from squeeze.bench.latency import BenchSettings
    from squeeze.distill.loss import DistillConfig
    from squeeze.distill.run import distill_checkpoint
    from squeeze.distill.student import StudentSpec

    spec = StudentSpec(path=student, layers=student_layers, pruned=from_pruned)
    config = DistillConfig(
        temperature=temperature,
        kd_weight=kd_weight,
        task_weight=task_weight,
        hidden_weight=hidden_weight,
        attention_weight=attention_weight,
        projection=projection,
    )
    resolved = training_device(device)
    settings = BenchSettings(seq_len=max_length, runs=20, device=resolved) if bench else None
    main = is_main_process()
    result = distill_checkpoint(
        teacher,
        output,
        spec,
        data,
        eval_data=optional_data_spec(data, eval_data),
        config=config,
        train_config=train_config,
        max_length=max_length,
        max_accuracy_drop=max_accuracy_drop,
        bench=settings,
        resume=resume,
        overwrite=overwrite,
        trust_remote_code=trust_remote_code,
        device=resolved,
        progress=progress_factory(quiet or not main),
    )
    if main:
        report_and_gate(result, json_output, _render, output)


def _render(result: Any) -> None:
    from rich.table import Table

    t, s = result.teacher_figures, result.student_figures
    mt, ms, m0 = result.metric_before.primary, result.metric_after.primary, result.student_initial
    table = Table(title=f"squeeze distill ({result.student})", title_justify="left")
    for column in ("", "teacher", "student", "student/teacher"):
        table.add_column(column, justify="left" if not column else "right")
    table.add_row(
        f"{mt.name} (n={mt.n_samples})", f"{mt.value:.4f}", f"{ms.value:.4f}",
        f"{result.recovered:.1%} recovered",
    )  # fmt: skip
    table.add_row(f"{mt.name} before distilling", "", f"{m0.primary.value:.4f}", "")
    table.add_row(
        "parameters", fmt_count(t.params), fmt_count(s.params), f"{s.params / t.params:.2f}x"
    )
    if s.bytes_on_disk:
        table.add_row(
            "weights on disk", fmt_bytes(t.bytes_on_disk), fmt_bytes(s.bytes_on_disk),
            f"{s.bytes_on_disk / t.bytes_on_disk:.2f}x",
        )  # fmt: skip
    if result.speedup is not None:
        table.add_row(
            "latency p50 (p90)",
            f"{t.latency_p50_ms:.2f} ({t.latency_p90_ms:.2f}) ms",
            f"{s.latency_p50_ms:.2f} ({s.latency_p90_ms:.2f}) ms",
            f"{result.speedup:.2f}x faster",
        )
    console.print(table)
    train = result.train
    console.print(
        f"{train.steps} steps in {train.elapsed_s:.1f} s ({train.samples_per_s:.1f} samples/s); "
        f"{'saved to ' + str(result.out) if result.written else 'nothing saved'}"
    )
    print_notes(result.notes)
