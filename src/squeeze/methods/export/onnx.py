"""Export a checkpoint to ONNX that provably computes what the PyTorch model computes.

Trace it with its weights stored beside the graph (``trace``, ``storage``), run ``onnx.checker``,
optionally fuse (``optimize``), validate the file that will be deployed against PyTorch
(``validate``) and write its manifest (``manifest``): a file that disagrees beyond the tolerance
is never written to the output folder. Memory stays near one copy of the weights at any size.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from squeeze.artifact.read import MANIFEST_FILE, MODEL_FILE
from squeeze.core.errors import ValidationError
from squeeze.methods.export.config import ExportConfig
from squeeze.methods.export.manifest import dtype, manifest
from squeeze.methods.export.optimize import optimize
from squeeze.methods.export.trace import trace
from squeeze.methods.export.validate import reference_outputs, validate
from squeeze.model.loaded import LoadedModel
from squeeze.model.sizes import onnx_files

# Absolute logit tolerance by parameter dtype; half precision rounds at ~1e-3 relative.
DEFAULT_TOLERANCE = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 5e-2}


def write_export(
    loaded: LoadedModel, folder: Path, config: ExportConfig, *, release: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """Trace, check, optionally fuse and validate ``loaded`` into ``folder`` (which exists).

    The folder gets ``model.onnx`` (with ``model.onnx.data`` for large models), the tokenizer,
    ``config.json`` (labels) and ``manifest.json`` (inputs, outputs, shapes, validation figures,
    versions). Switches the model to eager attention: its traced MatMul/Softmax is what the
    optimizer fuses; SDPA's is not. With ``release``, the PyTorch weights are freed as soon as
    PyTorch's reference logits are taken (moved to the ``meta`` device: a later forward fails
    loudly), so onnxruntime's copy never sits beside them: for callers done with PyTorch.

    Returns:
        The manifest and notes.

    Raises:
        ValidationError: the checker or the comparison with PyTorch failed.
    """
    import onnx

    loaded.model.set_attn_implementation("eager")
    tolerance = config.tolerance or DEFAULT_TOLERANCE.get(dtype(loaded), 1e-4)
    path = folder / MODEL_FILE
    trace(loaded, path, config)
    try:
        onnx.checker.check_model(str(path))  # the path, not a proto: that works past 2 GB
    except onnx.checker.ValidationError as e:
        raise ValidationError(f"onnx.checker rejected the export: {str(e).splitlines()[0]}") from e
    references = reference_outputs(loaded, config)
    if release:
        loaded.model.to("meta")
    fused = optimize(loaded, path) if config.optimize else None
    written = manifest(loaded, config, validate(path, loaded, tolerance, references), fused)
    loaded.tokenizer.save_pretrained(folder)
    loaded.config.save_pretrained(folder)
    (folder / MANIFEST_FILE).write_text(json.dumps(written, indent=2))
    notes = []
    if config.optimize and not any(op.endswith("Attention") for op in fused or {}):
        notes.append(
            f"onnxruntime's optimizer fused no attention for {loaded.family} "
            f"({', '.join(fused or {}) or 'nothing fused'})"
        )
    return written, notes


def derived_export(
    loaded: LoadedModel,
    folder: Path,
    scratch: Path,
    config: ExportConfig,
    derive: Callable[[Path, dict[str, Any]], tuple[dict[str, Any], list[str]]],
    *,
    release: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """An export folder whose graph is derived (quantized or converted) from a validated export.

    ``loaded`` is exported with ``config`` into ``scratch`` (:func:`write_export`, ``release``
    included); ``derive(that folder, its manifest)`` writes the derived graph into ``folder`` and
    returns the manifest's update and notes. ``folder`` then gets the export's tokenizer and
    config (not its graph or external data) and the updated manifest. Returns the manifest and
    the notes of both.
    """
    exported = scratch / "fp32"
    exported.mkdir()
    written, notes = write_export(loaded, exported, config, release=release)
    update, derived_notes = derive(exported, written)
    skip = {f.name for f in onnx_files(exported / MODEL_FILE)} | {MANIFEST_FILE}
    for item in exported.iterdir():
        if item.name not in skip and item.is_file():
            shutil.copy2(item, folder / item.name)
    derived = {**written, **update}
    (folder / MANIFEST_FILE).write_text(json.dumps(derived, indent=2))
    return derived, [*notes, *derived_notes]
