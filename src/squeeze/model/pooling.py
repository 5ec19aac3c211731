"""Sentence embeddings: how an embedder turns token states into one vector per text.

A sentence-transformers folder is a Hugging Face checkpoint plus a few small JSON files:
``modules.json`` lists the pipeline (Transformer, Pooling, optionally Normalize),
``1_Pooling/config.json`` names the pooling mode, ``sentence_bert_config.json`` the maximum
sequence length and ``config_sentence_transformers.json`` the prompts. squeeze reads and writes
them itself (no sentence-transformers dependency), so a compressed embedder still loads with
``SentenceTransformer(path)``, and pools exactly as the original did.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from squeeze.core.errors import CheckpointError, UnsupportedError, did_you_mean

MODES = ("mean", "cls", "max", "lasttoken")
MODULES_FILE = "modules.json"
POOLING_FOLDER = "1_Pooling"
ST_CONFIG = "sentence_bert_config.json"
ST_MODEL_CONFIG = "config_sentence_transformers.json"
# Every file the pooling writes, so outputs and size counts know them.
SENTENCE_FILES = (MODULES_FILE, f"{POOLING_FOLDER}/config.json", ST_CONFIG, ST_MODEL_CONFIG)

_ST = "sentence_transformers.models."
# The pooling config's flag for each mode squeeze runs (sentence-transformers' names).
_MODE_KEYS = {
    "mean": "pooling_mode_mean_tokens",
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}
_OTHER_KEYS = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens")


@dataclass(frozen=True)
class Pooling:
    """What turns token states into a sentence embedding, and the limits the embedder keeps.

    Attributes:
        mode: ``mean`` (over real tokens), ``cls`` (the first token), ``max`` or ``lasttoken``
            (the last real token: decoder embedders).
        normalize: L2-normalise the pooled vector (a Normalize module follows the pooling).
        max_seq_length: The longest input the embedder was trained on (texts are cut there).
        prompts: Named prompts prepended to texts (``config_sentence_transformers.json``).
        default_prompt_name: The prompt every text gets when none is chosen.
        include_prompt: Whether the prompt's tokens are pooled too (sentence-transformers'
            default); only recorded.
        version: The ``__version__`` block of the original files, written back unchanged.
    """

    mode: str = "mean"
    normalize: bool = True
    max_seq_length: int | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    include_prompt: bool = True
    version: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            hint = did_you_mean(self.mode, MODES)
            listing = ", ".join(MODES)
            raise UnsupportedError(f"unknown pooling '{self.mode}'{hint}; choose {listing}")

    @property
    def prompt(self) -> str:
        """The text prepended to every input ('' without a default prompt)."""
        if self.default_prompt_name is None:
            return ""
        return self.prompts.get(self.default_prompt_name, "")

    def describe(self) -> str:
        """One line for ``squeeze info`` and reports: ``mean pooling, normalised, 256 tokens``."""
        parts = [f"{self.mode} pooling", "normalised" if self.normalize else "not normalised"]
        if self.max_seq_length is not None:
            parts.append(f"max {self.max_seq_length} tokens")
        if self.prompt:
            parts.append(f"prompt {self.default_prompt_name!r}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable {what} ({e}); re-save the model") from e


def has_sentence_files(folder: Path) -> bool:
    """Whether ``folder`` is a sentence-transformers folder (what makes a checkpoint an
    embedder without ``--task embedding``)."""
    return (folder / MODULES_FILE).is_file() or (folder / ST_CONFIG).is_file()


def read_pooling(fetch: Callable[[str], Path | None]) -> Pooling | None:
    """The pooling a sentence-transformers model declares, or None when it has no
    ``modules.json`` or ``sentence_bert_config.json``.

    ``fetch`` maps a file name inside the model (``1_Pooling/config.json``) to a local path, or
    None when the model lacks it: a folder's own files, or hub files for a hub id.

    Raises:
        UnsupportedError: modules squeeze cannot run (Dense projections, several poolings).
        CheckpointError: unreadable files.
    """
    modules_path, st_path = fetch(MODULES_FILE), fetch(ST_CONFIG)
    if modules_path is None and st_path is None:
        return None
    modules = _read_json(modules_path, MODULES_FILE) if modules_path else []
    kinds = [str(m.get("type", "")).removeprefix(_ST) for m in modules]
    unknown = [k for k in kinds if k not in ("Transformer", "Pooling", "Normalize")]
    if unknown:
        raise UnsupportedError(
            f"{MODULES_FILE} holds modules squeeze cannot run yet ({', '.join(unknown)}); "
            "squeeze supports Transformer, Pooling and Normalize"
        )
    pooling_dir = next(
        (m.get("path") for m in modules if str(m.get("type", "")).endswith("Pooling")),
        POOLING_FOLDER,
    )
    pooling_path = fetch(f"{pooling_dir}/config.json")
    mode = "mean"  # sentence-transformers' default when a folder has no pooling config
    include_prompt = True
    if pooling_path is not None:
        config = _read_json(pooling_path, "pooling config")
        chosen = [m for m, key in _MODE_KEYS.items() if config.get(key)]
        other = [key for key in _OTHER_KEYS if config.get(key)]
        if len(chosen) != 1 or other:
            raise UnsupportedError(
                f"{pooling_dir}/config.json asks for {', '.join(chosen + other) or 'no'} "
                f"pooling; squeeze runs exactly one of {', '.join(MODES)}"
            )
        mode = chosen[0]
        include_prompt = bool(config.get("include_prompt", True))
    st_config = _read_json(st_path, ST_CONFIG) if st_path else {}
    model_path = fetch(ST_MODEL_CONFIG)
    model_config = _read_json(model_path, ST_MODEL_CONFIG) if model_path else {}
    length = st_config.get("max_seq_length")
    if not include_prompt and model_config.get("default_prompt_name"):
        raise UnsupportedError(
            f"{pooling_dir}/config.json leaves the default prompt's tokens out of the pooling "
            "(include_prompt false); squeeze pools every token of the input"
        )
    return Pooling(
        mode=mode,
        normalize="Normalize" in kinds,
        max_seq_length=int(length) if length else None,
        prompts=dict(model_config.get("prompts") or {}),
        default_prompt_name=model_config.get("default_prompt_name"),
        include_prompt=include_prompt,
        version=dict(model_config.get("__version__") or {}),
    )


def folder_files(folder: Path) -> Callable[[str], Path | None]:
    """:func:`read_pooling`'s ``fetch`` for a local folder."""

    def fetch(name: str) -> Path | None:
        path = folder / name
        return path if path.is_file() else None

    return fetch


