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
        max_abs_diff: Largest absolute logit difference.
        mean_abs_diff: Mean absolute logit difference.
        top1_agreement: Fraction of predictions (sequences, or tokens for LMs) that agree.
        n_predictions: How many predictions were compared.
    """

    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    n_predictions: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def agreement(
    expected: Sequence[np.ndarray],
    candidate: Forward,
    batches: Sequence[Mapping[str, np.ndarray]],
    *,
    token_level: bool,
) -> Agreement:
    """Compare the original's outputs ``expected`` (one per batch, computed before the model was
    changed in place) with ``candidate`` on the same batches; LMs on real tokens only."""
    max_diff, diff_sum, diff_count, agree, total = 0.0, 0.0, 0, 0, 0
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
    return Agreement(max_diff, diff_sum / max(diff_count, 1), agree / max(total, 1), total)
