"""Facts about a checkpoint read from its files alone: config.json, the safetensors headers and
squeeze's side files (``squeeze.json``, an export's ``manifest.json``).

``squeeze info`` used to load the model to describe it, which costs seconds for MiniLM and needs
the weights to fit in memory. Everything it reports is already on disk: shapes and dtypes in
each safetensors header (8-byte little-endian length, then JSON), widths in config.json, and the
non-zero count in the tensor bytes, which are streamed through numpy in chunks from a memory map
so a checkpoint larger than memory is counted too. No model is built and neither torch nor
transformers is imported, so any architecture works, with or without an ArchSpec.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from squeeze.core.errors import CheckpointError, Problem, UnsupportedError
from squeeze.core.types import Task
from squeeze.model.arch import family_name, find_spec, shape_summary
from squeeze.model.checkpoint import detect_task, resolve_local
from squeeze.model.shapes import LayerShape, read_shapes
from squeeze.model.sizes import weight_bytes

SAFETENSORS_INDEX = "model.safetensors.index.json"
# safetensors itself refuses headers over 100 MB; a larger length means a damaged file.
_HEADER_LIMIT = 100 << 20
# Elements per numpy pass: 16M keeps the scratch buffer small and the passes few.
_CHUNK = 1 << 24

# safetensors dtype code -> (torch's name for it, bytes per element).
_DTYPES: dict[str, tuple[str, int]] = {
    "BOOL": ("bool", 1),
    "U8": ("uint8", 1),
    "I8": ("int8", 1),
    "F8_E5M2": ("float8_e5m2", 1),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "I16": ("int16", 2),
    "U16": ("uint16", 2),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "I32": ("int32", 4),
    "U32": ("uint32", 4),
    "F32": ("float32", 4),
    "F64": ("float64", 8),
    "I64": ("int64", 8),
    "U64": ("uint64", 8),
}
# How each dtype's non-zeros are counted: (numpy dtype to view the bytes as, mask of the bits
# that are not the sign). Half floats and fp8 are masked so that -0.0 counts as zero, as it does
# for torch.count_nonzero; numpy compares float32/float64 themselves (-0.0 == 0 already).
_COUNTED_AS: dict[str, tuple[str, int | None]] = {
    "BOOL": ("uint8", None),
    "U8": ("uint8", None),
    "I8": ("int8", None),
    "F8_E5M2": ("uint8", 0x7F),
    "F8_E4M3": ("uint8", 0x7F),
    "I16": ("int16", None),
    "U16": ("uint16", None),
    "F16": ("uint16", 0x7FFF),
    "BF16": ("uint16", 0x7FFF),
    "I32": ("int32", None),
    "U32": ("uint32", None),
    "F32": ("float32", None),
    "F64": ("float64", None),
    "I64": ("int64", None),
    "U64": ("uint64", None),
}
# Integer tensors in an unquantized checkpoint are buffers (BERT's position_ids), not
# parameters: model.parameters() never yields them.
_BUFFER_DTYPES = frozenset({"BOOL", "I16", "U16", "I32", "U32", "I64", "U64"})
# bitsandbytes stores each quantized weight's state beside it; the model has one parameter.
_BNB_STATE_SUFFIXES = (
    ".SCB", ".weight_format", ".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map",
)  # fmt: skip
# Output embeddings transformers ties to the input ones when tie_word_embeddings holds: older
# writers stored both copies, and the loaded model has one parameter.
_OUTPUT_EMBEDDINGS = (
    "lm_head.weight", "cls.predictions.decoder.weight", "lm_head.decoder.weight",
    "vocab_projector.weight", "generator_lm_head.weight", "embed_out.weight",
)  # fmt: skip
# transformers' attribute_map aliases, which a config read as plain JSON lacks: the standard
# name, then the family fields it stands for, tried in order (GPT-2, DistilBERT, T5, GPT-Neo).
_ALIASES = {
    "hidden_size": ("n_embd", "dim", "d_model"),
    "num_hidden_layers": ("n_layer", "n_layers", "num_layers"),
    "num_attention_heads": ("n_head", "n_heads", "num_heads"),
    "max_position_embeddings": ("n_positions",),
}
# The class-name suffix a task's Auto class gives, for reporting a --task override.
_SUFFIX_OF_TASK = {
    Task.SEQUENCE_CLASSIFICATION: "ForSequenceClassification",
    Task.CAUSAL_LM: "ForCausalLM",
    Task.MASKED_LM: "ForMaskedLM",
    Task.BASE: "Model",
}
_HEAD_SUFFIXES = (
    "ForSequenceClassification", "ForCausalLM", "LMHeadModel", "ForMaskedLM", "Model",
)  # fmt: skip


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as its safetensors header states it; ``start`` and ``end`` are byte offsets
    from the start of the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Header:
    """A safetensors file's tensors and its free-form ``__metadata__``."""

    path: Path
    tensors: tuple[TensorEntry, ...]
    metadata: dict[str, str]


