"""Export a checkpoint to ONNX that provably computes what the PyTorch model computes.

Steps: trace with ``torch.onnx.export(dynamo=False)`` from a *padded* example (an unpadded trace
can bake in "no padding" and ignore ``attention_mask``), write the weights beside the graph, run
``onnx.checker``, optionally fuse attention/LayerNorm/GELU with onnxruntime's transformer
optimizer, then validate the file that will be deployed against PyTorch on real tokenized
batches of other sizes, padding included. A file that disagrees beyond the tolerance is never
written to the output folder.

Memory stays near one copy of the weights at any size: the graph is traced without them and
they are written from the model's own tensors (into ``model.onnx.data`` from
``EXTERNAL_DATA_MIN_BYTES`` up, ONNX's external data: protobuf cannot hold 2 GB), the optimizer
fuses a graph whose weights stay on disk, and callers that are done with PyTorch
(``release_weights``) drop its weights once its reference logits are taken.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from squeeze.artifact.read import MANIFEST_FILE, MODEL_FILE
from squeeze.core import __version__
from squeeze.core.errors import Problem, ValidationError
from squeeze.core.types import Task
from squeeze.methods.export.head_counts import state_head_counts
from squeeze.methods.export.method import ExportConfig
from squeeze.model.arch import head_size
from squeeze.model.loaded import LoadedModel
from squeeze.model.runtime import export_session, ort_forward, torch_forward
from squeeze.model.sizes import onnx_files, onnx_tensors

# Absolute logit tolerance by parameter dtype; half precision rounds at ~1e-3 relative.
DEFAULT_TOLERANCE = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 5e-2}

# From this many bytes of weights the export keeps them in one external data file beside the
# graph (model.onnx.data), not inline: protobuf stops at 2 GB, and onnxruntime parsing an inline
# graph holds its weights about three times over (a 110M Llama's took 3.6x its fp32 bytes to
# open; with external data, about one copy). Smaller exports stay one self-contained file.
EXTERNAL_DATA_MIN_BYTES = 256 << 20
# Tensor offsets in the data file are multiples of this (onnxruntime can map aligned data).
DATA_ALIGNMENT = 1 << 16
# Tensors this small stay inline in the graph even where the weights are external.
_INLINE_MAX_BYTES = 1024
_COPY_CHUNK = 1 << 24

# Real sentences of different lengths, so validation batches are padded like production ones.
VALIDATION_TEXTS = (
    "A quiet, patient film that earns every one of its small triumphs.",
    "Terrible.",
    "It starts slowly, but by the second act the story grips you and does not let go until the "
    "very last scene, which is as moving as anything this year.",
    "The plot is thin and the jokes are thinner.",
    "Not bad at all!",
)


class _LogitsOnly:
    """Builds a module whose forward takes inputs positionally and returns only logits.

    The tracer needs positional tensors, and causal LMs must not return a KV cache.
    """

    @staticmethod
    def wrap(loaded: LoadedModel) -> Any:
        import torch

        names = loaded.input_names
        extra = {"use_cache": False} if loaded.decoder else {}

        class LogitsOnly(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = loaded.model

            def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
                return self.model(**dict(zip(names, tensors, strict=True)), **extra).logits

        return LogitsOnly().eval()


def _tokenize(loaded: LoadedModel, texts: list[str], config: ExportConfig) -> dict[str, np.ndarray]:
    # Static shapes pad every batch to the fixed length; dynamic ones to their longest text.
    padding: bool | str = True if config.dynamic else "max_length"
    encoded = loaded.tokenizer(
        texts, padding=padding, truncation=True, max_length=config.seq_len, return_tensors="np"
    )
    return {name: encoded[name].astype(np.int64) for name in loaded.input_names}


def validation_batches(
    loaded: LoadedModel, config: ExportConfig
) -> dict[str, dict[str, np.ndarray]]:
    """Batches the export must reproduce: padded, of several sizes, from real sentences."""
    vocab = loaded.tokenizer.convert_ids_to_tokens(list(range(len(loaded.tokenizer))))
    rng = np.random.default_rng(0)
    # Sentences of the model's own vocabulary too: tiny test tokenizers know no English words.
    own = [" ".join(rng.choice(vocab, size=n)) for n in (7, 19, 3)]
    texts = [*VALIDATION_TEXTS, *own]
    if not config.dynamic:
        picked = [texts[i % len(texts)] for i in range(config.batch)]
        return {f"{config.batch}x{config.seq_len} padded": _tokenize(loaded, picked, config)}
    batches = {}
    for label, chosen in (
        ("3 padded", texts[:3]),
        ("1 unpadded", texts[2:3]),
        ("4 own-vocab", [*own, texts[1]]),
    ):
        inputs = _tokenize(loaded, chosen, config)
        batches[f"{label} {inputs['input_ids'].shape[0]}x{inputs['input_ids'].shape[1]}"] = inputs
    return batches


def _max_abs_diff(
    expected: np.ndarray, got: np.ndarray, mask: np.ndarray, token_level: bool
) -> float:
    if expected.shape != got.shape:
        raise ValidationError(f"ONNX logits have shape {got.shape}, PyTorch {expected.shape}")
    diff = np.abs(expected - got)
    if token_level:  # logits at padded positions are never used; they may differ
        diff = diff[mask.astype(bool)]
    return float(diff.max()) if diff.size else 0.0


References = dict[str, tuple[dict[str, np.ndarray], np.ndarray]]


def reference_outputs(loaded: LoadedModel, config: ExportConfig) -> References:
    """PyTorch's logits on every validation batch, keyed by the batch's name, with its inputs."""
    reference = torch_forward(loaded.model)
    return {
        name: (inputs, reference(inputs))
        for name, inputs in validation_batches(loaded, config).items()
    }


def validate(
    onnx_path: Path,  # or an OpenVINO IR's .xml
    loaded: LoadedModel,
    config: ExportConfig,
    tolerance: float,
    references: References | None = None,
) -> list[dict[str, Any]]:
    """Compare the ONNX file with PyTorch on every validation batch (``references``: PyTorch's
    outputs taken before, see :func:`reference_outputs`; computed here when None).

    Raises:
        ValidationError: a batch differs beyond ``tolerance``; the message names it.
    """
    if references is None:
        references = reference_outputs(loaded, config)
    exported = ort_forward(export_session(onnx_path))
    token_level = loaded.task is not Task.SEQUENCE_CLASSIFICATION
    kind = "OpenVINO" if onnx_path.suffix == ".xml" else "ONNX"
    checks = []
    for name, (inputs, expected) in references.items():
        diff = _max_abs_diff(expected, exported(inputs), inputs["attention_mask"], token_level)
        checks.append({"batch": name, "max_abs_diff": diff})
        if not diff <= tolerance:
            raise ValidationError(
                [
                    Problem(
                        f"{kind} export disagrees with PyTorch: logits differ by up to {diff:.3g} "
                        f"on the '{name}' batch (tolerance {tolerance:g}); try without "
                        "{optimize}, another {opset}, or a larger {tolerance} if the difference "
                        "is acceptable"
                    )
                ]
            )
    return checks


class _DataFile:
    """One external data file, written tensor by tensor at aligned offsets.

    It is written under a temporary name and renamed on :meth:`close`, so a graph may be
    re-saved over its own folder while its old data file is still being read.
    """

    def __init__(self, model_file: Path) -> None:
        self.location = model_file.name + ".data"
        self._final = model_file.with_name(self.location)
        self._partial = model_file.with_name(self.location + ".partial")
        self._file = self._partial.open("wb")
        self._end = 0

    def _start(self) -> int:
        padding = -self._end % DATA_ALIGNMENT
        self._file.write(b"\0" * padding)
        self._end += padding
        return self._end

    def write(self, tensor: Any, data: Any) -> None:
        """Append ``data`` (bytes-like) as ``tensor``'s data and point the tensor at it."""
        offset = self._start()
        self._file.write(data)
        self._end += len(data)
        self._point(tensor, offset)

    def copy(self, tensor: Any, source: Path) -> None:
        """Append ``tensor``'s external data, read in chunks from ``source``'s folder."""
        from onnx.external_data_helper import ExternalDataInfo

        info = ExternalDataInfo(tensor)
        offset = self._start()
        with (source / info.location).open("rb") as f:
            f.seek(info.offset or 0)
            left = info.length if info.length is not None else -1
            while left != 0:
                chunk = f.read(_COPY_CHUNK if left < 0 else min(_COPY_CHUNK, left))
                if not chunk:
                    break
                self._file.write(chunk)
                self._end += len(chunk)
                left -= len(chunk) if left > 0 else 0
        self._point(tensor, offset)

    def _point(self, tensor: Any, offset: int) -> None:
        import onnx

        tensor.ClearField("raw_data")
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", self.location), ("offset", offset),
                           ("length", self._end - offset)):  # fmt: skip
            entry = tensor.external_data.add()
            entry.key, entry.value = key, str(value)

    def close(self) -> None:
        self._file.close()
        os.replace(self._partial, self._final)


