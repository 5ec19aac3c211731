"""Does the quantized model still say what the original said? Logit distance and top-1 agreement.

Run after every quantization, on the same inputs for both models, whatever the backend: the
figures show what rounding cost before any accuracy is measured. The original's outputs are
taken first, because half precision changes the model in place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from squeeze.model.runtime import Forward


@dataclass(frozen=True)
class Agreement:
    """How closely a quantized model follows the original.

    Attributes:
        max_abs_diff: Largest absolute output difference (logits, or embedding components).
        mean_abs_diff: Mean absolute output difference.
        top1_agreement: Fraction of predictions (sequences, or tokens for LMs) that agree; None
            for embedders, whose outputs are vectors, not predictions.
        n_predictions: How many predictions (or embeddings) were compared.
        mean_cosine: An embedder's mean cosine between the two models' embeddings.
        min_cosine: The lowest of those cosines.
    """

    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float | None
    n_predictions: int
    mean_cosine: float | None = None
    min_cosine: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def headline(cls, data: dict[str, Any]) -> str:
        """The one figure a table shows: top-1 agreement, or an embedder's mean cosine."""
        if data.get("mean_cosine") is not None:
            return f"cos {data['mean_cosine']:.4f}"
        return f"{data['top1_agreement']:.2%}"

    @classmethod
    def describe(cls, data: dict[str, Any]) -> str:
        """What a step's report says of it (from its JSON form)."""
        if data.get("mean_cosine") is not None:
            return (
                f"embeddings' mean cosine {data['mean_cosine']:.4f} (lowest "
                f"{data['min_cosine']:.4f}), max |Δ| {data['max_abs_diff']:.3g}"
            )
        return (
            f"top-1 {data['top1_agreement']:.2%}, max |Δlogit| {data['max_abs_diff']:.3g}, "
            f"mean {data['mean_abs_diff']:.3g}"
        )


def agreement(
    expected: Sequence[np.ndarray],
    candidate: Forward,
    batches: Sequence[Mapping[str, np.ndarray]],
    *,
    token_level: bool,
    embeddings: bool = False,
) -> Agreement:
    """Compare the original's outputs ``expected`` (one per batch, computed before the model was
    changed in place) with ``candidate`` on the same batches; LMs on real tokens only; an
    embedder's (``embeddings``) by the cosine of each text's two embeddings."""
    max_diff, diff_sum, diff_count, agree, total = 0.0, 0.0, 0, 0, 0
    cosines: list[np.ndarray] = []
    for reference, inputs in zip(expected, batches, strict=True):
        got = candidate(inputs)
        if token_level:
            mask = inputs["attention_mask"].astype(bool)
            reference, got = reference[mask], got[mask]
        diff = np.abs(reference - got)
        max_diff = max(max_diff, float(diff.max()))
        diff_sum += float(diff.sum())
        diff_count += diff.size
        agree += int((reference.argmax(-1) == got.argmax(-1)).sum())
        total += int(np.prod(reference.shape[:-1]))
        if embeddings:
            norms = np.linalg.norm(reference, axis=-1) * np.linalg.norm(got, axis=-1)
            cosines.append((reference * got).sum(-1) / np.maximum(norms, 1e-12))
    mean_diff = diff_sum / max(diff_count, 1)
    if embeddings:
        cos = np.concatenate(cosines)
        return Agreement(max_diff, mean_diff, None, total, float(cos.mean()), float(cos.min()))
    return Agreement(max_diff, mean_diff, agree / max(total, 1), total)
