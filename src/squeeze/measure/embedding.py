"""Scoring an embedder: what its vectors are good for, and how close they stay to the original's.

An embedder has no logits to compare with labels; its embeddings are judged by what they are
used for, decided by the data (:func:`squeeze.data.encoding.encode_sentences`):

- pairs with gold scores (STS): Spearman of the pairs' cosine similarity against the scores;
- pairs without scores (a query and its positive): retrieval of each query's positive among all
  positives, NDCG@10, MRR@10 and recall@10;
- single texts with labels: k-nearest-neighbour accuracy, leaving each text out of its own vote;
- always, against a reference model's embeddings of the same texts (the original, for a
  compressed model): fidelity, the mean cosine between the two models' embeddings of each text,
  the Spearman of their pairwise similarities, and the overlap of each text's 10 nearest
  neighbours. Fidelity needs no labels, so unlabelled text can gate a compression.

Each metric keeps each sample's share (:class:`~squeeze.core.stats.Scores`), so a drop gets the
paired bootstrap interval every other metric has.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence

import numpy as np

from squeeze.core.faults import stop_if_interrupted
from squeeze.core.stats import Scores, spearman
from squeeze.core.types import Evaluation, Metric, ProgressFactory, no_progress
from squeeze.data.encoding import Encoded, batches
from squeeze.model.runtime import Forward

K_NEIGHBOURS = 10
TOP = 10  # the cut-off of NDCG, MRR, recall and neighbour overlap
# Pairwise similarities are compared on at most this many texts (n^2 / 2 pairs).
_SIMILARITY_SAMPLE = 2000
_BLOCK = 1024  # rows of a similarity matrix computed at once


def embed(
    forward: Forward,
    encoded: Encoded,
    *,
    batch_size: int = 32,
    progress: ProgressFactory = no_progress,
    what: str = "Embedding",
) -> np.ndarray:
    """Every text's embedding [n, dim], unit length, in the encoded order."""
    out: np.ndarray | None = None
    with progress(what, len(encoded)) as bar:
        for batch in batches(encoded, batch_size, by_length=True):
            stop_if_interrupted()
            vectors = np.asarray(forward(batch.inputs), dtype=np.float32)
            if out is None:
                out = np.zeros((len(encoded), vectors.shape[-1]), dtype=np.float32)
            out[batch.index] = vectors
            bar.advance(batch.size)
    assert out is not None
    return unit(out)


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (cosine similarity becomes a dot product)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _top(queries: np.ndarray, keys: np.ndarray, k: int, *, leave_out: bool) -> np.ndarray:
    """The indices of each query's ``k`` most similar keys, most similar first; with
    ``leave_out`` (queries are the keys) a row never finds itself."""
    k = min(k, len(keys) - int(leave_out))
    found = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), _BLOCK):
        sims = queries[start : start + _BLOCK] @ keys.T
        if leave_out:
            rows = np.arange(sims.shape[0])
            sims[rows, rows + start] = -np.inf
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
        found[start : start + _BLOCK] = np.take_along_axis(part, order, axis=1)
    return found


def knn_correct(vectors: np.ndarray, labels: np.ndarray, k: int = K_NEIGHBOURS) -> np.ndarray:
    """1.0 where a text's ``k`` nearest other texts vote its own label (votes weighted by
    similarity, so a tie goes to the closer class), else 0.0."""
    neighbours = _top(vectors, vectors, k, leave_out=True)
    weights = np.einsum("nd,nkd->nk", vectors, vectors[neighbours])
    classes = int(labels.max()) + 1
    votes = np.zeros((len(vectors), classes))
    np.add.at(votes, (np.arange(len(vectors))[:, None], labels[neighbours]), weights)
    return (votes.argmax(axis=1) == labels).astype(np.float64)


def retrieval(
    queries: np.ndarray,
    positives: np.ndarray,
    query_texts: Sequence[Hashable],
    positive_texts: Sequence[Hashable],
    others: tuple[np.ndarray, Sequence[Hashable]] | None = None,
) -> dict[str, np.ndarray]:
    """Per query, NDCG@10, MRR@10 and recall@10 of finding its positives among every distinct
    positive text and ``others`` (a corpus's other documents: vectors and texts); a query
    repeated with several positives has them all as relevant."""
    vectors, texts = positives, list(positive_texts)
    if others is not None:
        vectors, texts = np.concatenate([positives, others[0]]), [*texts, *others[1]]
    corpus_index: dict[Hashable, int] = {}
    first: list[int] = []
    for row, text in enumerate(texts):
        if text not in corpus_index:
            corpus_index[text] = len(first)
            first.append(row)
    corpus = vectors[first]
    relevant: dict[Hashable, set[int]] = {}
    for query, positive in zip(query_texts, positive_texts, strict=True):
        relevant.setdefault(query, set()).add(corpus_index[positive])
    found = _top(queries, corpus, TOP, leave_out=False)
    discounts = 1.0 / np.log2(np.arange(2, TOP + 2))
    ndcg, mrr, recall = (np.zeros(len(queries)) for _ in range(3))
    for i, query in enumerate(query_texts):
        wanted = relevant[query]
        hits = np.array([doc in wanted for doc in found[i]], dtype=np.float64)
        ideal = discounts[: min(len(wanted), TOP)].sum()
        ndcg[i] = (hits * discounts[: len(hits)]).sum() / ideal
        first_hit = np.flatnonzero(hits)
        mrr[i] = 1.0 / (first_hit[0] + 1) if len(first_hit) else 0.0
        recall[i] = hits.sum() / len(wanted)
    return {f"ndcg@{TOP}": ndcg, f"mrr@{TOP}": mrr, f"recall@{TOP}": recall}


