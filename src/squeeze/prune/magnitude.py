"""Unstructured magnitude pruning: zero the smallest weights of the transformer blocks.

Zeros do not make dense matrix multiplies faster; they make the weights compress well (see
``bytes_compressed`` in the summary) and are the starting point for sparse kernels.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from squeeze.arch import ArchSpec
from squeeze.errors import ConfigError

SCOPES = ("global", "layer")


@dataclass(frozen=True)
class MagnitudePruneConfig:
    """Which weights to zero and how many.

    Attributes:
        sparsity: Fraction of the selected weights to zero.
        scope: ``global`` ranks all selected weights together (one threshold); ``layer`` prunes
            each weight matrix to the same fraction.
        include: Extra parameter-name patterns (fnmatch) to prune, e.g. ``classifier.*``.
        exclude: Parameter-name patterns to leave alone.
    """

    sparsity: float
    scope: str = "global"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.sparsity < 1:
            raise ConfigError(f"--sparsity must be between 0 and 1, not {self.sparsity}")
        if self.scope not in SCOPES:
            raise ConfigError(f"--scope must be one of {', '.join(SCOPES)}, not '{self.scope}'")


def prunable_weights(
    model: Any, spec: ArchSpec, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> dict[str, Any]:
    """The 2-D weights of the transformer blocks' projections, plus ``include``, minus ``exclude``.

    Embeddings, LayerNorms, biases and the task head sit outside the blocks or are 1-D, so they
    are left alone by default: pruning them costs much accuracy for little size.
    """
    prefix = f"{model.base_model_prefix}.{spec.layers}."
    chosen = {}
    for name, param in model.named_parameters():
        in_blocks = name.startswith(prefix) and name.endswith(".weight") and param.ndim == 2
        if (in_blocks or any(fnmatch.fnmatch(name, p) for p in include)) and not any(
            fnmatch.fnmatch(name, p) for p in exclude
        ):
            chosen[name] = param
    if not chosen:
        raise ConfigError("no weights left to prune; check --include/--exclude patterns")
    return chosen


def magnitude_masks(weights: dict[str, Any], sparsity: float, scope: str) -> dict[str, Any]:
    """Boolean keep-masks zeroing the ``sparsity`` fraction of smallest-magnitude weights."""
    import torch

    def keep_above(values: Any, fraction: float) -> Any:
        k = int(fraction * values.numel())
        if k == 0:
            return None
        return torch.kthvalue(values.flatten().float(), k).values

    if scope == "global":
        threshold = keep_above(
            torch.cat([w.detach().abs().flatten() for w in weights.values()]), sparsity
        )
        return {n: w.detach().abs() > threshold for n, w in weights.items()}
    masks = {}
    for name, weight in weights.items():
        threshold = keep_above(weight.detach().abs(), sparsity)
        masks[name] = (
            weight.detach().abs() > threshold
            if threshold is not None
            else torch.ones_like(weight, dtype=torch.bool)
        )
    return masks


def apply_masks(weights: dict[str, Any], masks: dict[str, Any]) -> None:
    import torch

    with torch.no_grad():
        for name, weight in weights.items():
            weight.mul_(masks[name])


def sparsity_of(weights: dict[str, Any]) -> float:
    """Measured fraction of zeros among ``weights``."""
    total = sum(w.numel() for w in weights.values())
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    return zeros / total
