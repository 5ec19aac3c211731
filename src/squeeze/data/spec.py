"""Where examples come from: the dataset spec and which part of it each job reads.

Light on purpose (no numpy): the CLI builds specs at start-up. A single local file is split
into train/validation/test by content hash (``squeeze.data.examples``); these helpers say which part
a step trains on and which part it is scored on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from squeeze.core.config import choice_problem, literal
from squeeze.core.errors import ConfigError, DataError, Problem, did_you_mean
from squeeze.data.retrieval import is_retrieval_folder

SPLITS = ("train", "validation", "test")
FORMATS = ("csv", "tsv", "jsonl", "parquet")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}
_LOCAL_SUFFIXES = (*_EXTENSIONS, ".txt")
# Non-greedy source, so "a:b:test" splits at the last colon; brackets allow hub slices like
# "imdb:train[:10%]".
_SOURCE_SPLIT = re.compile(r"^(?P<source>.+?):(?P<split>[A-Za-z_][\w.\-]*(?:\[[^\]]*\])?)$")
_THRESHOLD = re.compile(r"^threshold:(?P<x>.+)$")


@dataclass(frozen=True)
class DataSpec:
    """Where the examples come from and how to read them; mirrors the CLI's data flags.

    Everything the spec alone can say is checked when it is made (a split a local file does not
    have, a format or label map squeeze does not know), so a typo is refused before any model
    loads; :func:`check_exists` adds the file system's word.
    """

    source: str
    split: str | None = None
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    label_map: str | None = None
    header: bool = True
    format: str | None = None
    max_samples: int | None = None
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 0

    def __post_init__(self) -> None:
        if not self.source:
            raise ConfigError(Problem("no dataset given; name a file or hub dataset with {data}"))
        ratios = tuple(float(r) for r in self.split_ratios)
        if len(ratios) != 3 or not all(math.isfinite(r) and r >= 0 for r in ratios):
            raise ConfigError(
                Problem(
                    "{split_ratios} needs three fractions >= 0 for train,validation,test, "
                    f"not {self.split_ratios}"
                )
            )
        if abs(sum(ratios) - 1.0) > 1e-6:
            raise ConfigError(
                Problem(f"{{split_ratios}} must sum to 1, not {sum(ratios):g} ({ratios})")
            )
        object.__setattr__(self, "split_ratios", ratios)
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError(
                Problem(f"{{max_samples}} must be at least 1, not {self.max_samples}")
            )
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(choice_problem("format", self.format, FORMATS))
        if self.label_map is not None:
            score_to_label(self.label_map)
        _check_split(self)


def _check_split(spec: DataSpec) -> None:
    """A split given twice must agree, and a local file has only squeeze's three (a BEIR
    folder's qrels files and a hub dataset's splits are theirs to say)."""
    source, suffix = parse_source(spec.source)
    if suffix is not None and spec.split is not None and suffix != spec.split:
        raise ConfigError(
            Problem(
                f"{{data}} {literal(repr(spec.source))} names split {literal(repr(suffix))} but "
                f"{{split}} says {literal(repr(spec.split))}; give one of them"
            )
        )
    split = spec.split or suffix
    if split is None or split in SPLITS or not is_local(spec):
        return
    if is_retrieval_folder(Path(source).expanduser()):
        return
    raise ConfigError(choice_problem("split", split, SPLITS))


def check_exists(spec: DataSpec | None) -> None:
    """Refuse a local file that is not there, naming the nearest file beside it: before any
    model loads, which takes seconds (a hub dataset is its reader's to find).

    Raises:
        DataError: no such file (or folder).
    """
    path = local_file(spec)
    if path is None or path.exists():
        return
    folder = path.parent
    if not folder.is_dir():
        raise DataError(f"no such file: {path} (no folder {folder})")
    hint = did_you_mean(path.name, (p.name for p in folder.iterdir()))
    raise DataError(f"no such file: {path}{hint}")


def parse_source(source: str) -> tuple[str, str | None]:
    """Split a ``source:split`` suffix off; a path that exists as given keeps any colons."""
    if Path(source).expanduser().exists():
        return source, None
    match = _SOURCE_SPLIT.match(source)
    if match is None:
        return source, None
    return match["source"], match["split"]


def is_local(spec: DataSpec) -> bool:
    """Whether ``spec`` names a local file (split by content hash) rather than a hub dataset."""
    return spec.format is not None or _looks_local(parse_source(spec.source)[0])


def local_file(spec: DataSpec | None) -> Path | None:
    """The file ``spec`` reads, for the output guard; None for a hub dataset or no data."""
    if spec is None or not is_local(spec):
        return None
    return Path(parse_source(spec.source)[0]).expanduser()


def training_part(spec: DataSpec) -> DataSpec:
    """What to train on: the split ``spec`` names, else the ``train`` part of a local file.

    A ``file.tsv:train`` suffix becomes the split field, so other parts can be derived from it.
    """
    source, suffix = parse_source(spec.source)
    spec = replace(spec, source=source, split=spec.split or suffix)
    if spec.split is None and is_local(spec):
        spec = replace(spec, split="train")
    return spec


def held_out_part(spec: DataSpec, split: str) -> DataSpec:
    """Another split of the same source, in full (``--max-samples`` limits training only)."""
    return replace(training_part(spec), split=split, max_samples=None)


def evaluation_part(spec: DataSpec) -> DataSpec:
    """Where held-out scores come from: a file's unseen ``test`` part, or a hub dataset's
    ``validation`` split (hub test splits are usually unlabelled)."""
    return held_out_part(spec, "test" if is_local(spec) else "validation")


def _looks_local(source: str) -> bool:
    path = Path(source).expanduser()
    return (
        path.is_file()
        or path.is_dir()
        or source.startswith(("/", ".", "~"))
        or path.suffix.lower() in _LOCAL_SUFFIXES
    )


def score_to_label(label_map: str) -> Callable[[float], str | None]:
    """Parse ``--label-map``; ``None`` from the mapper means the row has no label and is dropped."""
    if label_map == "sign":
        return lambda s: "positive" if s > 0 else "negative" if s < 0 else None
    match = _THRESHOLD.match(label_map)
    threshold = math.nan
    if match is not None:
        try:
            threshold = float(match["x"])
        except ValueError:
            threshold = math.nan
    if not math.isfinite(threshold):
        hint = did_you_mean(label_map, ("sign",)) if match is None else ""
        raise ConfigError(
            Problem(
                f"unknown {{label_map}} '{literal(label_map)}'{literal(hint)}; use 'sign' or "
                "'threshold:X' with a number X"
            )
        )
    return lambda s: "positive" if s >= threshold else "negative"
