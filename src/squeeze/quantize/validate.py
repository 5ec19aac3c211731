"""Does the quantized model still say what the original said? Logit distance and top-1 agreement.

Run after every quantization, on the same inputs for both models, whatever the backend: the
figures show what rounding cost before any accuracy is measured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from squeeze.runtime import Forward


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
    reference: Forward,
    candidate: Forward,
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    token_level: bool,
) -> Agreement:
    """Compare two forwards batch by batch; LMs are compared on real (unpadded) tokens only."""
    max_diff, diff_sum, diff_count, agree, total = 0.0, 0.0, 0, 0, 0
    for inputs in batches:
        expected, got = reference(inputs), candidate(inputs)
        if token_level:
            mask = inputs["attention_mask"].astype(bool)
            expected, got = expected[mask], got[mask]
        diff = np.abs(expected - got)
        max_diff = max(max_diff, float(diff.max()))
        diff_sum += float(diff.sum())
        diff_count += diff.size
        agree += int((expected.argmax(-1) == got.argmax(-1)).sum())
        total += int(np.prod(expected.shape[:-1]))
    return Agreement(max_diff, diff_sum / max(diff_count, 1), agree / max(total, 1), total)