def save_model(model: Any, path: Path, *, external: bool, source: Path | None = None) -> None:
    """Save ``model`` as ``path``; with ``external``, every tensor above 1 KiB goes to one data
    file beside it (``model.onnx.data``), tensors held in memory as well as those already stored
    externally (relative to ``source``), copied in chunks: memory stays at one tensor's bytes.
    """
    import onnx

    if external:
        data = _DataFile(path)
        try:
            for tensor in onnx_tensors(model.graph):
                if tensor.data_location == onnx.TensorProto.EXTERNAL:
                    data.copy(tensor, source or path.parent)
                elif len(tensor.raw_data) > _INLINE_MAX_BYTES:
                    data.write(tensor, tensor.raw_data)
        finally:
            data.close()
    onnx.save(model, str(path))


_ONNX_TYPES = {
    "float32": 1, "uint8": 2, "int8": 3, "int16": 5, "int32": 6, "int64": 7, "bool": 9,
    "float16": 10, "float64": 11, "bfloat16": 16,
}  # fmt: skip


def _initializer(tensor: Any, name: str, data: _DataFile | None) -> Any:
    """An initializer holding ``tensor``'s values, inline or appended to ``data``."""
    import onnx
    import torch

    dtype = str(tensor.dtype).removeprefix("torch.")
    if dtype not in _ONNX_TYPES:
        raise ValidationError(f"cannot export the {dtype} weight {name} to ONNX")
    proto = onnx.TensorProto(name=name, data_type=_ONNX_TYPES[dtype], dims=list(tensor.shape))
    raw = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    if data is None or raw.nbytes <= _INLINE_MAX_BYTES:
        proto.raw_data = raw.tobytes()
    else:
        data.write(proto, memoryview(raw))
    return proto


