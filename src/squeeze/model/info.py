"""Facts about a checkpoint read from its files alone: config.json, the safetensors headers and
squeeze's side files (``squeeze.json``): what ``squeeze info`` prints.

``squeeze info`` used to load the model to describe it, which costs seconds for MiniLM and needs
the weights to fit in memory. Everything it reports is already on disk (read by
``squeeze.model.safetensors``), so no model is built and neither torch nor transformers is
imported: any architecture works, with or without an ArchSpec. :func:`describe` gives the same
fact sheet for a model already loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from squeeze.core.errors import CheckpointError, UnsupportedError
from squeeze.core.types import Task
from squeeze.model.arch import ArchSpec, family_name, find_spec, is_decoder, shape_summary
from squeeze.model.checkpoint import TASK_BY_ARCH_SUFFIX, detect_task, needs_remote_code
from squeeze.model.loaded import LoadedModel
from squeeze.model.pooling import default_pooling, folder_files, read_pooling
from squeeze.model.safetensors import (
    DTYPES,
    count_nonzero,
    parameters,
    read_header,
    safetensors_files,
    untie,
)
from squeeze.model.shapes import LayerShape, read_shapes
from squeeze.model.sizes import size_stats, weight_bytes

# transformers' attribute_map aliases, which a config read as plain JSON lacks: the standard
# name, then the family fields it stands for, tried in order (GPT-2, DistilBERT, T5, GPT-Neo).
_ALIASES = {
    "hidden_size": ("n_embd", "dim", "d_model"),
    "num_hidden_layers": ("n_layer", "n_layers", "num_layers"),
    "num_attention_heads": ("n_head", "n_heads", "num_heads"),
    "max_position_embeddings": ("n_positions",),
}
# The class-name suffix a task's Auto class gives (its first in the table), for reporting a
# --task override.
_SUFFIX_OF_TASK = {task: suffix for suffix, task in reversed(TASK_BY_ARCH_SUFFIX)}


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a side file (config, tokenizer config), in squeeze's error words."""
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable {path.name} ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: unreadable {path.name} (not a JSON object)")
    return data


def config_namespace(config: dict[str, Any]) -> SimpleNamespace:
    """A config.json as an object with attributes, with transformers' aliases filled in, so
    squeeze.model.arch reads GPT-2's ``n_layer`` as ``num_hidden_layers`` as it does on a real
    config."""
    values = dict(config)
    for name, aliases in _ALIASES.items():
        if values.get(name) is None:
            found = next((values[a] for a in aliases if values.get(a) is not None), None)
            if found is not None:
                values[name] = found
    return SimpleNamespace(**values)


def per_layer(
    shapes: list[LayerShape] | None, spec: ArchSpec | None, config: Any
) -> dict[str, Any]:
    """Layer, head and FFN counts after structured pruning (the config may still state the
    original ones): the recorded shapes, one value where every layer agrees, else a per-layer
    list. Nothing for stock shapes: the config's counts stand (and packed 4-bit weights could
    not be measured anyway).

    ALBERT runs its one shared block ``num_hidden_layers`` times: that is its layer count."""
    if not shapes:
        return {}

    def one_or_all(values: list[int]) -> int | list[int]:
        return values[0] if len(set(values)) == 1 else values

    shared = spec is not None and spec.shared_layers
    return {
        "layers": config.num_hidden_layers if shared else len(shapes),
        "heads": one_or_all([s.heads for s in shapes]),
        "kv_heads": one_or_all([s.kv_heads for s in shapes]),
        "intermediate_size": one_or_all([s.ffn for s in shapes]),
    }