@dataclass(frozen=True)
class Parameter:
    """A model parameter as stored: the tensor holding its values (for torchao, the quantized
    data), the dtype the model reports, and a zero point to count non-zeros against."""

    tensor: TensorEntry
    file: Path
    dtype: str
    zero_point: TensorEntry | None = None


def _damaged(path: Path, detail: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: weights are corrupt or truncated ({detail}); re-save or re-download the "
        "checkpoint"
    )


def read_header(path: Path) -> Header:
    """Parse and check a safetensors header without reading any tensor data.

    Raises:
        CheckpointError: the file is shorter than its header says, the header is not JSON, or
            a tensor's byte range does not fit its shape or the file.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise _damaged(path, f"{size} bytes, shorter than the 8-byte header length")
        length = int.from_bytes(prefix, "little")
        if length > min(size - 8, _HEADER_LIMIT):
            raise _damaged(path, f"header of {length} bytes in a file of {size}")
        try:
            raw = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _damaged(path, f"header is not valid JSON: {e}") from e
    if not isinstance(raw, dict):
        raise _damaged(path, "header is not a JSON object")
    metadata = raw.pop("__metadata__", None) or {}
    base = 8 + length
    tensors = tuple(_entry(path, name, value, base) for name, value in raw.items())
    end = max((t.end for t in tensors), default=base)
    if end > size:
        raise _damaged(path, f"tensors need {end} bytes, the file has {size}")
    return Header(path=path, tensors=tensors, metadata=metadata)


def _entry(path: Path, name: str, value: Any, base: int) -> TensorEntry:
    try:
        dtype = str(value["dtype"])
        shape = tuple(int(d) for d in value["shape"])
        start, end = (int(o) for o in value["data_offsets"])
    except (KeyError, TypeError, ValueError) as e:
        raise _damaged(path, f"tensor {name} has no valid dtype, shape and offsets") from e
    entry = TensorEntry(name, dtype, shape, base + start, base + end)
    itemsize = _DTYPES.get(dtype, (dtype, None))[1]
    if itemsize is not None and end - start != entry.numel * itemsize:
        raise _damaged(path, f"tensor {name} holds {end - start} bytes, its shape needs more")
    return entry


def safetensors_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint: the shards its index names, else every safetensors.

    Raises:
        CheckpointError: the index is unreadable or names a shard that is not there.
    """
    index = folder / SAFETENSORS_INDEX
    if not index.is_file():
        return sorted(folder.glob("*.safetensors"))
    try:
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{index} is not a valid safetensors index ({e})") from e
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{folder} lacks {', '.join(missing)} named by {SAFETENSORS_INDEX}; the checkpoint "
            "is incomplete: download or copy it again"
        )
    return [folder / name for name in names]


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


def _quantized_components(metadata: dict[str, str]) -> dict[str, tuple[list[str], str]]:
    """torchao's flattened tensor subclasses: each stored tensor name -> (the component names
    of its parameter, the dtype the parameter reports). Plain tensors are left out.

    torchao stores parameter ``m.weight`` as tensors ``m._weight_qdata``, ``m._weight_scale``
    and so on, and describes it in ``__metadata__["m.weight"]``."""
    found: dict[str, tuple[list[str], str]] = {}
    for name, text in metadata.items():
        try:
            record = json.loads(text)
        except (TypeError, json.JSONDecodeError):
            continue
        if not isinstance(record, dict) or record.get("_type") in (None, "Tensor"):
            continue
        parts = list(record.get("_tensor_data_names") or ())
        dtype = ((record.get("_data") or {}).get("dtype") or {}).get("_data", "")
        module, _, param = name.rpartition(".")
        prefix = f"{module}._{param}_" if module else f"_{param}_"
        for part in parts:
            found[prefix + part] = (parts, str(dtype))
    return found


