"""The ``squeeze info`` fact sheet of an export folder, from its manifest, the config beside the
graph and the graph's initializers (read with onnx or OpenVINO, no runtime session)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from squeeze.artifact.read import MANIFEST_FILE
from squeeze.artifact.sizes import export_size_stats
from squeeze.core.errors import CheckpointError
from squeeze.core.types import Task
from squeeze.model.arch import family_name, find_spec, shape_summary
from squeeze.model.info import config_namespace, fact_sheet, read_json
from squeeze.model.pooling import Pooling


def inspect_export(folder: Path, *, source: str | None = None) -> dict[str, Any]:
    """Facts about a ``squeeze export`` folder: its manifest, the config beside the graph, and
    the ONNX initializers (read with onnx, no runtime session)."""
    manifest = read_json(folder / MANIFEST_FILE)
    config_path = folder / "config.json"
    config = read_json(config_path) if config_path.is_file() else {}
    namespace = config_namespace(config)
    spec = find_spec(namespace)
    try:
        stats = export_size_stats(folder)
    except Exception as e:  # onnx raises its own DecodeError/ValidationError types
        raise CheckpointError(
            f"{folder}: the ONNX graph is corrupt or truncated ({e}); export it again"
        ) from e
    return fact_sheet(
        source=source if source is not None else str(folder),
        path=str(folder),
        architecture=manifest.get("architecture"),
        family=manifest.get("family") or family_name(namespace, spec),
        model_type=manifest.get("model_type") or config.get("model_type"),
        task=str(manifest.get("task", Task.BASE.value)),
        shapes=shape_summary(namespace, spec) if config else {},
        params_total=stats.params_total,
        params_nonzero=stats.params_nonzero,
        bytes_on_disk=stats.bytes_on_disk,
        dtype=str(manifest.get("dtype", "float32")),
        labels=manifest.get("labels"),
        inputs=[str(i["name"]) for i in manifest.get("inputs", ())],
        notes=[],
        extra={
            "quantization": _export_quantization(manifest),
            "format": manifest.get("format", "onnx"),
            "pooling": (
                f"{Pooling(**manifest['pooling']).describe()}, in the graph"
                if manifest.get("pooling")
                else None
            ),
        },
    )


def _export_quantization(manifest: dict[str, Any]) -> str | None:
    quant = manifest.get("quantization")
    if not isinstance(quant, dict):
        return None
    return " ".join(str(quant[k]) for k in ("backend", "mode") if quant.get(k))