def fact_sheet(
    *,
    source: str,
    path: str | None,
    architecture: str | None,
    family: str,
    model_type: str | None,
    task: str,
    shapes: dict[str, Any],
    params_total: int,
    params_nonzero: int,
    bytes_on_disk: int,
    dtype: str,
    labels: list[str] | None,
    inputs: list[str],
    notes: list[str],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The one definition of what ``squeeze info`` reports, in order (the table follows it);
    ``extra`` facts come after the dtype. Shared with ``squeeze.model.checkpoint.describe``."""
    return {
        "source": source,
        "path": path,
        "architecture": architecture,
        "family": family,
        "model_type": model_type,
        "task": task,
        **shapes,
        "params_total": params_total,
        "params_nonzero": params_nonzero,
        "bytes_on_disk": bytes_on_disk,
        "dtype": dtype,
        **(extra or {}),
        "labels": labels,
        "inputs": inputs,
        "notes": notes,
    }


def architecture_for(config: dict[str, Any], task: Task) -> str | None:
    """The model class the task loads: the checkpoint's own where it has one for that task,
    else its class name with the task's suffix (a --task override of a BertModel is reported as
    BertForSequenceClassification, as transformers' Auto class would build)."""
    archs = [str(a) for a in config.get("architectures") or ()]
    if not archs:
        return None
    if task is Task.EMBEDDING:  # an embedder runs the bare encoder (AutoModel)
        task = Task.BASE
    own = [a for a in archs if detect_task(SimpleNamespace(architectures=[a])) is task]
    if own:
        return own[0]
    stem = next(
        (archs[0].removesuffix(s) for s, _ in TASK_BY_ARCH_SUFFIX if archs[0].endswith(s)), None
    )
    return stem + _SUFFIX_OF_TASK[task] if stem else archs[0]


def labels_for(config: dict[str, Any], task: Task) -> list[str] | None:
    """Class names in id order for a classifier (transformers' LABEL_i when none are saved)."""
    if task is not Task.SEQUENCE_CLASSIFICATION:
        return None
    id2label = config.get("id2label") or {str(i): f"LABEL_{i}" for i in range(2)}
    return [str(id2label.get(str(i), f"LABEL_{i}")) for i in range(len(id2label))]


def _tokenizer_config(folder: Path) -> dict[str, Any] | None:
    path = folder / "tokenizer_config.json"
    return read_json(path) if path.is_file() else None


def input_names(folder: Path, config: dict[str, Any]) -> list[str]:
    """What the model is fed: the tokenizer's saved ``model_input_names``, or transformers'
    defaults (token type ids only where the model has more than one token type).

    A model without token types (no ``type_vocab_size``: DistilBERT, Llama) never takes them.
    """
    tokenizer = _tokenizer_config(folder) or {}
    names = tokenizer.get("model_input_names")
    if isinstance(names, list) and "input_ids" in names:
        takes_types = "type_vocab_size" in config
        return [str(n) for n in names if n != "token_type_ids" or takes_types]
    if (config.get("type_vocab_size") or 0) > 1:
        return ["input_ids", "token_type_ids", "attention_mask"]
    return ["input_ids", "attention_mask"]


def tokenizer_notes(folder: Path) -> list[str]:
    """The notes loading would add about the tokenizer (padding with eos for decoders)."""
    tokenizer = _tokenizer_config(folder)
    special_path = folder / "special_tokens_map.json"
    special = read_json(special_path) if special_path.is_file() else {}
    if tokenizer is None and not special and not (folder / "tokenizer.json").is_file():
        return ["no tokenizer saved beside the weights: commands that encode text need one"]
    merged = {**special, **(tokenizer or {})}
    if merged.get("pad_token") is None and merged.get("eos_token") is not None:
        return ["tokenizer had no pad token; using its eos token for padding"]
    return []


def _quantization(config: dict[str, Any]) -> str | None:
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        return None
    method = str(quant.get("quant_method", "unknown"))
    if quant.get("load_in_4bit"):
        return f"{method} 4-bit {quant.get('bnb_4bit_quant_type', '')}".strip()
    if quant.get("load_in_8bit"):
        return f"{method} 8-bit"
    return method


def _joined(dtypes: Iterable[str]) -> str:
    return ",".join(sorted(set(dtypes)))


def _known_model_types() -> frozenset[str] | None:
    """The model types transformers knows, from the table it generates for its Auto classes,
    read without importing transformers (which imports torch); None where this version keeps
    no such table (then nothing is refused)."""
    import importlib.util
    import re

    found = importlib.util.find_spec("transformers")
    if found is None or found.origin is None:
        return None
    table = Path(found.origin).parent / "models" / "auto" / "auto_mappings.py"
    try:
        text = table.read_text()
    except OSError:
        return None
    start = text.find("CONFIG_MAPPING_NAMES = OrderedDict(")
    if start < 0:
        return None
    block = text[start : text.find("\n)\n", start)]
    return frozenset(re.findall(r'\(\s*"([^"]+)",\s*"\w+"\s*\)', block)) or None


def check_model_type(config: dict[str, Any], source: str, trust_remote_code: bool) -> None:
    """Refuse what loading would refuse, in its words: a model type transformers does not know,
    or one that needs the checkpoint's own code when that was not allowed (reading the files
    runs no code, but every other command would need it).

    Raises:
        UnsupportedError: unknown to transformers, or custom code without trust_remote_code.
    """
    model_type = config.get("model_type")
    known = _known_model_types()
    if known is None or model_type in known:
        return
    if "auto_map" in config:
        if trust_remote_code:
            return
        raise needs_remote_code(source)
    from importlib.metadata import version

    raise UnsupportedError(
        f"{source}: architecture not recognised by transformers {version('transformers')} "
        f"(model type {model_type!r})"
    )


def inspect_folder(
    folder: Path,
    *,
    source: str | None = None,
    task: Task | None = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Facts about a checkpoint folder with safetensors weights, from its files alone.

    ``task`` overrides the detected head for what is reported (class name and labels); the
    counts are of the weights as saved.
    """
    source = source if source is not None else str(folder)
    config = read_json(folder / "config.json")
    check_model_type(config, source, trust_remote_code)
    namespace = config_namespace(config)
    spec = find_spec(namespace)
    pooling = read_pooling(folder_files(folder))
    if task is None and pooling is not None:
        task = Task.EMBEDDING
    task = task or detect_task(namespace)
    if task is Task.EMBEDDING and pooling is None:  # --task embedding on a plain checkpoint
        pooling = default_pooling(is_decoder(namespace, spec))
    quant = config.get("quantization_config")
    quant_method = str(quant.get("quant_method")) if isinstance(quant, dict) else None
    headers = [read_header(path) for path in safetensors_files(folder)]
    params = untie(parameters(headers, quant_method), config)
    shapes = {**shape_summary(namespace, spec), **per_layer(read_shapes(folder), spec, namespace)}
    notes = tokenizer_notes(folder)
    if quant_method not in (None, "bitsandbytes", "torchao"):
        notes.append(f"{quant_method} tensors are counted as stored (packed), not as weights")
    return fact_sheet(
        source=source,
        path=str(folder),
        architecture=architecture_for(config, task),
        family=family_name(namespace, spec),
        model_type=config.get("model_type"),
        task=task.value,
        shapes=shapes,
        params_total=sum(p.tensor.numel for p in params),
        params_nonzero=count_nonzero(params),
        bytes_on_disk=weight_bytes(folder),
        dtype=_joined(p.dtype for p in params),
        labels=labels_for(config, task),
        inputs=input_names(folder, config),
        notes=notes,
        extra={
            "weights_dtype": _joined(
                DTYPES.get(p.tensor.dtype, (p.tensor.dtype,))[0] for p in params
            ),
            "quantization": _quantization(config),
            "format": "safetensors",
            "pooling": pooling.describe() if pooling and task is Task.EMBEDDING else None,
        },
    )


def describe(loaded: LoadedModel) -> dict[str, Any]:
    """Everything ``squeeze info`` reports, as plain JSON-ready values, from the loaded model
    (``squeeze info`` itself reads the same facts from the files: :func:`inspect_folder`)."""
    config = loaded.config
    stats = size_stats(loaded)
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in loaded.model.parameters()})
    labels = None
    if loaded.task is Task.SEQUENCE_CLASSIFICATION:
        labels = [config.id2label[i] for i in range(config.num_labels)]
    return fact_sheet(
        source=loaded.source,
        path=str(loaded.path) if loaded.path else None,
        architecture=type(loaded.model).__name__,
        family=loaded.family,
        model_type=config.model_type,
        task=loaded.task.value,
        shapes={
            **shape_summary(config, loaded.spec),
            **per_layer(loaded.shapes, loaded.spec, config),
        },
        params_total=stats.params_total,
        params_nonzero=stats.params_nonzero,
        bytes_on_disk=stats.bytes_on_disk,
        dtype=",".join(dtypes),
        labels=labels,
        inputs=list(loaded.input_names),
        notes=loaded.notes,
        extra={"pooling": loaded.pooling.describe() if loaded.pooling else None},
    )
