"""``export``: a validated ONNX export for deployment; the handler and the library shortcut.

The export folder (``model.onnx``, tokenizer, config, manifest) is the portable artifact every
ONNX-producing step builds on; the runner moves it into place only after validation passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squeeze.core.types import StepResult
from squeeze.engine.registry import register
from squeeze.methods.export.config import ExportConfig

if TYPE_CHECKING:
    from squeeze.engine.step import StepContext
    from squeeze.model.loaded import LoadedModel


def _produces(config: ExportConfig) -> str:
    return config.format


@register(
    ExportConfig,
    name="export",
    help="fp32 ONNX for ONNX Runtime, validated against PyTorch",
    tasks=("sequence-classification", "causal-lm", "masked-lm", "base", "embedding"),
    produces=_produces,
    compresses=False,
)
def export(loaded: LoadedModel, config: ExportConfig, ctx: StepContext) -> StepResult:
    """Write the validated export into the output folder."""
    if config.format == "openvino":
        from squeeze.methods.export.openvino import write_ir_export

        manifest, notes = write_ir_export(loaded, ctx.out, ctx.scratch, config)
    else:
        from squeeze.methods.export.onnx import write_export

        manifest, notes = write_export(loaded, ctx.out, config)
    return StepResult(details={"manifest": manifest}, notes=notes)


@dataclass
class ExportResult:
    """The export folder and the evidence that it is right (the library shortcut's result)."""

    out: Path
    manifest: dict[str, Any]
    seconds: float
    notes: list[str]

    @property
    def onnx_path(self) -> Path:
        return self.out / self.manifest["file"]

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "seconds": self.seconds, "notes": self.notes, **self.manifest}


def export_onnx(
    source: str | Path,
    out: str | Path,
    config: ExportConfig | None = None,
    *,
    overwrite: bool = False,
    trust_remote_code: bool = False,
) -> ExportResult:
    """Library shortcut for ``run_step`` with an export config."""
    from squeeze.engine.runner import run_step
    from squeeze.engine.step import StepOptions

    options = StepOptions(overwrite=overwrite, trust_remote_code=trust_remote_code)
    summary = run_step(source, config or ExportConfig(), out, options)
    return ExportResult(summary.out, summary.details["manifest"], summary.seconds, summary.notes)