def fidelity(vectors: np.ndarray, reference: np.ndarray) -> tuple[Metric, ...]:
    """How close an embedder stays to ``reference`` on the same texts: per-text cosine
    (``fidelity``), Spearman of the pairwise similarities (``sim_spearman``) and the share of
    each text's 10 nearest neighbours both find (``top10_overlap``)."""
    n = len(vectors)
    cosine = np.einsum("nd,nd->n", vectors, reference)
    sample = np.random.default_rng(0).permutation(n)[:_SIMILARITY_SAMPLE]
    upper = np.triu_indices(len(sample), k=1)
    ours, theirs = (v[sample] @ v[sample].T for v in (vectors, reference))
    sim_rho = spearman(ours[upper], theirs[upper]) if len(upper[0]) > 1 else 1.0
    mine, yours = (_top(v, v, TOP, leave_out=True) for v in (vectors, reference))
    overlap = np.array([len(set(a) & set(b)) for a, b in zip(mine, yours, strict=True)])
    return (
        Metric("fidelity", float(cosine.mean()), n),
        Metric("sim_spearman", sim_rho, n),
        Metric(f"top{TOP}_overlap", float(overlap.mean() / max(mine.shape[1], 1)), n),
    )


def fidelity_scores(vectors: np.ndarray, reference: np.ndarray) -> Scores:
    """Each text's cosine to the reference's embedding: the paired samples of ``fidelity``."""
    return Scores("fidelity", tuple(np.einsum("nd,nd->n", vectors, reference).tolist()))


def _keys(encoded: Encoded) -> list[Hashable]:
    """Each text's identity for retrieval: its token ids (equal texts, equal ids)."""
    return [tuple(ids) for ids in encoded.features["input_ids"]]


def evaluate_embedder(
    forward: Forward,
    encoded: Encoded,
    *,
    reference: Evaluation | None = None,
    batch_size: int = 32,
    progress: ProgressFactory = no_progress,
) -> Evaluation:
    """Embed the texts once and score what the data allows (see the module's docstring).

    The primary metric (the one gates and tables use) is the task metric where the data has
    scores, labels or pairs, else fidelity. Without a ``reference`` the model is its own, so an
    original scored on unlabelled text reads fidelity 1 and its compressed copies compare with
    that.
    """
    start = time.perf_counter()
    vectors = embed(forward, encoded, batch_size=batch_size, progress=progress)
    n = len(vectors)
    task: list[Metric] = []
    scores: Scores | None = None
    corpus = None
    if encoded.corpus is not None:
        documents = embed(
            forward, encoded.corpus, batch_size=batch_size, progress=progress, what="Corpus"
        )
        corpus = (documents, _keys(encoded.corpus))
    if encoded.pairs is not None:
        others = embed(
            forward, encoded.pairs, batch_size=batch_size, progress=progress, what="Pairs"
        )
        if encoded.targets is not None:
            cosine = np.einsum("nd,nd->n", vectors, others)
            task.append(Metric("spearman", spearman(cosine, encoded.targets), n))
            scores = Scores("spearman", tuple(cosine.tolist()), tuple(encoded.targets.tolist()))
        else:
            found = retrieval(vectors, others, _keys(encoded), _keys(encoded.pairs), corpus)
            task += [Metric(name, float(v.mean()), n) for name, v in found.items()]
            scores = Scores(f"ndcg@{TOP}", tuple(found[f"ndcg@{TOP}"].tolist()))
    elif encoded.labels is not None and len(np.unique(encoded.labels)) > 1 and n > 1:
        correct = knn_correct(vectors, encoded.labels)
        task.append(Metric("knn_accuracy", float(correct.mean()), n))
        scores = Scores("knn_accuracy", tuple(correct.tolist()))
    against = reference.embeddings if reference is not None else None
    if against is not None and against.shape != vectors.shape:
        against = None  # scored on other texts: there is nothing to pair
    close: tuple[Metric, ...] = ()
    if against is not None or not task:
        base = vectors if against is None else against
        close = fidelity(vectors, base)
        if not task:
            scores = fidelity_scores(vectors, base)
    return Evaluation(
        metrics=(*task, *close),
        n_samples=n,
        elapsed_s=time.perf_counter() - start,
        scores=scores,
        embeddings=vectors,
    )
