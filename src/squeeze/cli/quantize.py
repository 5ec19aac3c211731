"""``squeeze quantize``: int8, fp16 or bf16, validated against the original, with a gate."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from squeeze.cli._options import (
    ModelArg,
    OutOpt,
    StepFlags,
    optional_data_spec,
    with_config,
    with_data_options,
    with_options,
)
from squeeze.cli._render import emit, metric_rows, new_table, report_and_gate, say
from squeeze.core.fmt import fmt_bytes, fmt_count
from squeeze.data.spec import DataSpec
from squeeze.methods.quantize.method import QuantizeConfig


@with_data_options(required=False)
@with_config(QuantizeConfig)
@with_options(StepFlags, omit={"device"})
def quantize(
    model: ModelArg,
    data: DataSpec | None,
    output: OutOpt,
    config: QuantizeConfig,
    flags: StepFlags,
    calibration_data: Annotated[
        str | None,
        typer.Option(help="Calibration samples (default: the training part of --data)."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="The fingerprint of the machine the model is for (`squeeze bench --fingerprint "
            "FILE` there): where its instruction set differs from this machine's, the default "
            "backend chooses by that machine's rules instead of timing here.",
            metavar="FILE",
        ),
    ] = None,
) -> None:
    """Quantize MODEL and save the result to -o with a summary (quantize.json).

    int8 and int4 by default use the fastest quantizer this machine runs within the gate,
    measured here (ONNX Runtime, OpenVINO, torchao; int4 also bitsandbytes) and remembered per
    machine and model shape in squeeze's cache: the next quantization of that shape builds the
    winner alone. --backend NAME (or $SQUEEZE_BACKEND) pins one, --backend auto measures again,
    --target chooses for another machine. Static int8 calibrates on --calibration-data, else
    --data's training part, else built-in text. fp16/bf16: the checkpoint cast (torch), or a
    bf16 OpenVINO IR.

    The result is compared with the original on the same inputs (logits, top-1 agreement); with
    --data, accuracy before and after is measured on its test part, in the deployed format.
    """
    from squeeze.core.errors import ConfigError, Problem
    from squeeze.engine.runner import run_step
    from squeeze.measure.machine import read_fingerprint
    from squeeze.plan.cache import decisions_in

    # A config with problems is refused by run_step, with all of them; a valid one names its
    # backend, and the measured default remembers its ranking in squeeze's cache.
    valid = not config.problems()
    measured = valid and config.chosen_backend.name == "auto"
    if target is not None and valid and not measured:
        why = f"{{target}} is for the default backend's choice; {config.chosen_backend.name} is "
        raise ConfigError(Problem(why + "pinned: drop {backend} (or $SQUEEZE_BACKEND)"))
    options = flags.step_options(
        data, calibration_data=_calibration(data, calibration_data),
        decisions=decisions_in() if measured else None,
        target=read_fingerprint(target) if target is not None else None,
    )  # fmt: skip
    result = run_step(model, config, output, options)
    report_and_gate(result, flags.json_output, _render, output)


def _calibration(data: DataSpec | None, source: str | None) -> Any:
    """--calibration-data: read with --data's column options, or without --data, inferred."""
    if data is not None or source is None:
        return optional_data_spec(data, source)
    return DataSpec(source)


def _render(result: Any) -> None:
    mode = result.config["dtype"] + (" static" if result.config["static"] else "")
    backend = result.details["backend"]
    auto = result.details.get("auto")
    if auto is not None:
        backend = f"auto: {auto['chosen']}"
    table = new_table(f"squeeze quantize ({mode}, {backend})", ("", "before", "after", "change"))
    before, after = result.before, result.after or result.before
    table.add_row(
        "parameters", fmt_count(before["params_total"]), fmt_count(after["params_total"]),
        _params_change(before["params_total"], after["params_total"]),
    )  # fmt: skip
    table.add_row(
        "size on disk",
        fmt_bytes(before["bytes_on_disk"]),
        fmt_bytes(after["bytes_on_disk"]),
        f"{before['bytes_on_disk'] / max(after['bytes_on_disk'], 1):.2f}x smaller",
    )
    for metric_row in metric_rows(result):
        table.add_row(*metric_row)
    emit(table)
    if auto is not None:
        emit(_candidates_table(auto))
        for c in auto["candidates"]:
            if "skipped" in c:
                say(f"{c['label']} skipped: {c['skipped']}", indent=4)
    from squeeze.methods.quantize.validate import Agreement

    agree = result.details["agreement"]
    say(
        f"agreement with the original on {agree['n_predictions']} predictions: "
        f"{Agreement.describe(agree)}; {result.seconds:.1f} s"
    )


def _params_change(before: int, after: int) -> str:
    """Quantizing keeps every weight; an export also counts the constants it adds (scales and
    zero points, one per output channel or block; shapes), which is why the count can rise."""
    if after <= before:
        return ""
    return f"+{fmt_count(after - before)} export constants"


def _candidates_table(auto: dict[str, Any]) -> Any:
    """Every candidate the measured default tried: latency, size, drop and verdict (why one
    was skipped is said under the table: a reason is a sentence, not a cell)."""
    from squeeze.measure.machine import describe_machine
    from squeeze.methods.quantize.validate import Agreement

    timing = auto["timing"]
    when = f"; timings remembered from {auto['remembered']}" if auto.get("remembered") else ""
    table = new_table(
        f"candidates (batch {timing['batch']}, seq {timing['seq_len']}, {timing['device']}; "
        f"{describe_machine(auto['machine'])}{when})",
        ("candidate", "p50 / p90 ms", "speed-up", "on disk", "drop", "agree", ""),
        left=("candidate", ""),
    )
    ref = auto["reference"]
    table.add_row(ref["label"], f"{ref['p50_ms']:.2f} / {ref['p90_ms']:.2f}", "1.00x",
                  "", "", "", "")  # fmt: skip
    for c in auto["candidates"]:
        if "skipped" in c:
            remembered = f"{c['p50_ms']:.2f}" if "p50_ms" in c else ""
            table.add_row(c["label"], remembered, *[""] * 4, "skipped")
            continue
        drop = "" if c["drop"] is None else f"{c['drop']:+.2f}"
        missed = "missed the gate" if auto["gated"] else "below the floor"
        verdict = "chosen" if c["chosen"] else ("" if c["passed"] else missed)
        table.add_row(
            c["label"], f"{c['p50_ms']:.2f} / {c['p90_ms']:.2f}", f"{c['speedup']:.2f}x",
            fmt_bytes(c["bytes_on_disk"]), drop, Agreement.headline(c["agreement"]), verdict,
        )  # fmt: skip
    return table
