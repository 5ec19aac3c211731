"""``export``: a validated ONNX export for deployment; config and handler.

The export folder (``model.onnx``, tokenizer, config, manifest) is the portable artifact every
ONNX-producing step builds on; the runner moves it into place only after validation passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squeeze.core.config import StepConfig, param, range_problem
from squeeze.core.errors import Problem, UnsupportedError
from squeeze.core.types import StepResult
from squeeze.engine.registry import register

if TYPE_CHECKING:
    from squeeze.engine.step import StepContext
    from squeeze.model.loaded import LoadedModel


EXPORT_FORMATS = ("onnx", "openvino")


@dataclass(frozen=True, kw_only=True)
class ExportConfig(StepConfig):
    """How to export. ``optimize`` is off by default: the fused graph uses ONNX Runtime's own
    operators (com.microsoft), so the plain export is the one any ONNX runtime loads."""

    opset: int = param(17, help="ONNX opset version.")
    dynamic: bool = param(
        True,
        help="Dynamic batch and sequence axes, or shapes fixed to batch x seq.",
        flag="--dynamic-batch/--static-shapes",
    )
    batch: int = param(1, help="Batch size of a static-shape export.")
    seq_len: int = param(128, help="Sequence length of a static-shape export.", flag="--seq")
    optimize: bool = param(
        False, help="Fuse attention/LayerNorm/GELU with onnxruntime's transformer optimizer."
    )
    tolerance: float | None = param(
        None, help="Max absolute logit difference to PyTorch (default: 1e-4 for fp32)."
    )
    format: str = param(
        "onnx",
        help="onnx (ONNX Runtime and any ONNX runtime) or openvino (OpenVINO IR, needs the "
        "openvino extra).",
        choices=EXPORT_FORMATS,
    )

    def problems(self) -> list[Problem]:
        found = range_problem("opset", self.opset, 14, 21, closed="both")
        if self.batch < 1 or self.seq_len < 2:
            found.append(Problem("static shapes need {batch} >= 1 and {seq_len} >= 2"))
        if self.tolerance is not None and self.tolerance <= 0:
            found.append(Problem(f"{{tolerance}} must be > 0, not {self.tolerance:g}"))
        if self.format == "openvino" and self.optimize:
            found.append(
                Problem("{optimize} fuses into ONNX Runtime's own operators; OpenVINO fuses itself")
            )
        return found


def _produces(config: ExportConfig) -> str:
    return config.format


def _machine_problems(config: ExportConfig) -> list[Problem]:
    import importlib.util

    if config.format == "openvino" and importlib.util.find_spec("openvino") is None:
        return [
            Problem(
                "{format} openvino needs OpenVINO: pip install 'squeeze[openvino]'",
                UnsupportedError,
            )
        ]
    return []


@register(
    ExportConfig,
    name="export",
    help="fp32 ONNX for ONNX Runtime, validated against PyTorch",
    tasks=("sequence-classification", "causal-lm", "masked-lm", "base"),
    produces=_produces,
    complete=_machine_problems,
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
