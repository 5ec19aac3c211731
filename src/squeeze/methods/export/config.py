"""``export``'s config: apart from the handler's module, so the writers that read it import it
without importing the module that registers them."""

from __future__ import annotations

from dataclasses import dataclass

from squeeze.core.config import StepConfig, param, range_problem
from squeeze.core.errors import Problem

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
        help="onnx (ONNX Runtime and any ONNX runtime) or openvino (OpenVINO IR).",
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
