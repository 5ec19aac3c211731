"""``quantize``: a dtype through a registered backend, validated against the original.

Backends (``squeeze.engine.registry.Backend``) are the quantizers: ONNX Runtime's int8, PyTorch
casts and torchao, bitsandbytes. This handler picks one (the dtype's default unless ``backend`` is
given), checks the combination before any work, runs it, and compares the result with the
original on the same inputs (logit distance, top-1 agreement).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar

from squeeze.core.config import Registered, StepConfig, at_least, literal, param, range_problem
from squeeze.core.errors import Problem, UnsupportedError, did_you_mean
from squeeze.engine.registry import (
    PIN,
    Backend,
    backends,
    default_backend,
    pinned_backend,
    register,
)

if TYPE_CHECKING:
    from squeeze.core.types import StepResult
    from squeeze.engine.step import StepContext
    from squeeze.model.loaded import LoadedModel

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
BNB_4BIT_TYPES = ("nf4", "fp4")
INT4_BLOCK_SIZES = (16, 32, 64, 128, 256)  # MatMulNBits: powers of two from 16
COMPUTE = ("f32", "bf16")
# What the registered backends offer, in their order (int8, int4, fp16, bf16).
DTYPES = Registered(lambda: dict.fromkeys(d for b in backends().values() for d in b.dtypes))
BACKENDS = Registered(lambda: backends())


@dataclass(frozen=True, kw_only=True)
class QuantizeConfig(StepConfig):
    """A quantization request; which combinations exist is the registered backends' word.

    ``backend`` None picks the dtype's default backend. int8 and int4: ``auto``, the measured
    choice, because which quantizer is fastest is a property of the CPU (ONNX Runtime's dynamic
    int8 on AVX2-only EPYC, OpenVINO's static int8 on VNNI and AMX Xeons): every candidate is
    built and timed here, and the ranking is remembered per machine and model shape so the next
    quantization of that shape builds the winner alone. ``$SQUEEZE_BACKEND`` pins one instead.
    fp16/bf16: torch (GPU deployment; bf16 also on CPUs with AMX or AVX512-BF16); bf16 on
    ``openvino`` is an IR computed in bf16 for those CPUs, and a candidate of the measured int8
    choice there.
    """

    positional: ClassVar[tuple[str, ...]] = ("dtype", "backend")

    dtype: str = param("int8", help="int8, int4, fp16 or bf16.", choices=DTYPES)
    backend: str | None = param(
        None,
        choices=BACKENDS,
        metavar="NAME",
        help="Default (int8, int4): the fastest this machine runs within the gate, measured once "
        "per model shape and remembered ($SQUEEZE_BACKEND pins one). auto: measure again now. "
        "onnxruntime (int8 dynamic or static; int4 MatMulNBits), openvino (int8 weight-only or "
        "static; int4; bf16 IR), torch (fp16/bf16 default; int8 via torchao), bitsandbytes (int8 = "
        "LLM.int8; int4 NF4/FP4).",
    )
    static: bool = param(
        False,
        help="int8: calibrate activations on data (onnxruntime QDQ, openvino NNCF), not dynamic.",
    )
    calibration_method: str = param(
        "minmax", help="minmax, entropy or percentile.", choices=CALIBRATION_METHODS
    )
    calibration_samples: int = param(128, help="Samples for calibration.")
    per_channel: bool = param(True, help="int8: one weight scale per output channel.")
    reduce_range: bool = param(
        True,
        help="int8: 7-bit weights, so x86 CPUs without VNNI (AVX2) cannot saturate their int16 "
        "sums; off gains a little precision where the model runs on VNNI or ARM.",
    )
    outlier_ratio: float = param(
        12.0,
        help="int8: keep fp32 each MatMul whose input peaks above this many times its 99.9th "
        "percentile on calibration text (outlier features); 0 quantizes all.",
    )
    optimize: bool = param(True, help="Fuse attention before dynamic int8 (QAttention).")
    bnb_4bit_type: str = param(
        "nf4", help="int4 (bitsandbytes): nf4 or fp4.", choices=BNB_4BIT_TYPES
    )
    block_size: int = param(
        32,
        help="int4 (onnxruntime, openvino): weights per scale along the input dimension, a "
        "power of two from 16 to 256; smaller is more accurate and a little larger.",
    )
    symmetric: bool = param(
        False,
        help="int4 (onnxruntime, openvino): symmetric blocks, no zero points (smaller, less "
        "exact).",
    )
    compute: str = param(
        "f32",
        help="int8, int4 (openvino): what the layers left in floating point compute in; bf16 "
        "on CPUs with AMX or AVX512-BF16 is faster and a little less exact.",
        choices=COMPUTE,
    )
    accuracy_level: int = param(
        4,
        help="int4 (onnxruntime): MatMulNBits compute of the 4-bit layers, 4 = int8 activations "
        "per block (fastest on CPUs), 0 = fp32 (the 8-bit vocabulary projection stays at 4).",
    )

    def problems(self) -> list[Problem]:
        found = at_least("calibration_samples", self.calibration_samples, 1)
        found += at_least("outlier_ratio", self.outlier_ratio, 0)
        if self.block_size not in INT4_BLOCK_SIZES:
            sizes = ", ".join(map(str, INT4_BLOCK_SIZES))
            found.append(Problem(f"{{block_size}} must be one of {sizes}, not {self.block_size}"))
        found += range_problem("accuracy_level", self.accuracy_level, 0, 4, closed="both")
        known = backends()
        if self.dtype not in DTYPES or self.backend not in (None, *known):
            return found  # named by the choices check, which runs first
        pinned = pinned_backend()
        if self.backend is None and pinned is not None and pinned not in known:
            why = (
                f"${PIN} is {pinned!r}, which is not a backend{did_you_mean(pinned, known)}: set "
                f"it to one of {', '.join(known)}, or unset it to measure the fastest here"
            )
            return [*found, Problem(literal(why))]
        backend = self.chosen_backend
        if self.dtype not in backend.dtypes:
            others = " or ".join(b.name for b in known.values() if self.dtype in b.dtypes)
            why = f"{{backend}} {backend.name} has no {self.dtype}; use {{backend}} {others}"
            return [*found, Problem(why, UnsupportedError)]
        if self.compute != "f32" and backend.name != "openvino":
            why = f"{{compute}} {self.compute} is how OpenVINO runs an IR; use {{backend}} openvino"
            return [*found, Problem(why)]
        return found + backend.check(self)

    def canonical(self) -> QuantizeConfig:
        """Naming the dtype's default backend asks for the same thing as naming none, and
        options of another dtype or backend change nothing."""
        resolved = self.chosen_backend
        config = self
        if self.backend is not None and resolved is default_backend(self.dtype):
            config = replace(config, backend=None)
        read = _INT4_FIELDS.get(resolved.name, ()) if self.dtype == "int4" else ()
        unread = [name for name in _ORT_INT4_FIELDS if name not in read]
        if resolved.name != "openvino" or self.dtype == "bf16":
            unread.append("compute")
        return replace(config, **{name: _DEFAULTS[name] for name in unread})

    def environment(self) -> dict[str, Any]:
        """The backend a default resolves to ($SQUEEZE_BACKEND may pin one instead of the
        measured choice): one name, two different artifacts."""
        return {"backend": self.chosen_backend.name} if self.backend is None else {}

    def for_machine(self) -> bool:
        return self.chosen_backend.name == "auto"

    def chosen(self, summary: dict[str, Any]) -> QuantizeConfig:
        """The candidate ``auto`` kept (its summary's ``auto`` record), as the request that
        builds it alone: ``quantize(int8)`` that chose OpenVINO's static int8 is
        ``quantize(int8, openvino, static=true)``."""
        record = summary.get("auto")
        if not self.for_machine() or not isinstance(record, dict):
            return self
        fields = ("backend", "dtype", "static", "compute")
        return replace(self, **{name: record[f"chosen_{name}"] for name in fields})

    @property
    def chosen_backend(self) -> Backend:
        if self.backend is not None:
            return backends()[self.backend]
        backend = default_backend(self.dtype)
        assert backend is not None  # every dtype a backend offers has a default
        return backend


# The int4 options each backend reads (OpenVINO's group size and symmetry; auto passes all on).
_ORT_INT4_FIELDS = ("block_size", "symmetric", "accuracy_level")
_INT4_FIELDS = {
    "onnxruntime": _ORT_INT4_FIELDS,
    "auto": _ORT_INT4_FIELDS,
    "openvino": ("block_size", "symmetric"),
}
_DEFAULTS = {f.name: f.default for f in fields(QuantizeConfig)}


def _machine_problems(config: QuantizeConfig) -> list[Problem]:
    """What the chosen backend needs from this machine and environment, checked before any work:
    a CPU feature, an optional package."""
    import importlib.util

    from squeeze.measure.machine import cpu_flags

    backend, found = config.chosen_backend, []
    if backend.cpu_feature is not None and backend.cpu_feature not in cpu_flags():
        why = (
            f"backend {backend.name} needs a CPU with {backend.cpu_feature}, which this one "
            "lacks; choose another {backend}"
        )
        found.append(Problem(why, UnsupportedError))
    missing = " and ".join(m for m in backend.modules if importlib.util.find_spec(m) is None)
    if missing:
        why = f"backend {backend.name} needs {missing}: pip install 'squeeze[{backend.extra}]'"
        found.append(Problem(why, UnsupportedError))
    return found


def _produces(config: QuantizeConfig) -> str:
    return config.chosen_backend.produces


def _final(config: QuantizeConfig) -> bool:
    """Nothing follows quantization: no step here trains or slices quantized weights."""
    return True


def comparison_batches(loaded: LoadedModel, held_out: Any, max_length: int) -> list[dict[str, Any]]:
    """Inputs for the agreement check: up to 256 held-out examples, else the 256 texts of
    squeeze's built-in set that calibration never reads."""
    from squeeze.data.calibration import builtin_held_out
    from squeeze.data.encoding import batches, encode_dataset

    if held_out is None:
        held_out, _ = encode_dataset(loaded, builtin_held_out(), max_length=max_length,
                                     labels=False)  # fmt: skip
    return [b.inputs for _, b in zip(range(8), batches(held_out, 32), strict=False)]


def device_problem(backend: Backend, device: str) -> str | None:
    """Why the backend cannot serve the step's device, or None: a CUDA-only quantizer on the
    CPU, OpenVINO IR (which squeeze runs on the CPU) anywhere else."""
    if backend.needs_gpu and not device.startswith("cuda"):
        return f"backend {backend.name} runs on CUDA only; pass a CUDA device"
    if backend.produces == "openvino" and device != "cpu":
        return f"backend {backend.name} writes OpenVINO IR, which runs on the CPU here"
    return None


def calibration_feeds(
    loaded: LoadedModel, config: QuantizeConfig, ctx: StepContext
) -> tuple[list[dict[str, Any]], str]:
    """Input batches for calibration and outlier detection (batches of 16, padded to the
    longest), and what they are: the calibration data, data's training part, or squeeze's
    built-in calibration text when no data is given."""
    from squeeze.data.encoding import batches

    calibration, source = ctx.data.calibration(loaded, config.calibration_samples)
    longest = max(len(ids) for ids in calibration.features["input_ids"])
    return [b.inputs for b in batches(calibration, 16, pad_to=longest)], source


@register(
    QuantizeConfig,
    name="quantize",
    help="int8 and int4, the fastest here by default; fp16/bf16 checkpoints, bf16 OpenVINO IR",
    summary="quantize.json",
    tasks=("sequence-classification", "causal-lm", "masked-lm", "embedding"),
    produces=_produces,
    final=_final,
    complete=_machine_problems,
)
def quantize(loaded: LoadedModel, config: QuantizeConfig, ctx: StepContext) -> StepResult:
    """Quantize with the chosen backend; record agreement with the original."""
    from squeeze.core.types import Task
    from squeeze.methods.quantize.validate import agreement
    from squeeze.model.runtime import torch_forward

    backend = config.chosen_backend
    device = device_problem(backend, ctx.device)
    if device is not None:
        raise UnsupportedError(device)
    notes = []
    if config.backend is None:
        notes.append(f"backend {backend.name} chosen for {config.dtype} (the default)")
    held_out = ctx.data.held_out(loaded) if ctx.data.given else None
    compare = comparison_batches(loaded, held_out, ctx.max_length)
    reference = torch_forward(loaded.model, ctx.device, loaded.pooling)
    expected = [reference(b) for b in compare]  # before half precision changes the model in place
    embeddings = loaded.task is Task.EMBEDDING
    token_level = loaded.task is not Task.SEQUENCE_CLASSIFICATION and not embeddings

    def agree(forward: Any) -> Any:
        return agreement(expected, forward, compare, token_level=token_level, embeddings=embeddings)

    result, forward = backend.quantize(loaded, config, ctx, agree)
    result.forward = forward
    result.notes[:0] = notes
    result.details = {
        "backend": backend.name,
        "backend_default": config.backend is None,
        "agreement": agree(forward).to_dict(),
        **result.details,
    }
    return result