def _transposed_weight(node: Any, tensor: Any) -> bool:
    """Whether ``node`` is a plain 2-D Transpose (what a Linear's weight goes through)."""
    perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
    return node.op_type == "Transpose" and tensor.dim() == 2 and perm in ([], [[1, 0]])


def _attach_weights(model: Any, module: Any, input_names: list[str], path: Path) -> None:
    """Turn the weight inputs of a graph traced with ``export_params=False`` into initializers
    written from ``module``'s own tensors, one at a time, and save the graph as ``path``.

    A weight whose only use is a Transpose (a Linear's, into MatMul) is stored transposed, as
    constant folding would have: the folding pass itself needs every value in memory at once.
    """
    import onnx

    tensors = {**dict(module.named_buffers()), **dict(module.named_parameters())}
    graph = model.graph
    weights = [value.name for value in graph.input if value.name not in input_names]
    unknown = [name for name in weights if name not in tensors]
    if unknown:
        raise ValidationError(
            f"the traced graph takes inputs that are neither the tokenizer's nor weights: "
            f"{', '.join(unknown[:3])}"
        )
    users: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    nbytes = sum(tensors[name].nbytes for name in weights)
    data = _DataFile(path) if nbytes >= EXTERNAL_DATA_MIN_BYTES else None
    folded = []
    try:
        for name in weights:
            tensor, used_by = tensors[name], users.get(name, [])
            if len(used_by) == 1 and _transposed_weight(used_by[0], tensor):
                folded.append(used_by[0])
                tensor, name = tensor.t(), used_by[0].output[0]
            graph.initializer.append(_initializer(tensor, name, data))
    finally:
        if data is not None:
            data.close()
    for node in folded:
        graph.node.remove(node)
    inputs = [value for value in graph.input if value.name in input_names]
    del graph.input[:]
    graph.input.extend(inputs)
    onnx.save(model, str(path))


