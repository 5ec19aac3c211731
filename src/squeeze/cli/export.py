"""``squeeze export``: a validated ONNX export for deployment (options: ``ExportConfig``)."""

from __future__ import annotations

from squeeze.cli._options import ModelArg, OutOpt, StepFlags, with_config, with_options
from squeeze.cli._render import print_json, print_notes, print_table
from squeeze.core.fmt import fmt_bytes
from squeeze.methods.export.method import ExportConfig


@with_config(ExportConfig)
@with_options(
    StepFlags,
    omit={
        "eval_data",
        "max_length",
        "max_accuracy_drop",
        "min_fidelity",
        "gate_on",
        "device",
        "quiet",
    },
)
def export(model: ModelArg, output: OutOpt, config: ExportConfig, flags: StepFlags) -> None:
    """Export MODEL to ONNX in -o: model.onnx, tokenizer, config and manifest.json.

    The export is checked with onnx.checker and validated against PyTorch on padded batches of
    real sentences; if it disagrees beyond the tolerance nothing is written (exit 5). With
    --format openvino the validated ONNX graph is converted to OpenVINO IR
    (openvino_model.xml + .bin) and the IR is validated the same way.
    """
    from squeeze.engine.runner import run_step

    result = run_step(model, config, output, flags.step_options())
    manifest = result.details["manifest"]
    if flags.json_output:
        print_json({**result.to_dict(), **manifest, "size": result.after})
        return
    shape = " x ".join(str(d) for d in manifest["inputs"][0]["shape"])
    validation = manifest["validation"]
    fused = ", ".join(f"{k} x{v}" for k, v in (manifest["fused_ops"] or {}).items())
    first = manifest["outputs"][0]["name"]
    rows = [
        ("saved to", f"{result.out}/{manifest['file']}"),
        ("task", manifest["task"]),
        ("inputs", f"{', '.join(i['name'] for i in manifest['inputs'])} ({shape})"),
        ("outputs", ", ".join(o["name"] for o in manifest["outputs"])),
        ("format", manifest["format"]),
        ("opset", str(manifest["opset"])),
        ("optimized", fused or "no"),
        (
            "validation",
            f"max |Δ{first}| {validation['max_abs_diff']:.2g} <= {validation['tolerance']:g} "
            f"on {len(validation['checks'])} batches",
        ),
        ("size on disk", fmt_bytes(result.after["bytes_on_disk"])),
        ("time", f"{result.seconds:.1f} s"),
    ]
    if manifest.get("pooling"):
        from squeeze.model.pooling import Pooling

        rows.insert(4, ("pooling", f"{Pooling(**manifest['pooling']).describe()}, in the graph"))
    print_table("squeeze export", rows)
    print_notes(result.notes)
