"""OpenVINO IR exports: a validated ONNX export converted with ``openvino.convert_model``.

The IR folder is an export folder like the ONNX one (tokenizer, config.json, manifest.json with
``format: openvino``), with the graph in ``openvino_model.xml`` + ``.bin``: optimum-intel's file
names, so its ``OVModelFor...`` classes open squeeze's folders too. Conversion starts from the
plain (unfused) ONNX graph: the fused one uses ONNX Runtime's own operators, which OpenVINO
does not read. Weights are saved as they are (``compress_to_fp16=False``: ``save_model``
otherwise halves fp32 weights silently), unless ``half_weights`` asks for fp16 storage (a bf16
IR: OpenVINO computes in bf16 whatever the stored precision, so fp16 halves the file for free).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squeeze.artifact.read import MODEL_FILE, OPENVINO_FILE
from squeeze.methods.export.config import ExportConfig

if TYPE_CHECKING:
    from squeeze.model.loaded import LoadedModel


def write_ir_export(
    loaded: LoadedModel,
    out: Path,
    scratch: Path,
    config: ExportConfig,
    *,
    transform: Callable[[Any], Any] | None = None,
    update: dict[str, Any] | None = None,
    release: bool = False,
    half_weights: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """A validated plain ONNX export of ``loaded`` in ``scratch``, converted to IR in ``out``
    (through ``transform``, NNCF compression or quantization, when given) with the ONNX
    folder's tokenizer, config and manifest (``update`` merged in). Without a transform the IR
    is checked against PyTorch on the export's validation batches, at the export's tolerance;
    a transformed (compressed) or ``half_weights`` one is compared by its caller. Returns the
    manifest and notes."""
    import openvino as ov

    from squeeze.methods.export.onnx import derived_export
    from squeeze.methods.export.validate import reference_outputs, validate
    from squeeze.model.runtime import no_telemetry

    plain, ir = replace(config, optimize=False, format="onnx"), out / OPENVINO_FILE
    exact = transform is None and not half_weights
    references = reference_outputs(loaded, plain) if exact else None

    def to_ir(onnx_folder: Path, manifest: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        with no_telemetry():
            model = ov.convert_model(str(onnx_folder / MODEL_FILE))
        if transform is not None:
            model = transform(model)
        ov.save_model(model, str(ir), compress_to_fp16=half_weights)
        op_types = {op.get_type_name() for op in model.get_ordered_ops()}
        fields: dict[str, Any] = {
            "format": "openvino",
            "file": OPENVINO_FILE,
            "openvino": {"version": ov.get_version(), "ops": len(op_types)},
            **(update or {}),
        }
        if references is not None:
            tolerance = manifest["validation"]["tolerance"]
            fields["validation"] = validate(ir, loaded, tolerance, references)
        return fields, []

    return derived_export(loaded, out, scratch, plain, to_ir, release=release)
