"""Score any model the same way, whether it runs in PyTorch or ONNX Runtime.

Evaluation is written against a *forward*: a function from numpy input arrays to numpy logits.
A PyTorch module and an ONNX Runtime session are both wrapped as one, so a model and its export
are scored by the very same metric code and their numbers are comparable.
"""

from __future__ import annotations

import time

import numpy as np

from squeeze.core.errors import Problem, UnsupportedError
from squeeze.core.faults import stop_if_interrupted
from squeeze.core.stats import Scores
from squeeze.core.types import Evaluation, Metric, ProgressFactory, Task, no_progress
from squeeze.data.encoding import Encoded, batches
from squeeze.model.loaded import LoadedModel
from squeeze.model.runtime import Forward, torch_forward


def classification_metrics(predictions: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Accuracy and macro-F1 (over classes seen in labels or predictions, as scikit-learn does)."""
    classes = np.union1d(labels, predictions)
    index = np.searchsorted(classes, labels), np.searchsorted(classes, predictions)
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(confusion, index, 1)
    true_pos = np.diag(confusion).astype(np.float64)
    precision_den = confusion.sum(axis=0)
    recall_den = confusion.sum(axis=1)
    f1_den = precision_den + recall_den
    f1 = np.divide(2 * true_pos, f1_den, out=np.zeros_like(true_pos), where=f1_den > 0)
    return float(true_pos.sum() / len(labels)), float(f1.mean())


def causal_lm_nll(
    logits: np.ndarray, input_ids: np.ndarray, attention_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's summed next-token negative log-likelihood over its real (unpadded) tokens,
    and its count of such tokens."""
    import torch

    logits_t = torch.from_numpy(logits[:, :-1]).float()
    targets = torch.from_numpy(input_ids[:, 1:])
    mask = torch.from_numpy(attention_mask[:, 1:]).bool()
    nll = torch.nn.functional.cross_entropy(
        logits_t.reshape(-1, logits_t.shape[-1]), targets.reshape(-1), reduction="none"
    ).reshape(targets.shape)
    return (nll * mask).sum(dim=1).double().numpy(), mask.sum(dim=1).numpy()


def evaluate_forward(
    forward: Forward,
    encoded: Encoded,
    task: Task,
    *,
    batch_size: int = 32,
    progress: ProgressFactory = no_progress,
    reference: Evaluation | None = None,
) -> Evaluation:
    """Run ``forward`` over every example once and compute the task's metrics; an embedder's
    include its fidelity to ``reference`` (the original's evaluation on the same data).

    Raises:
        UnsupportedError: a task squeeze has no metric for (masked LM, base encoder).
    """
    if task is Task.EMBEDDING:
        from squeeze.measure.embedding import evaluate_embedder

        return evaluate_embedder(
            forward, encoded, reference=reference, batch_size=batch_size, progress=progress
        )
    if task is Task.SEQUENCE_CLASSIFICATION and encoded.labels is None:
        raise UnsupportedError(
            Problem("classification metrics need labelled data ({label_column})")
        )
    if task not in (Task.SEQUENCE_CLASSIFICATION, Task.CAUSAL_LM):
        raise UnsupportedError(
            Problem(
                f"no metric for {task.value} models; evaluate a sequence classifier (fine-tune "
                "one with `squeeze finetune`), a causal LM or an embedder ({task} embedding)"
            )
        )
    n = len(encoded)
    # Per sample, in the encoded order (batches run sorted by length): predictions for
    # classification, summed NLL and token counts for causal LMs.
    predictions = np.zeros(n, dtype=np.int64)
    nll = np.zeros(n, dtype=np.float64)
    tokens = np.zeros(n, dtype=np.float64)
    start = time.perf_counter()
    with progress("Evaluating", n) as bar:
        # Sorted by length: the metrics do not depend on order, and padding costs time.
        for batch in batches(encoded, batch_size, by_length=True):
            stop_if_interrupted()
            logits = forward(batch.inputs)
            if task is Task.SEQUENCE_CLASSIFICATION:
                predictions[batch.index] = logits.argmax(axis=-1)
            else:
                nll[batch.index], tokens[batch.index] = causal_lm_nll(
                    logits, batch.inputs["input_ids"], batch.inputs["attention_mask"]
                )
            bar.advance(batch.size)
    elapsed = time.perf_counter() - start

    if task is Task.SEQUENCE_CLASSIFICATION:
        assert encoded.labels is not None
        accuracy, macro_f1 = classification_metrics(predictions, encoded.labels)
        metrics = (Metric("accuracy", accuracy, n), Metric("macro_f1", macro_f1, n))
        correct = (predictions == encoded.labels).astype(np.float64)
        scores = Scores("accuracy", tuple(correct.tolist()))
    else:
        loss = float(nll.sum() / max(tokens.sum(), 1))
        metrics = (
            Metric("perplexity", float(np.exp(loss)), n),
            Metric("loss", loss, n),
        )
        scores = Scores("perplexity", tuple(nll.tolist()), tuple(tokens.tolist()))
    return Evaluation(metrics=metrics, n_samples=n, elapsed_s=elapsed, scores=scores)


def evaluate(
    loaded: LoadedModel,
    encoded: Encoded,
    *,
    batch_size: int = 32,
    device: str = "cpu",
    progress: ProgressFactory = no_progress,
    reference: Evaluation | None = None,
) -> Evaluation:
    """Evaluate a loaded PyTorch model (the common case of :func:`evaluate_forward`)."""
    return evaluate_forward(
        torch_forward(loaded.model, device, loaded.pooling),
        encoded,
        loaded.task,
        batch_size=batch_size,
        progress=progress,
        reference=reference,
    )
