"""What to quantize to, with which backend, and which combinations make sense.

Every combination is checked up front, with the reason and the alternative in the message, so a
CI job fails in a second rather than after an export.
"""

from __future__ import annotations

from dataclasses import dataclass

from squeeze.errors import ConfigError, UnsupportedError

DTYPES = ("fp16", "bf16", "int8", "int4")
BACKENDS = ("onnxruntime", "torch", "bitsandbytes")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
BNB_4BIT_TYPES = ("nf4", "fp4")
# int8 deploys on ONNX Runtime by default: its int8 kernels and fused QAttention are the fastest
# CPU path measured here; half precision keeps the PyTorch checkpoint format (GPU deployment);
# 4-bit weights exist only in bitsandbytes.
DEFAULT_BACKEND = {"int8": "onnxruntime", "fp16": "torch", "bf16": "torch", "int4": "bitsandbytes"}
# What each backend can produce, for the error that names the alternatives.
SUPPORTED = {
    "onnxruntime": ("int8",),
    "torch": ("int8", "fp16", "bf16"),
    "bitsandbytes": ("int8", "int4"),
}


@dataclass(frozen=True)
class QuantizeConfig:
    """A quantization request.

    Attributes:
        dtype: fp16, bf16 (weights cast) or int8.
        backend: Where the result runs; None picks ``DEFAULT_BACKEND[dtype]``.
        static: int8 with activations calibrated on data (QDQ) instead of dynamic ranges.
        calibration_method: minmax, entropy or percentile (static only).
        calibration_samples: Examples fed through the model for calibration.
        per_channel: One int8 scale per output channel of each weight.
        optimize: Fuse attention/LayerNorm/GELU before dynamic int8 (gives QAttention).
        bnb_4bit_type: nf4 or fp4 for ``--dtype int4``.
    """

    dtype: str
    backend: str | None = None
    static: bool = False
    calibration_method: str = "minmax"
    calibration_samples: int = 128
    per_channel: bool = False
    optimize: bool = True
    bnb_4bit_type: str = "nf4"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, not '{self.dtype}'")
        if self.backend is not None and self.backend not in BACKENDS:
            raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ConfigError(
                f"--calibration-method must be one of {', '.join(CALIBRATION_METHODS)}"
            )
        if self.calibration_samples < 1:
            raise ConfigError("--calibration-samples must be >= 1")
        if self.bnb_4bit_type not in BNB_4BIT_TYPES:
            raise ConfigError(f"--bnb-4bit-type must be one of {', '.join(BNB_4BIT_TYPES)}")
        backend = self.chosen_backend
        if self.static and (self.dtype != "int8" or backend != "onnxruntime"):
            raise ConfigError("--static is int8 calibration for --backend onnxruntime")
        if self.dtype in ("fp16", "bf16") and backend == "onnxruntime":
            raise UnsupportedError(
                f"{self.dtype} with --backend onnxruntime is not offered (its CPU path is int8); "
                "use --backend torch (fp16 also writes an fp16 ONNX export for GPUs)"
            )
        if self.dtype not in SUPPORTED[backend]:
            others = [b for b, dtypes in SUPPORTED.items() if self.dtype in dtypes]
            raise UnsupportedError(
                f"--backend {backend} has no {self.dtype}; use --backend {' or '.join(others)}"
            )

    @property
    def chosen_backend(self) -> str:
        return self.backend or DEFAULT_BACKEND[self.dtype]
