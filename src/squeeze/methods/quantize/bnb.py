"""The ``bitsandbytes`` backend: LLM.int8 (int8) or 4-bit NF4/FP4 (int4) through transformers'
``BitsAndBytesConfig``; bitsandbytes 0.50 runs both on the CPU too. Task heads stay in full
precision. The output is an HF folder whose config.json carries the quantization config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from squeeze.engine.registry import Backend, register_backend
from squeeze.methods.quantize.ort_int8 import only_onnxruntime_static

if TYPE_CHECKING:
    from squeeze.core.types import StepResult
    from squeeze.engine.step import StepContext
    from squeeze.methods.quantize.method import QuantizeConfig
    from squeeze.model.loaded import LoadedModel


def _quantize(
    loaded: LoadedModel, config: QuantizeConfig, ctx: StepContext, agree: Any
) -> tuple[StepResult, Any]:
    import torch
    from transformers import BitsAndBytesConfig

    from squeeze.methods.quantize.in_transformers import (
        HEAD_MODULES,
        check_4bit_widths,
        transformers_quantized,
    )

    skip = list(HEAD_MODULES)
    if config.dtype == "int8":
        quantization = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    else:
        check_4bit_widths(loaded.model)
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=config.bnb_4bit_type,
            bnb_4bit_compute_dtype=torch.float32,
            llm_int8_skip_modules=skip,
        )
    return transformers_quantized(loaded, ctx, quantization)


register_backend(
    Backend(
        name="bitsandbytes",
        dtypes=("int8", "int4"),
        default_for=(),
        produces="checkpoint",
        quantize=_quantize,
        help="bitsandbytes LLM.int8 and 4-bit NF4/FP4 checkpoints",
        check=only_onnxruntime_static,
    )
)