def _trace(loaded: LoadedModel, path: Path, config: ExportConfig) -> None:
    """Trace the graph without weights (``export_params=False``), then attach them.

    With weights, the TorchScript exporter holds them several times over in memory (folded
    copies, the proto, its serialization and a parsed copy; 4x a 350M model's weights) and
    past 2 GB writes one file per tensor; without, the graph takes the weights as inputs
    named like the module's parameters, and :func:`_attach_weights` writes them from there.
    Constant folding is off because it needs the weights' values; onnxruntime folds what is
    left (shape arithmetic) when it opens the graph.
    """
    import onnx
    import torch

    example = _tokenize(loaded, list(VALIDATION_TEXTS[:2]), config)
    if config.dynamic and example["attention_mask"].all():
        raise ValidationError("the trace example has no padding; cannot export safely")
    names = list(loaded.input_names)
    axes: dict[str, dict[int, str]] = {}
    if config.dynamic:
        axes = {name: {0: "batch", 1: "sequence"} for name in names}
        axes["logits"] = (
            {0: "batch"}
            if loaded.task is Task.SEQUENCE_CLASSIFICATION
            else {0: "batch", 1: "sequence"}
        )
    module = _LogitsOnly.wrap(loaded)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # TracerWarnings about Python control flow on shapes
        torch.onnx.export(
            module,
            tuple(torch.from_numpy(example[name]) for name in names),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes or None,
            opset_version=config.opset,
            dynamo=False,
            export_params=False,
            do_constant_folding=False,
        )
    with torch.inference_mode():
        _attach_weights(onnx.load(str(path)), module, names, path)


def has_external_data(path: Path) -> bool:
    """Whether the ONNX file at ``path`` keeps tensors in external data files."""
    return len(onnx_files(path)) > 1


def release_weights(loaded: LoadedModel) -> None:
    """Free the PyTorch weights of a model nothing will run again (they move to the ``meta``
    device: any later forward fails loudly rather than computing with something else)."""
    loaded.model.to("meta")


def _ort_model_type(loaded: LoadedModel) -> str:
    """The model type onnxruntime's optimizer fuses this model as: the spec's, the config's own
    when the optimizer knows it, else BERT's passes (which match no pattern they do not find)."""
    from onnxruntime.transformers.optimizer import MODEL_TYPES

    if loaded.spec is not None:
        return loaded.spec.ort_model_type
    model_type = loaded.config.model_type
    return model_type if model_type in MODEL_TYPES else "bert"


def _optimize(loaded: LoadedModel, path: Path) -> dict[str, int]:
    """Fuse the graph in place with onnxruntime's transformer optimizer; return fused op counts.

    What ``optimize_model(path, opt_level=1)`` does, in its two halves, so the fusions never hold
    the weights: onnxruntime's basic optimizations write their result with the weights beside it
    (external data when the export has it), and the fusions run on that graph loaded without
    them, reading the few values they need from disk (relative to the scratch directory, which
    is the working directory meanwhile). Loaded whole, the fused graph and the copies symbolic
    shape inference makes of it took over 20 GB for a 1.1B Llama.
    """
    import onnx
    from onnxruntime.transformers.optimizer import optimize_by_onnxruntime, optimize_model

    path = path.resolve()
    external = has_external_data(path)
    config = loaded.config
    heads, width = config.num_attention_heads, config.hidden_size
    if loaded.shapes is not None:
        # Pruned attention is narrower than the hidden size; 0 lets the optimizer read each
        # layer's own shape where layers differ.
        per_layer = {shape.heads for shape in loaded.shapes}
        heads = per_layer.pop() if len(per_layer) == 1 else 0  # 0: stated per layer below
        width = heads * head_size(config)
    # Its fusion modules log remarks through top-level loggers and print to stdout, and a failed
    # symbolic shape inference inside them saves "sym_shape_infer_temp.onnx" (plus external data)
    # into the working directory: run it from a scratch one so the user's folder stays clean.
    logging.disable(logging.WARNING)
    try:
        with (
            contextlib.redirect_stdout(io.StringIO()),
            tempfile.TemporaryDirectory(dir=path.parent, prefix=".optimize-") as scratch,
            contextlib.chdir(scratch),
        ):
            basic = optimize_by_onnxruntime(
                str(path),
                optimized_model_path=str(Path(scratch, "basic.onnx")),
                opt_level=1,
                disabled_optimizers=["ConstantSharing"],  # as optimize_model disables it
                save_as_external_data=external,
            )
            graph = onnx.load(basic, load_external_data=False)
            if heads == 0:
                state_head_counts(graph, head_size(config))
            optimized = optimize_model(
                graph,
                model_type=_ort_model_type(loaded),
                num_heads=heads,
                hidden_size=width,
                opt_level=0,  # the basic optimizations ran above
            )
            optimized.topological_sort()
            model = optimized.model
            # As OnnxModel.save does: the fused operators live in onnxruntime's domain.
            ms = "com.microsoft"
            if any(n.domain == ms for n in model.graph.node) and not any(
                o.domain == ms for o in model.opset_import
            ):
                model.opset_import.add(domain=ms, version=1)
            save_model(model, path, external=external, source=Path(scratch))
    finally:
        logging.disable(logging.NOTSET)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.domain == "com.microsoft":
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def _dtype(loaded: LoadedModel) -> str:
    return str(next(loaded.model.parameters()).dtype).removeprefix("torch.")