def parameters(headers: Iterable[Header], quant_method: str | None) -> list[Parameter]:
    """The stored tensors that are model parameters, once each.

    Skipped: integer buffers (unquantized), bitsandbytes' per-weight state, torchao's scales
    and zero points (its quantized data stands for the parameter), GPT-2's stored causal masks.
    """
    params: list[Parameter] = []
    for header in headers:
        by_name = {t.name: t for t in header.tensors}
        components = _quantized_components(header.metadata) if quant_method == "torchao" else {}
        for tensor in header.tensors:
            torch_dtype = _DTYPES.get(tensor.dtype, (tensor.dtype.lower(), 1))[0]
            if tensor.name in components:
                parts, logical = components[tensor.name]
                data = "qdata" if "qdata" in parts else parts[0]
                if not tensor.name.endswith(f"_{data}"):
                    continue
                zero = by_name.get(tensor.name.removesuffix(data) + "zero_point")
                params.append(Parameter(tensor, header.path, logical or torch_dtype, zero))
                continue
            if _is_buffer(tensor, quant_method):
                continue
            params.append(Parameter(tensor, header.path, torch_dtype))
    return params


def _is_buffer(tensor: TensorEntry, quant_method: str | None) -> bool:
    if quant_method == "bitsandbytes" and (
        tensor.name.endswith(_BNB_STATE_SUFFIXES) or ".quant_state." in tensor.name
    ):
        return True
    if quant_method is None and tensor.dtype in _BUFFER_DTYPES:
        return True
    mask = tensor.name.endswith((".attn.bias", ".attn.masked_bias")) and len(tensor.shape) == 4
    return mask or tensor.name.endswith(".inv_freq")


def untie(params: list[Parameter], config: dict[str, Any]) -> list[Parameter]:
    """Drop a stored output embedding that transformers would tie to the input embedding."""
    if config.get("tie_word_embeddings", True) is False:
        return params
    shapes = {p.tensor.name: p.tensor.shape for p in params}
    tied = {
        name
        for name in _OUTPUT_EMBEDDINGS
        if name in shapes
        and any(
            other != name and shape == shapes[name] and ("embed" in other or "wte" in other)
            for other, shape in shapes.items()
        )
    }
    return [p for p in params if p.tensor.name not in tied]


def count_nonzero(params: list[Parameter]) -> int:
    """Non-zero values of the parameters, streamed from a memory map of each file in chunks
    (torchao data is counted against its zero point, i.e. as dequantized)."""
    import mmap

    total = 0
    for file in sorted({p.file for p in params}):
        with file.open("rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                continue
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                if hasattr(mapped, "madvise"):
                    mapped.madvise(mmap.MADV_SEQUENTIAL)
                total += sum(_parameter_nonzero(mapped, p) for p in params if p.file == file)
    return total


def _parameter_nonzero(mapped: Any, param: Parameter) -> int:
    """One parameter's non-zeros. The numpy views die with this call, so the map can close."""
    import numpy as np

    tensor = param.tensor
    if tensor.dtype not in _COUNTED_AS or tensor.numel == 0:
        return tensor.numel
    view_as, mask = _COUNTED_AS[tensor.dtype]
    values = np.frombuffer(mapped, dtype=view_as, count=tensor.numel, offset=tensor.start)
    if param.zero_point is not None:
        zero = _array(mapped, param.zero_point)
        # Symmetric quantization (zero points all 0) needs no comparison; per-row points do.
        if zero is not None and zero.size and zero.any() and len(tensor.shape) >= 1:
            rows = values.reshape(tensor.shape[0], -1)
            if zero.shape and zero.shape[0] in (1, rows.shape[0]):
                return int(np.count_nonzero(rows != zero.reshape(zero.shape[0], -1)))
    scratch = np.empty(min(values.size, _CHUNK), dtype=view_as) if mask is not None else None
    count = 0
    for start in range(0, values.size, _CHUNK):
        chunk = values[start : start + _CHUNK]
        if scratch is not None:
            chunk = np.bitwise_and(chunk, mask, out=scratch[: chunk.size])
        count += int(np.count_nonzero(chunk))
    return count


def _array(mapped: Any, tensor: TensorEntry) -> Any:
    import numpy as np

    if tensor.dtype not in _COUNTED_AS:
        return None
    values = np.frombuffer(
        mapped, dtype=_COUNTED_AS[tensor.dtype][0], count=tensor.numel, offset=tensor.start
    )
    return values.reshape(tensor.shape)


def per_layer(shapes: list[LayerShape], *, layers: int | None = None) -> dict[str, Any]:
    """Layer, head and FFN counts of recorded or measured shapes: one value where every layer
    agrees, else a per-layer list (after structured pruning the config may state neither).

    ``layers`` is the layer count where it is not the block count (ALBERT runs one block
    ``num_hidden_layers`` times)."""

    def one_or_all(values: list[int]) -> int | list[int]:
        return values[0] if len(set(values)) == 1 else values

    return {
        "layers": len(shapes) if layers is None else layers,
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
    own = [a for a in archs if detect_task(SimpleNamespace(architectures=[a])) is task]
    if own:
        return own[0]
    stem = next((archs[0].removesuffix(s) for s in _HEAD_SUFFIXES if archs[0].endswith(s)), None)
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
        raise UnsupportedError(
            [
                Problem(
                    f"{source} needs custom code from its repository; pass "
                    "{trust_remote_code} if you trust it"
                )
            ]
        )
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
    task = task or detect_task(namespace)
    quant = config.get("quantization_config")
    quant_method = str(quant.get("quant_method")) if isinstance(quant, dict) else None
    headers = [read_header(path) for path in safetensors_files(folder)]
    params = untie(parameters(headers, quant_method), config)
    shapes = shape_summary(namespace, spec)
    recorded = read_shapes(folder)
    if recorded:
        shared = spec is not None and spec.shared_layers
        shapes.update(per_layer(recorded, layers=namespace.num_hidden_layers if shared else None))
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
                _DTYPES.get(p.tensor.dtype, (p.tensor.dtype,))[0] for p in params
            ),
            "quantization": _quantization(config),
            "format": "safetensors",
        },
    )


