"""Network-slimming importance (EarlyBERT, Chen et al. 2021): learn what each unit is worth.

Every attention head group and every FFN neuron gets a learnable scale, initialised to 1, that
multiplies its output (the input of the attention output projection, and of the FFN output
projection). The model trains on the task with an L1 penalty on the scales, which pushes the
scales of units the task can do without toward 0; the scales' magnitudes then rank units for
structured pruning. When training ends the scales are folded into the projections' weights
(exactly: they multiply those projections' inputs) and removed, so the model computes what it
computed with them, and the slimming steps count as fine-tuning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from squeeze.methods.prune.importance import Importance
from squeeze.model.arch import ArchSpec, ffn_width, get_path, head_size, kv_heads, layer_list

# The scales learn much faster than the weights: at the weights' 5e-5 a scale moves by about
# 0.005 over 100 steps, too little to tell units apart.
SCALE_LR = 1e-2


@dataclass
class Slot:
    """One block's scales and the hooks that apply them."""

    heads: Any  # torch.nn.Parameter, one per key/value group
    ffn: Any  # one per FFN neuron
    handles: list[Any]


def _columns_per_group(config: Any) -> int:
    """Input columns of the attention output projection that one key/value group feeds."""
    return (config.num_attention_heads // kv_heads(config)) * head_size(config)


def attach_scales(model: Any, spec: ArchSpec, config: Any) -> list[Slot]:
    """Scales on every block, as parameters of the model (so the optimizer trains them)."""
    import torch

    groups, width = kv_heads(config), ffn_width(config, spec)
    per_group = _columns_per_group(config)
    slots = []
    for index, layer in enumerate(layer_list(model, spec)):
        device = next(layer.parameters()).device
        heads = torch.nn.Parameter(torch.ones(groups, device=device))
        ffn = torch.nn.Parameter(torch.ones(width, device=device))
        # The optimizer gives parameters carrying this attribute their own learning rate.
        heads.squeeze_lr = ffn.squeeze_lr = SCALE_LR
        holder = torch.nn.Module()
        holder.register_parameter("heads", heads)
        holder.register_parameter("ffn", ffn)
        model.add_module(f"squeeze_slimming_{index}", holder)

        def scale_heads(module: Any, args: Any, scales: Any = heads) -> Any:
            return (args[0] * scales.repeat_interleave(per_group).to(args[0].dtype), *args[1:])

        def scale_ffn(module: Any, args: Any, scales: Any = ffn) -> Any:
            return (args[0] * scales.to(args[0].dtype), *args[1:])

        handles = [
            get_path(layer, spec.attn_out).register_forward_pre_hook(scale_heads),
            get_path(layer, spec.ffn_out).register_forward_pre_hook(scale_ffn),
        ]
        slots.append(Slot(heads, ffn, handles))
    return slots


def fold_scales(model: Any, spec: ArchSpec, config: Any, slots: list[Slot]) -> None:
    """Multiply each scale into the columns (rows for Conv1D) it scaled, then remove it."""
    import torch

    per_group = _columns_per_group(config)
    with torch.no_grad():
        for index, (layer, slot) in enumerate(zip(layer_list(model, spec), slots, strict=True)):
            for handle in slot.handles:
                handle.remove()
            for path, scales in ((spec.attn_out, slot.heads.repeat_interleave(per_group)),
                                 (spec.ffn_out, slot.ffn)):  # fmt: skip
                weight = get_path(layer, path).weight
                factor = scales.detach().to(weight.dtype)
                if spec.conv1d:  # Conv1D stores [in, out]
                    weight.mul_(factor[:, None])
                else:
                    weight.mul_(factor[None, :])
            delattr(model, f"squeeze_slimming_{index}")


def slimming_importance(
    model: Any,
    spec: ArchSpec,
    config: Any,
    task: Any,
    data: Any,
    train_config: Any,
    *,
    penalty: float,
    objective: Any = None,
    on_step: Callable[[Any, list[Slot]], Any] | None = None,
    progress: Any = None,
    device: str = "cpu",
) -> tuple[Importance, Any]:
    """Train ``model`` in place with unit scales under an L1 ``penalty`` for
    ``train_config.max_steps`` steps; return the scales' magnitudes as importance, and the
    training result. The model keeps the trained weights, with the scales folded in.

    ``on_step(state, slots)`` runs after every optimizer step, to follow the scales as they
    learn; returning True stops training (early-bird tickets stop once their masks settle).
    ``objective`` replaces the task's loss (an embedder's distillation toward its own
    embeddings: the scales of units it can do without fall)."""
    from squeeze.core.types import no_progress
    from squeeze.train.loop import train

    slots = attach_scales(model, spec, config)
    scales = [p for slot in slots for p in (slot.heads, slot.ffn)]

    def l1(model: Any, inputs: Any, outputs: Any) -> Any:
        """The training loop's extra loss: EarlyBERT's lambda * ||s||_1 over every scale."""
        return penalty * sum(p.abs().sum() for p in scales)

    try:
        result = train(
            model, task, data, train_config, extra_loss=l1, objective=objective,
            on_step=(lambda state: on_step(state, slots)) if on_step else None,
            progress=progress or no_progress, device=device,
        )  # fmt: skip
        importance = Importance(
            "slimming",
            [slot.heads.detach().abs().cpu() for slot in slots],
            [slot.ffn.detach().abs().cpu() for slot in slots],
        )
    finally:
        fold_scales(model, spec, config, slots)
    return importance, result
