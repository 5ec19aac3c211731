"""PyTorch-deployment quantization through transformers' own quantizer integrations.

- ``--backend torch --dtype int8``: torchao's dynamic int8 (int8 weights, int8 activations
  quantized per token at run time) via ``TorchAoConfig``. ``torch.ao.quantization`` is
  deprecated in favour of torchao, and torchao's tensors save to safetensors and reload through
  plain ``from_pretrained``.
- ``--backend bitsandbytes``: LLM.int8 (``--dtype int8``) or 4-bit NF4/FP4 (``--dtype int4``)
  via ``BitsAndBytesConfig``; bitsandbytes 0.50 runs both on CPU too.

Either way the output is an ordinary HF folder whose config.json carries the quantization config,
so ``transformers`` (and ``squeeze.load``) reload it as it was saved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from squeeze.core.errors import Problem, UnsupportedError
from squeeze.core.types import SizeStats, StepResult
from squeeze.model.checkpoint import auto_class, quiet_quantizer_imports, quiet_transformers
from squeeze.model.loaded import LoadedModel

if TYPE_CHECKING:
    from squeeze.engine.step import StepContext

# Task heads stay in full precision: they are tiny, sensitive, and often narrower than the
# 4-bit block size (a 2-label classifier has 2 outputs).
HEAD_MODULES = (
    "classifier", "pre_classifier", "pooler", "score", "lm_head", "cls", "vocab_projector",
    "vocab_transform",
)  # fmt: skip
BNB_4BIT_BLOCK = 64


def check_4bit_widths(model: Any) -> None:
    """4-bit kernels split every row into blocks of 64: refuse input widths that do not divide
    (read from the layers themselves, so any family is checked the same way: Linear, and the
    Conv1D of GPT-2, which stores its weight [in, out] and which bitsandbytes replaces too)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    widths = {
        name: module.in_features if isinstance(module, torch.nn.Linear) else module.weight.shape[0]
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Linear, Conv1D))
    }
    bad = sorted(
        {
            width
            for name, width in widths.items()
            if not set(name.split(".")) & set(HEAD_MODULES) and width % BNB_4BIT_BLOCK
        }
    )
    if bad:
        why = (
            f"4-bit bitsandbytes needs widths divisible by {BNB_4BIT_BLOCK}; this model has "
            f"input widths {', '.join(map(str, bad))}; use {{dtype}} int8"
        )
        raise UnsupportedError([Problem(why)])


def transformers_quantized(
    loaded: LoadedModel, ctx: StepContext, quantization: Any
) -> tuple[StepResult, Any]:
    """Reload ``loaded``'s checkpoint quantized on the CPU and save it (with its tokenizer) into
    the output; validated by reloading what was saved."""
    from squeeze.model.checkpoint import embedding_dimension, load
    from squeeze.model.pooling import write_sentence_files
    from squeeze.model.runtime import torch_forward
    from squeeze.model.sizes import size_stats, weight_bytes

    if loaded.shapes is not None:
        why = (
            "this structurally pruned model has shapes only squeeze can rebuild; quantize it "
            "with {backend} onnxruntime"
        )
        raise UnsupportedError([Problem(why)])
    quiet_transformers()
    method = getattr(quantization.quant_method, "value", quantization.quant_method)
    try:
        with quiet_quantizer_imports():
            model = auto_class(loaded.task).from_pretrained(
                loaded.path, quantization_config=quantization, device_map="cpu"
            )
    except (ImportError, RuntimeError, ValueError) as e:
        # Where a quantizer has no kernels for this machine or build, say so in one line.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsupportedError(f"{method} could not quantize this model here: {first}") from e
    model.save_pretrained(ctx.out)
    loaded.tokenizer.save_pretrained(ctx.out)
    if loaded.pooling is not None:
        write_sentence_files(ctx.out, loaded.pooling, embedding_dimension(loaded.config))
    stats = size_stats(loaded)
    # Packed 4-bit tensors count two weights per element: report the model's own parameter
    # count and the bytes actually written.
    sizes = SizeStats(stats.params_total, stats.params_nonzero, weight_bytes(ctx.out))
    reloaded = load(ctx.out, device="cpu")
    return StepResult(sizes=sizes), torch_forward(reloaded.model, pooling=reloaded.pooling)