def inspect_export(folder: Path, *, source: str | None = None) -> dict[str, Any]:
    """Facts about a ``squeeze export`` folder: its manifest, the config beside the graph, and
    the ONNX initializers (read with onnx, no runtime session)."""
    from squeeze.artifact.read import MANIFEST_FILE
    from squeeze.artifact.sizes import export_size_stats

    manifest = read_json(folder / MANIFEST_FILE)
    config_path = folder / "config.json"
    config = read_json(config_path) if config_path.is_file() else {}
    namespace = config_namespace(config)
    spec = find_spec(namespace)
    try:
        stats = export_size_stats(folder)
    except Exception as e:  # onnx raises its own DecodeError/ValidationError types
        raise CheckpointError(
            f"{folder}: the ONNX graph is corrupt or truncated ({e}); export it again"
        ) from e
    return fact_sheet(
        source=source if source is not None else str(folder),
        path=str(folder),
        architecture=manifest.get("architecture"),
        family=manifest.get("family") or family_name(namespace, spec),
        model_type=manifest.get("model_type") or config.get("model_type"),
        task=str(manifest.get("task", Task.BASE.value)),
        shapes=shape_summary(namespace, spec) if config else {},
        params_total=stats.params_total,
        params_nonzero=stats.params_nonzero,
        bytes_on_disk=stats.bytes_on_disk,
        dtype=str(manifest.get("dtype", "float32")),
        labels=manifest.get("labels"),
        inputs=[str(i["name"]) for i in manifest.get("inputs", ())],
        notes=[],
        extra={
            "quantization": _export_quantization(manifest),
            "format": manifest.get("format", "onnx"),
        },
    )


def _export_quantization(manifest: dict[str, Any]) -> str | None:
    quant = manifest.get("quantization")
    if not isinstance(quant, dict):
        return None
    return " ".join(str(quant[k]) for k in ("backend", "mode") if quant.get(k))


def inspect_source(
    source: str | os.PathLike[str], *, task: Task | None = None, trust_remote_code: bool = False
) -> dict[str, Any] | None:
    """Facts about a checkpoint or export folder from its files, or None where only loading
    can tell (a hub id, or a folder with pickled weights only).

    Raises:
        CheckpointError: missing, not a checkpoint, or damaged, worded as loading words it.
        UnsupportedError: a model type transformers does not know (see check_model_type).
    """
    from squeeze.artifact.read import export_folder

    text = str(source)
    exported = export_folder(text)
    if exported is not None:
        return inspect_export(exported, source=text)
    folder = resolve_local(text)
    if folder is None or not safetensors_files(folder):
        return None
    return inspect_folder(folder, source=text, task=task, trust_remote_code=trust_remote_code)