def write_sentence_files(folder: Path, pooling: Pooling, dimension: int) -> None:
    """Write the sentence-transformers files beside a checkpoint, so ``SentenceTransformer``
    loads it and pools as the original did."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": f"{_ST}Transformer"},
        {"idx": 1, "name": "1", "path": POOLING_FOLDER, "type": f"{_ST}Pooling"},
    ]
    if pooling.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": f"{_ST}Normalize"})
    (folder / POOLING_FOLDER).mkdir(exist_ok=True)
    config = {"word_embedding_dimension": dimension}
    config |= {key: mode == pooling.mode for mode, key in _MODE_KEYS.items()}
    config |= dict.fromkeys(_OTHER_KEYS, False)
    config["include_prompt"] = pooling.include_prompt
    files = {
        MODULES_FILE: modules,
        f"{POOLING_FOLDER}/config.json": config,
        ST_CONFIG: {"max_seq_length": pooling.max_seq_length, "do_lower_case": False},
        ST_MODEL_CONFIG: {
            **({"__version__": pooling.version} if pooling.version else {}),
            "prompts": pooling.prompts,
            "default_prompt_name": pooling.default_prompt_name,
            "similarity_fn_name": "cosine",
        },
    }
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content, indent=2) + "\n")


def default_pooling(decoder: bool, mode: str | None = None, normalize: bool = True) -> Pooling:
    """The pooling ``--task embedding`` gives a model without sentence-transformers files:
    mean over tokens for encoders, the last token for decoders (which read left to right)."""
    return Pooling(mode=mode or ("lasttoken" if decoder else "mean"), normalize=normalize)


def pool(hidden: Any, attention_mask: Any, pooling: Pooling) -> Any:
    """One embedding per row of ``hidden`` [batch, seq, dim], from its real tokens only
    (``attention_mask`` 1); right padding is assumed, as squeeze's batches have."""
    import torch

    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    if pooling.mode == "mean":
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    elif pooling.mode == "cls":
        pooled = hidden[:, 0]
    elif pooling.mode == "max":
        pooled = hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    else:
        last = attention_mask.sum(dim=1).long().clamp(min=1) - 1
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if pooling.normalize:
        pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=-1)
    return pooled
