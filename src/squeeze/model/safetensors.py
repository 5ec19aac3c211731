"""Reading safetensors files without loading them: headers, parameters and non-zero counts.

Shapes and dtypes are in each file's header (8-byte little-endian length, then JSON); the
non-zero count is in the tensor bytes, streamed through numpy in chunks from a memory map so a
checkpoint larger than memory is counted too. Neither torch nor transformers is imported.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squeeze.core.errors import CheckpointError

SAFETENSORS_INDEX = "model.safetensors.index.json"
# safetensors itself refuses headers over 100 MB; a larger length means a damaged file.
_HEADER_LIMIT = 100 << 20
# Elements per numpy pass: 16M keeps the scratch buffer small and the passes few.
_CHUNK = 1 << 24

# safetensors dtype code -> (torch's name for it, bytes per element, how its non-zeros are
# counted: the numpy dtype to view the bytes as, and a mask of the bits that are not the sign).
# Half floats and fp8 are masked so that -0.0 counts as zero, as it does for
# torch.count_nonzero; numpy compares float32/float64 themselves (-0.0 == 0 already).
DTYPES: dict[str, tuple[str, int, str, int | None]] = {
    "BOOL": ("bool", 1, "uint8", None),
    "U8": ("uint8", 1, "uint8", None),
    "I8": ("int8", 1, "int8", None),
    "F8_E5M2": ("float8_e5m2", 1, "uint8", 0x7F),
    "F8_E4M3": ("float8_e4m3fn", 1, "uint8", 0x7F),
    "I16": ("int16", 2, "int16", None),
    "U16": ("uint16", 2, "uint16", None),
    "F16": ("float16", 2, "uint16", 0x7FFF),
    "BF16": ("bfloat16", 2, "uint16", 0x7FFF),
    "I32": ("int32", 4, "int32", None),
    "U32": ("uint32", 4, "uint32", None),
    "F32": ("float32", 4, "float32", None),
    "F64": ("float64", 8, "float64", None),
    "I64": ("int64", 8, "int64", None),
    "U64": ("uint64", 8, "uint64", None),
}
# Integer tensors in an unquantized checkpoint are buffers (BERT's position_ids), not
# parameters: model.parameters() never yields them.
_BUFFERDTYPES = frozenset({"BOOL", "I16", "U16", "I32", "U32", "I64", "U64"})
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
    itemsize = DTYPES.get(dtype, (dtype, None))[1]
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
            torch_dtype = DTYPES.get(tensor.dtype, (tensor.dtype.lower(), 1))[0]
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
    if quant_method is None and tensor.dtype in _BUFFERDTYPES:
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
    if tensor.dtype not in DTYPES or tensor.numel == 0:
        return tensor.numel
    *_, view_as, mask = DTYPES[tensor.dtype]
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

    if tensor.dtype not in DTYPES:
        return None
    values = np.frombuffer(
        mapped, dtype=DTYPES[tensor.dtype][2], count=tensor.numel, offset=tensor.start
    )
    return values.reshape(tensor.shape)
