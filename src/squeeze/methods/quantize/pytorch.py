"""The ``torch`` backend: PyTorch deployment. fp16/bf16 cast the weights (GPU deployment; fp16
also writes an fp16 ONNX export for GPU providers); int8 is torchao's dynamic int8 through
transformers' ``TorchAoConfig`` (``torch.ao.quantization`` is deprecated in its favour)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from squeeze.core.errors import Problem, UnsupportedError
from squeeze.core.types import StepResult
from squeeze.engine.registry import Backend, register_backend
from squeeze.methods.quantize.ort_int8 import only_onnxruntime_static

if TYPE_CHECKING:
    from squeeze.engine.step import StepContext
    from squeeze.methods.quantize.method import QuantizeConfig
    from squeeze.model.loaded import LoadedModel

_HALF = {"fp16": "float16", "bf16": "bfloat16"}


def _fp16_onnx(ctx: StepContext, agree: Any) -> tuple[dict[str, Any], str]:
    """An fp16 ONNX export for GPU providers in ``OUT/onnx``, beside the fp16 checkpoint.

    onnxruntime's float16 converter keeps float32 inputs and outputs (``keep_io_types``), so the
    file drops into the same serving code; the CPU provider runs it too, which is how it is
    validated here. Exported from a fresh fp32 load of the input.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from squeeze.artifact.read import MODEL_FILE
    from squeeze.methods.export.method import ExportConfig
    from squeeze.methods.export.onnx import derived_export
    from squeeze.methods.quantize.validate import Agreement
    from squeeze.model.checkpoint import load
    from squeeze.model.runtime import ort_forward, ort_session

    folder = ctx.out / "onnx"
    folder.mkdir()

    def halved(exported: Path, _: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        half = convert_float_to_float16(onnx.load(str(exported / MODEL_FILE)), keep_io_types=True)
        onnx.save(half, str(folder / MODEL_FILE))
        quantization = {"backend": "onnxruntime", "mode": "fp16 weights and compute"}
        return {"dtype": "float16", "quantization": quantization}, []

    fresh = load(ctx.source, trust_remote_code=ctx.trust_remote_code)
    derived_export(fresh, folder, ctx.scratch, ExportConfig(), halved)
    agreement = agree(ort_forward(ort_session(folder / MODEL_FILE)))
    note = (
        f"also wrote an fp16 ONNX export to onnx/ ({Agreement.describe(agreement.to_dict())}, "
        "on the CPU provider)"
    )
    return agreement.to_dict(), note


def _quantize(
    loaded: LoadedModel, config: QuantizeConfig, ctx: StepContext, agree: Any
) -> tuple[StepResult, Any]:
    import torch

    from squeeze.model.runtime import torch_forward

    if config.dtype in _HALF:
        result = StepResult(model=loaded)
        if config.dtype == "fp16":
            onnx_agreement, note = _fp16_onnx(ctx, agree)
            result.details["onnx_agreement"] = onnx_agreement
            result.notes.append(note)
        loaded.model.to(getattr(torch, _HALF[config.dtype]))
        return result, torch_forward(loaded.model, ctx.device, loaded.pooling)
    if not any(isinstance(m, torch.nn.Linear) for m in loaded.model.base_model.modules()):
        why = (
            f"torchao int8 quantizes nn.Linear layers and {loaded.family} keeps its weights in "
            "Conv1D, so nothing would change; use {backend} onnxruntime or bitsandbytes"
        )
        raise UnsupportedError([Problem(why)])
    from transformers import TorchAoConfig

    from squeeze.methods.quantize.in_transformers import transformers_quantized
    from squeeze.model.checkpoint import quiet_quantizer_imports

    with quiet_quantizer_imports():
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig

    quantization = TorchAoConfig(quant_type=Int8DynamicActivationInt8WeightConfig())
    return transformers_quantized(loaded, ctx, quantization)


register_backend(
    Backend(
        name="torch",
        dtypes=("fp16", "bf16", "int8"),
        default_for=("fp16", "bf16"),
        produces="checkpoint",
        quantize=_quantize,
        help="PyTorch checkpoints: fp16/bf16 casts (GPU deployment), torchao dynamic int8",
        check=only_onnxruntime_static,
    )
)
