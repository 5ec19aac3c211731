"""Retrieval data in the BEIR layout: a folder of queries, a corpus and relevance judgements.

``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``) and
``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``) are how BEIR, MTEB and NanoBEIR
ship retrieval sets. Each judged pair with a positive score becomes a query/positive example;
the whole corpus rides along, so a query must find its positives among every document, not only
among other queries' positives.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from squeeze.core.errors import DataError

QRELS = "qrels"
# squeeze's split names -> the qrels file BEIR names it by.
QRELS_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}


def is_retrieval_folder(path: Path) -> bool:
    """Whether ``path`` is a BEIR-style folder (queries, corpus and qrels)."""
    return (
        path.is_dir()
        and (path / "queries.jsonl").is_file()
        and (path / "corpus.jsonl").is_file()
        and (path / QRELS).is_dir()
    )


def _records(path: Path) -> dict[str, str]:
    """``_id`` -> text (a title, where there is one, before the text, as BEIR's models read it)."""
    found: dict[str, str] = {}
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = str(record["_id"])
            except (ValueError, KeyError, TypeError):
                raise DataError(
                    f"line {number} of {path} is not a JSON record with an _id; BEIR folders "
                    'hold one {"_id", "text"} object per line'
                ) from None
            title = str(record.get("title") or "").strip()
            text = str(record.get("text") or "").strip()
            found[key] = f"{title} {text}".strip() if title else text
    return found


def read_retrieval(folder: Path, split: str) -> tuple[list[tuple[str, str]], tuple[str, ...]]:
    """The (query, positive document) pairs judged in ``split`` and the whole corpus.

    Raises:
        DataError: no qrels file for the split, ids the queries or corpus lack, no positives.
    """
    qrels = folder / QRELS / QRELS_FILES.get(split, f"{split}.tsv")
    if not qrels.is_file():
        have = ", ".join(sorted(p.name for p in (folder / QRELS).glob("*.tsv"))) or "none"
        raise DataError(
            f"{folder.name} has no {QRELS}/{qrels.name} for split '{split}' (qrels files: "
            f"{have}); choose another split"
        )
    queries, corpus = _records(folder / "queries.jsonl"), _records(folder / "corpus.jsonl")
    pairs: list[tuple[str, str]] = []
    with qrels.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            query, doc = row.get("query-id"), row.get("corpus-id")
            if query not in queries or doc not in corpus:
                raise DataError(
                    f"{qrels.name} judges query '{query}' and document '{doc}', which "
                    f"{folder.name}'s queries.jsonl and corpus.jsonl do not both hold"
                )
            if float(row.get("score") or 0) > 0:
                pairs.append((queries[query], corpus[doc]))
    if not pairs:
        raise DataError(f"{qrels} judges no document relevant (score > 0)")
    return pairs, tuple(corpus.values())
