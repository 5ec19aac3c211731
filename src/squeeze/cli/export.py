"""``squeeze export``: a validated ONNX export for deployment."""

from __future__ import annotations

from typing import Annotated

import typer

from squeeze.cli._options import JsonOpt, ModelArg, OutOpt, OverwriteOpt, TrustOpt
from squeeze.cli._render import fmt_bytes, print_json, print_notes, print_table


def export(
    model: ModelArg,
    output: OutOpt,
    opset: Annotated[int, typer.Option(help="ONNX opset version.")] = 17,
    dynamic: Annotated[
        bool,
        typer.Option(
            "--dynamic-batch/--static-shapes",
            help="Dynamic batch and sequence axes, or shapes fixed to --batch x --seq.",
        ),
    ] = True,
    batch: Annotated[int, typer.Option(min=1, help="Batch size of a static-shape export.")] = 1,
    seq: Annotated[
        int, typer.Option(min=2, help="Sequence length of a static-shape export.")
    ] = 128,
    optimize: Annotated[
        bool,
        typer.Option(
            help="Fuse attention/LayerNorm/GELU with onnxruntime's transformer optimizer."
        ),
    ] = False,
    tolerance: Annotated[
        float | None,
        typer.Option(help="Max absolute logit difference to PyTorch (default: 1e-4 for fp32)."),
    ] = None,
    overwrite: OverwriteOpt = False,
    trust_remote_code: TrustOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Export MODEL to ONNX in -o: model.onnx, tokenizer, config and manifest.json.

    The export is checked with onnx.checker and validated against PyTorch on padded batches of
    real sentences; if it disagrees beyond the tolerance nothing is written (exit 5).
    """
    from squeeze.export.onnx import ExportConfig, export_onnx, onnx_size_stats

    config = ExportConfig(
        opset=opset, dynamic=dynamic, batch=batch, seq_len=seq, optimize=optimize,
        tolerance=tolerance,
    )  # fmt: skip
    result = export_onnx(
        model, output, config=config, overwrite=overwrite, trust_remote_code=trust_remote_code
    )
    size = onnx_size_stats(result.out)
    if json_output:
        print_json({**result.to_dict(), "size": size.__dict__})
        return
    manifest = result.manifest
    shape = " x ".join(str(d) for d in manifest["inputs"][0]["shape"])
    validation = manifest["validation"]
    rows = [
        ("saved to", str(result.onnx_path)),
        ("task", manifest["task"]),
        ("inputs", f"{', '.join(i['name'] for i in manifest['inputs'])} ({shape})"),
        ("opset", str(manifest["opset"])),
        (
            "optimized",
            ", ".join(f"{k} x{v}" for k, v in (manifest["fused_ops"] or {}).items()) or "no",
        ),
        (
            "validation",
            f"max |Δlogits| {validation['max_abs_diff']:.2g} <= {validation['tolerance']:g} "
            f"on {len(validation['checks'])} batches",
        ),
        ("size on disk", fmt_bytes(size.bytes_on_disk)),
        ("time", f"{result.seconds:.1f} s"),
    ]
    print_table("squeeze export", rows)
    print_notes(result.notes)
