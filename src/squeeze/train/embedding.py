"""What an embedder trains on: its sentence embeddings, where other models have logits.

The training loop takes an ``objective`` (what a batch costs); an embedder gets one of these
instead of a task loss:

- :func:`distillation`: each text's embedding against a target, the original model's embedding
  of the same text. The targets are computed once, before training (:func:`with_targets`), and
  ride in the batches as labels: the original need not stay in memory, a model pruned in place
  still learns from what it was, and no label of the data is ever read.
- :func:`contrastive`: each text against its pair and every other pair of the batch (in-batch
  negatives: sentence-transformers' MultipleNegativesRankingLoss, cross-entropy over cosine
  similarities times 20). The two sides ride in one batch (:func:`paired`).
- :func:`sensitivity`: for ranking units (taylor importance), where a distance to the model's
  own embeddings cannot help: at the model itself it is at its minimum, so its gradient, and
  every first-order score, is zero.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from squeeze.core.types import ProgressFactory, no_progress
from squeeze.data.encoding import Encoded, batches
from squeeze.model.pooling import Pooling, pool
from squeeze.model.runtime import torch_forward

if TYPE_CHECKING:
    from squeeze.train.loop import Objective

PAIR = "pair_"  # the inputs of a pair's second text, in a contrastive batch
# sentence-transformers' MultipleNegativesRankingLoss scale: cosine similarities in [-1, 1]
# become logits in [-20, 20], sharp enough for cross-entropy to separate a positive.
CONTRASTIVE_SCALE = 20.0


def sentence_embeddings(model: Any, inputs: dict[str, Any], pooling: Pooling) -> tuple[Any, Any]:
    """A batch's pooled embeddings (float32, with gradients) and the model's outputs."""
    outputs = model(**inputs)
    return pool(outputs.last_hidden_state.float(), inputs["attention_mask"], pooling), outputs


def embedding_distance(vectors: Any, targets: Any, kind: str) -> Any:
    """Mean distance of each row of ``vectors`` to the same row of ``targets``: 1 - cosine, or
    the squared error per dimension (``mse``)."""
    import torch.nn.functional as F

    if kind == "mse":
        return F.mse_loss(vectors, targets)
    return (1.0 - F.cosine_similarity(vectors, targets, dim=-1)).mean()


def distillation(pooling: Pooling, kind: str) -> Objective:
    """Pull each text's embedding toward its target (the batch's labels, see
    :func:`with_targets`) by ``kind``, cosine or mse."""

    def objective(model: Any, inputs: dict[str, Any], targets: Any) -> tuple[Any, Any]:
        vectors, outputs = sentence_embeddings(model, inputs, pooling)
        return embedding_distance(vectors, targets.float(), kind), outputs

    return objective


def contrastive(pooling: Pooling, scale: float = CONTRASTIVE_SCALE) -> Objective:
    """In-batch negatives: text i should be closer to its own pair than to the pairs of the
    batch's other texts (cross-entropy over ``scale`` x cosine, the right pair as the class)."""

    def objective(model: Any, inputs: dict[str, Any], labels: Any) -> tuple[Any, Any]:
        import torch
        import torch.nn.functional as F

        first = {k: v for k, v in inputs.items() if not k.startswith(PAIR)}
        second = {k.removeprefix(PAIR): v for k, v in inputs.items() if k.startswith(PAIR)}
        anchors, outputs = sentence_embeddings(model, first, pooling)
        positives, _ = sentence_embeddings(model, second, pooling)
        scores = scale * F.normalize(anchors, dim=-1) @ F.normalize(positives, dim=-1).T
        right = torch.arange(len(scores), device=scores.device)
        return F.cross_entropy(scores, right), outputs

    return objective


def sensitivity(pooling: Pooling, seed: int = 0) -> Objective:
    """The sum over texts of each embedding's projection on a fresh random direction.

    Its gradient times a unit's weights is a random projection of how far the embeddings move
    when the unit is removed (first order); taylor importance adds up the size of that over
    batches, so the units whose removal moves the embeddings most rank highest.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)

    def objective(model: Any, inputs: dict[str, Any], labels: Any) -> tuple[Any, Any]:
        vectors, outputs = sentence_embeddings(model, inputs, pooling)
        directions = torch.randn(vectors.shape, generator=generator).to(vectors.device)
        return (vectors * directions).sum(), outputs

    return objective


def with_targets(
    data: Encoded,
    model: Any,
    pooling: Pooling,
    *,
    device: str = "cpu",
    batch_size: int = 64,
    progress: ProgressFactory = no_progress,
) -> Encoded:
    """``data``'s texts with ``model``'s embedding of each as its label (float32 [n, dim]): the
    targets :func:`distillation` pulls toward. Any labels ``data`` had are replaced."""
    forward = torch_forward(model, device, pooling)
    was_training = model.training
    model.eval()  # no dropout: the targets are what the model gives when it is used
    targets: np.ndarray | None = None
    try:
        with progress("Embedding the targets", len(data)) as bar:
            for batch in batches(data, batch_size, by_length=True):
                vectors = forward(batch.inputs)
                if targets is None:
                    targets = np.zeros((len(data), vectors.shape[-1]), dtype=np.float32)
                targets[batch.index] = vectors
                bar.advance(batch.size)
    finally:
        model.train(was_training)
    return replace(data, labels=targets, pairs=None, targets=None)


def paired(data: Encoded) -> Encoded:
    """A contrastive training set from encoded pairs (:func:`~squeeze.data.encoding.
    encode_sentences` of pairs): each text's inputs plus its pair's under ``pair_`` names, so
    that one batch holds both sides (each padded to its own longest)."""
    assert data.pairs is not None  # the caller checked that its data holds pairs
    second = {PAIR + name: rows for name, rows in data.pairs.features.items()}
    return replace(data, features={**data.features, **second}, labels=None, pairs=None)
