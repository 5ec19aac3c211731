"""A model loaded for work: module, tokenizer and config with its family's spec.

It sits in the model layer, not in core, because what it answers (position table, family,
direction) is read from the architecture spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from squeeze.core.types import Task
from squeeze.model.arch import ArchSpec, family_name, is_decoder, max_tokens
from squeeze.model.pooling import Pooling


@dataclass
class LoadedModel:
    """A model ready to run, with everything needed to save it again unchanged.

    ``input_names`` are the tokenizer outputs the model's forward accepts (DistilBERT takes no
    ``token_type_ids``), so data encoding never has to guess per family.
    """

    model: Any
    tokenizer: Any
    config: Any
    task: Task
    source: str
    # Where the family keeps its structure; None for families only structure-cutting steps
    # would need one for (every other step works from the config alone).
    spec: ArchSpec | None
    input_names: tuple[str, ...]
    path: Path | None = None
    notes: list[str] = field(default_factory=list)
    # Per-layer shapes after structured pruning (``squeeze.json``); None for stock shapes.
    shapes: list[Any] | None = None
    # How an embedder pools its token states (Task.EMBEDDING only).
    pooling: Pooling | None = None

    @property
    def max_tokens(self) -> int | None:
        """The longest input the model takes: its position table (None: no table), or an
        embedder's ``max_seq_length`` where that is shorter (it was trained to that length)."""
        return cut_to(max_tokens(self.config, self.spec), self.pooling)

    @property
    def family(self) -> str:
        """The family shown to users: the spec's name, or the config's model_type."""
        return family_name(self.config, self.spec)

    @property
    def decoder(self) -> bool:
        """Whether the model reads left to right (no KV cache in exports, last-token heads)."""
        return is_decoder(self.config, self.spec)

    @property
    def label2id(self) -> dict[str, int] | None:
        """Label names to class ids for classifiers; None for other heads (their data has no
        labels to map)."""
        if self.task is Task.SEQUENCE_CLASSIFICATION:
            return dict(self.config.label2id)
        return None


def cut_to(limit: int | None, pooling: Pooling | None) -> int | None:
    """A position limit cut to an embedder's ``max_seq_length``."""
    if pooling is None or pooling.max_seq_length is None:
        return limit
    return pooling.max_seq_length if limit is None else min(limit, pooling.max_seq_length)
