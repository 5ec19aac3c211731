"""``squeeze quantize``: int8, fp16 or bf16, validated against the original, with a gate."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from squeeze.cli._options import (
    EvalDataOpt,
    JsonOpt,
    MaxDropOpt,
    MaxLengthOpt,
    ModelArg,
    OutOpt,
    OverwriteOpt,
    QuietOpt,
    TrustOpt,
    optional_data_spec,
    with_data_options,
)
from squeeze.cli._render import (
    fmt_bytes,
    fmt_count,
    print_notes,
    progress_factory,
    report_and_gate,
)
from squeeze.cli._render import stdout as console
from squeeze.data import DataSpec


@with_data_options(required=False)
def quantize(
    model: ModelArg,
    data: DataSpec | None,
    output: OutOpt,
    dtype: Annotated[str, typer.Option(help="int8, int4, fp16 or bf16.")],
    backend: Annotated[
        str | None,
        typer.Option(
            help="onnxruntime (int8 default), torch (fp16/bf16 default; int8 via torchao) or "
            "bitsandbytes (int4 default; int8 = LLM.int8)."
        ),
    ] = None,
    bnb_4bit_type: Annotated[str, typer.Option(help="int4: nf4 or fp4.")] = "nf4",
    static: Annotated[
        bool, typer.Option(help="int8: calibrate activations on data (QDQ) instead of dynamic.")
    ] = False,
    calibration_data: Annotated[
        str | None,
        typer.Option(help="Calibration samples (default: the training part of --data)."),
    ] = None,
    calibration_samples: Annotated[int, typer.Option(help="Samples for calibration.")] = 128,
    calibration_method: Annotated[
        str, typer.Option(help="minmax, entropy or percentile.")
    ] = "minmax",
    per_channel: Annotated[bool, typer.Option(help="int8: one scale per output channel.")] = False,
    optimize: Annotated[
        bool,
        typer.Option(help="Fuse attention before dynamic int8 (QAttention; on by default)."),
    ] = True,
    eval_data: EvalDataOpt = None,
    max_length: MaxLengthOpt = 128,
    max_accuracy_drop: MaxDropOpt = None,
    overwrite: OverwriteOpt = False,
    trust_remote_code: TrustOpt = False,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Quantize MODEL and save the result to -o with a summary (quantize.json).

    int8 (default backend onnxruntime): a validated fp32 ONNX export, fused, then ONNX
    Runtime's dynamic quantization (or static QDQ with --static); -o is an export folder that
    `squeeze eval` and `squeeze bench` run. fp16/bf16 (default backend torch): the checkpoint
    with its weights cast. int8 with --backend torch (torchao) or bitsandbytes (LLM.int8), and
    int4 (bitsandbytes NF4/FP4): a checkpoint transformers reloads with its quantization config.

    Every result is compared with the original on the same inputs (max logit difference, top-1
    agreement); with --data, accuracy before and after is measured on held-out data in the
    deployed format.
    """
    from squeeze.quantize.config import QuantizeConfig
    from squeeze.quantize.run import quantize_checkpoint

    config = QuantizeConfig(
        dtype=dtype,
        backend=backend,
        static=static,
        calibration_method=calibration_method,
        calibration_samples=calibration_samples,
        per_channel=per_channel,
        optimize=optimize,
        bnb_4bit_type=bnb_4bit_type,
    )
    result = quantize_checkpoint(
        model,
        output,
        config,
        data=data,
        eval_data=optional_data_spec(data, eval_data),
        calibration_data=optional_data_spec(data, calibration_data)
        if data is not None
        else _standalone(calibration_data),
        max_length=max_length,
        max_accuracy_drop=max_accuracy_drop,
        overwrite=overwrite,
        trust_remote_code=trust_remote_code,
        progress=progress_factory(quiet),
    )
    report_and_gate(result, json_output, _render, output)


def _standalone(source: str | None) -> Any:
    """--calibration-data without --data: read it with inferred columns."""
    if source is None:
        return None
    from squeeze.data import DataSpec

    return DataSpec(source)


def _render(result: Any) -> None:
    from rich.table import Table

    mode = result.config["dtype"] + (" static" if result.config["static"] else "")
    table = Table(title=f"squeeze quantize ({mode}, {result.backend})", title_justify="left")
    for column in ("", "before", "after", "change"):
        table.add_column(column, justify="left" if not column else "right")
    before, after = result.before, result.after or result.before
    table.add_row(
        "parameters", fmt_count(before["params_total"]), fmt_count(after["params_total"]), ""
    )
    table.add_row(
        "size on disk",
        fmt_bytes(before["bytes_on_disk"]),
        fmt_bytes(after["bytes_on_disk"]),
        f"{before['bytes_on_disk'] / max(after['bytes_on_disk'], 1):.2f}x smaller",
    )
    if result.metric_before is not None and result.metric_after is not None:
        mb, ma = result.metric_before.primary, result.metric_after.primary
        table.add_row(
            mb.name, f"{mb.value:.4f}", f"{ma.value:.4f}", f"{0.0 - result.drop_points:+.2f} pts"
        )
    console.print(table)
    agree = result.agreement
    console.print(
        f"agreement with the original on {agree.n_predictions} predictions: top-1 "
        f"{agree.top1_agreement:.2%}, max |Δlogit| {agree.max_abs_diff:.3g}, mean "
        f"{agree.mean_abs_diff:.3g}; {result.seconds:.1f} s"
    )
    print_notes(result.notes)
