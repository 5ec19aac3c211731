"""OpenVINO IR exports: a validated ONNX export converted with ``openvino.convert_model``.

The IR folder is an export folder like the ONNX one (tokenizer, config.json, manifest.json with
``format: openvino``), with the graph in ``openvino_model.xml`` + ``.bin``: optimum-intel's file
names, so its ``OVModelFor...`` classes open squeeze's folders too. Conversion starts from the
plain (unfused) ONNX graph: the fused one uses ONNX Runtime's own operators, which OpenVINO
does not read. Weights are saved as they are (``compress_to_fp16=False``: ``save_model``
otherwise halves fp32 weights silently).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from squeeze.errors import CheckpointError
from squeeze.export.read import MODEL_FILE, OPENVINO_FILE
from squeeze.types import SizeStats

if TYPE_CHECKING:
    from squeeze.export.method import ExportConfig
    from squeeze.types import LoadedModel

# OpenVINO's element types of weights stored several to a byte (their shapes count weights).
_PACKED = {"u4", "i4", "nf4", "f4e2m1", "u2", "u1"}


def convert(
    onnx_folder: Path, out: Path, transform: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    """Convert ``onnx_folder``'s graph into IR in ``out`` (which exists), through ``transform``
    (NNCF compression or quantization) when given; return the IR's op counts by type."""
    import openvino as ov

    model = ov.convert_model(str(onnx_folder / MODEL_FILE))
    if transform is not None:
        model = transform(model)
    ov.save_model(model, str(out / OPENVINO_FILE), compress_to_fp16=False)
    counts: dict[str, int] = {}
    for op in model.get_ordered_ops():
        counts[op.get_type_name()] = counts.get(op.get_type_name(), 0) + 1
    return counts


def write_ir_export(
    loaded: LoadedModel,
    out: Path,
    scratch: Path,
    config: ExportConfig,
    *,
    transform: Callable[[Any], Any] | None = None,
    update: dict[str, Any] | None = None,
    release: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """A validated plain ONNX export of ``loaded`` in ``scratch``, converted to IR in ``out``
    (through ``transform`` when given) with the ONNX folder's tokenizer, config and manifest
    (``update`` merged in). Without a transform the IR is checked against PyTorch on the
    export's validation batches, at the export's tolerance; a transformed (compressed) one is
    compared by its caller. Returns the manifest and notes."""
    import openvino as ov

    from squeeze.export.onnx import derive_export, reference_outputs, validate, write_export

    onnx_folder = scratch / "onnx"
    onnx_folder.mkdir()
    plain = replace(config, optimize=False, format="onnx")
    references = reference_outputs(loaded, plain) if transform is None else None
    manifest, notes = write_export(loaded, onnx_folder, plain, release=release)
    ops = convert(onnx_folder, out, transform)
    fields: dict[str, Any] = {
        "format": "openvino",
        "file": OPENVINO_FILE,
        "openvino": {"version": ov.get_version(), "ops": len(ops)},
        **(update or {}),
    }
    if references is not None:
        tolerance = manifest["validation"]["tolerance"]
        checks = validate(out / OPENVINO_FILE, loaded, plain, tolerance, references)
        fields["validation"] = {
            "tolerance": tolerance,
            "max_abs_diff": max(c["max_abs_diff"] for c in checks),
            "checks": checks,
        }
    return derive_export(onnx_folder, out, fields), notes


def openvino_size_stats(folder: Path) -> SizeStats:
    """Parameters (Constant elements; packed 4-bit types counted per weight) and bytes of the
    IR's .xml and .bin; non-zeros counted for float and 8-bit constants."""
    import openvino as ov

    xml = folder / OPENVINO_FILE
    weights = xml.with_suffix(".bin")
    if not weights.is_file():
        raise CheckpointError(f"{xml} has no {weights.name} beside it; copy the whole folder")
    try:
        model = ov.Core().read_model(str(xml))
    except RuntimeError as e:
        raise CheckpointError(f"{xml} is not a readable OpenVINO model ({e})") from e
    total = nonzero = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant":
            continue
        count = math.prod(op.get_output_shape(0))
        total += count
        if op.get_element_type().get_type_name() in _PACKED:
            nonzero += count
        else:
            nonzero += int(np.count_nonzero(op.get_data()))
    return SizeStats(
        params_total=total,
        params_nonzero=nonzero,
        bytes_on_disk=xml.stat().st_size + weights.stat().st_size,
    )