def _manifest(
    loaded: LoadedModel,
    config: ExportConfig,
    checks: list[dict[str, Any]],
    tolerance: float,
    fused: dict[str, int] | None,
) -> dict[str, Any]:
    import onnxruntime
    import torch
    import transformers

    batch: int | str = "batch" if config.dynamic else config.batch
    seq: int | str = "sequence" if config.dynamic else config.seq_len
    token_level = loaded.task is not Task.SEQUENCE_CLASSIFICATION
    width = loaded.config.num_labels if not token_level else loaded.config.vocab_size
    labels = None
    if loaded.task is Task.SEQUENCE_CLASSIFICATION:
        labels = [loaded.config.id2label[i] for i in range(loaded.config.num_labels)]
    return {
        "format": "onnx",
        "file": MODEL_FILE,
        "opset": config.opset,
        "source": loaded.source,
        "family": loaded.family,
        "model_type": loaded.config.model_type,
        "architecture": type(loaded.model).__name__,
        "task": loaded.task.value,
        "dtype": _dtype(loaded),
        "inputs": [
            {"name": n, "dtype": "int64", "shape": [batch, seq]} for n in loaded.input_names
        ],
        "outputs": [
            {
                "name": "logits",
                "dtype": "float32",
                "shape": [batch, seq, width] if token_level else [batch, width],
            }
        ],
        "labels": labels,
        "dynamic_shapes": config.dynamic,
        "optimized": fused is not None,
        "fused_ops": fused,
        "validation": {
            "tolerance": tolerance,
            "max_abs_diff": max(c["max_abs_diff"] for c in checks),
            "checks": checks,
        },
        "versions": {
            "squeeze": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }


def write_export(
    loaded: LoadedModel, folder: Path, config: ExportConfig, *, release: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """Trace, check, optionally fuse and validate ``loaded`` into ``folder`` (which exists).

    The folder gets ``model.onnx`` (with ``model.onnx.data`` for large models), the tokenizer,
    ``config.json`` (labels) and ``manifest.json`` (inputs, outputs, shapes, validation figures,
    versions). Switches the model to eager attention: its traced MatMul/Softmax is what the
    optimizer fuses; SDPA's is not. With ``release``, the PyTorch weights are freed as soon as
    PyTorch's reference logits are taken (see :func:`release_weights`), so onnxruntime's copy
    never sits beside them: for callers that will not run the PyTorch model again.

    Returns:
        The manifest and notes.

    Raises:
        ValidationError: the checker or the comparison with PyTorch failed.
    """
    import onnx

    loaded.model.set_attn_implementation("eager")
    tolerance = config.tolerance or DEFAULT_TOLERANCE.get(_dtype(loaded), 1e-4)
    path = folder / MODEL_FILE
    _trace(loaded, path, config)
    try:
        onnx.checker.check_model(str(path))  # the path, not a proto: that works past 2 GB
    except onnx.checker.ValidationError as e:
        raise ValidationError(f"onnx.checker rejected the export: {str(e).splitlines()[0]}") from e
    references = reference_outputs(loaded, config)
    if release:
        release_weights(loaded)
    fused = _optimize(loaded, path) if config.optimize else None
    checks = validate(path, loaded, config, tolerance, references)
    manifest = _manifest(loaded, config, checks, tolerance, fused)
    loaded.tokenizer.save_pretrained(folder)
    loaded.config.save_pretrained(folder)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    notes = []
    if config.optimize and not any(op.endswith("Attention") for op in fused or {}):
        notes.append(
            f"onnxruntime's optimizer fused no attention for {loaded.family} "
            f"({', '.join(fused or {}) or 'nothing fused'})"
        )
    return manifest, notes


def derive_export(exported: Path, folder: Path, manifest_update: dict[str, Any]) -> dict[str, Any]:
    """Finish an export folder whose model.onnx was derived from ``exported``'s (quantized or
    converted): copy the tokenizer and config (not the source graph or its external data),
    write the updated manifest; return it."""
    skip = {f.name for f in onnx_files(exported / MODEL_FILE)} | {MANIFEST_FILE}
    for item in exported.iterdir():
        if item.name not in skip and item.is_file():
            shutil.copy2(item, folder / item.name)
    manifest = {**json.loads((exported / MANIFEST_FILE).read_text()), **manifest_update}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return manifest
