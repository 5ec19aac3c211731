"""``squeeze distill``: train a smaller or compressed student from a teacher, with a gate for CI."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from squeeze.cli._options import (
    OutOpt,
    StepFlags,
    with_config,
    with_data_options,
    with_options,
)
from squeeze.cli._render import (
    emit,
    metric_change,
    new_table,
    progress_factory,
    report_and_gate,
    say,
)
from squeeze.core.fmt import fmt_bytes, fmt_count
from squeeze.data.spec import DataSpec
from squeeze.methods.distill.method import DistillConfig


@with_data_options
@with_config(DistillConfig)
@with_options(StepFlags, omit={"max_accuracy_drop"})
def distill(
    teacher: Annotated[
        str,
        typer.Argument(
            help="Teacher checkpoint (classifier, causal LM or embedder), folder or hub id."
        ),
    ],
    data: DataSpec,
    output: OutOpt,
    config: DistillConfig,
    flags: StepFlags,
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
) -> None:
    """Distil TEACHER into a student on --data and save the best student to -o (distill.json).

    The loss is KL on temperature-softened logits (next-token logits for causal LMs) plus the task
    loss, optionally with hidden-state and attention matching; an embedder's student learns the
    teacher's sentence embeddings of the training texts (--embedding-loss; no labels read).
    Teacher and student are scored on the held-out test part and timed together. A checkpoint is
    kept beside -o while training; --resume continues from it. For several GPUs:
    `accelerate launch -m squeeze distill ...`.
    """
    from squeeze.engine.runner import run_step
    from squeeze.measure.latency import BenchSettings
    from squeeze.train.accel import is_main_process, training_device

    resolved = training_device(flags.device)
    main = is_main_process()
    options = flags.step_options(
        data,
        max_accuracy_drop=max_accuracy_drop,
        bench=BenchSettings(runs=20, device=resolved) if bench else None,
        resume=resume,
        device=resolved,
        progress=progress_factory(flags.quiet or not main),
    )
    result = run_step(teacher, config, output, options)
    if main:
        report_and_gate(result, flags.json_output, _render, output)


def _render(result: Any) -> None:
    t, s = result.before, result.after
    mt, ms = result.metric_before.primary, result.metric_after.primary
    initial = result.details["student_initial"]
    table = new_table(
        f"squeeze distill ({result.details['student']})",
        ("", "teacher", "student", "student/teacher"),
    )
    table.add_row(
        f"{mt.name} (n={mt.n_samples})", f"{mt.value:.4f}", f"{ms.value:.4f}",
        f"{result.retained:.1%} recovered ({metric_change(result)})",
    )  # fmt: skip
    if initial is not None:
        first = next(iter(initial["metrics"].values()))
        table.add_row(f"{mt.name} before distilling", "", f"{first:.4f}", "")
    if result.fidelity is not None and ms.name != "fidelity":
        # An embedder's student: how close its embeddings are to the teacher's, before and after.
        table.add_row("fidelity (mean cosine)", "1.0000", f"{result.fidelity:.4f}", "")
        if initial is not None and "fidelity" in initial["metrics"]:
            start = initial["metrics"]["fidelity"]
            table.add_row("fidelity before distilling", "", f"{start:.4f}", "")
    table.add_row(
        "parameters", fmt_count(t["params_total"]), fmt_count(s["params_total"]),
        f"{s['params_total'] / t['params_total']:.2f}x",
    )  # fmt: skip
    if s:
        table.add_row(
            "weights on disk", fmt_bytes(t["bytes_on_disk"]), fmt_bytes(s["bytes_on_disk"]),
            f"{s['bytes_on_disk'] / t['bytes_on_disk']:.2f}x",
        )  # fmt: skip
    latency = result.latency
    if latency is not None and latency["speedup"] is not None:
        b, a = latency["before"], latency["after"]
        table.add_row(
            "latency p50 (p90)",
            f"{b['p50_ms']:.2f} ({b['p90_ms']:.2f}) ms",
            f"{a['p50_ms']:.2f} ({a['p90_ms']:.2f}) ms",
            f"{latency['speedup']:.2f}x faster",
        )
    emit(table)
    train = result.details["train"]
    say(
        f"{train['steps']} steps in {train['elapsed_s']:.1f} s "
        f"({train['samples_per_s']:.1f} samples/s); "
        f"{'saved to ' + str(result.out) if result.written else 'nothing saved'}"
    )
