"""Export a checkpoint to ONNX that provably computes what the PyTorch model computes.

Steps: trace with ``torch.onnx.export(dynamo=False)`` from a *padded* example (an unpadded trace
can bake in "no padding" and ignore ``attention_mask``), run ``onnx.checker``, optionally fuse
attention/LayerNorm/GELU with onnxruntime's transformer optimizer, then validate the file that
will be deployed against PyTorch on real tokenized batches of other sizes, padding included.
A file that disagrees beyond the tolerance is never written to the output folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from squeeze import __version__
from squeeze.arch import head_size
from squeeze.errors import Problem, ValidationError
from squeeze.export.method import ExportConfig
from squeeze.export.read import MANIFEST_FILE, MODEL_FILE
from squeeze.runtime import ort_forward, ort_session, torch_forward
from squeeze.types import LoadedModel, Task

# Absolute logit tolerance by parameter dtype; half precision rounds at ~1e-3 relative.
DEFAULT_TOLERANCE = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 5e-2}

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


def validate(
    onnx_path: Path, loaded: LoadedModel, config: ExportConfig, tolerance: float
) -> list[dict[str, Any]]:
    """Compare the ONNX file with PyTorch on every validation batch.

    Raises:
        ValidationError: a batch differs beyond ``tolerance``; the message names it.
    """
    reference = torch_forward(loaded.model)
    exported = ort_forward(ort_session(onnx_path))
    token_level = loaded.task is not Task.SEQUENCE_CLASSIFICATION
    checks = []
    for name, inputs in validation_batches(loaded, config).items():
        diff = _max_abs_diff(
            reference(inputs), exported(inputs), inputs["attention_mask"], token_level
        )
        checks.append({"batch": name, "max_abs_diff": diff})
        if not diff <= tolerance:
            raise ValidationError(
                [
                    Problem(
                        f"ONNX export disagrees with PyTorch: logits differ by up to {diff:.3g} "
                        f"on the '{name}' batch (tolerance {tolerance:g}); try without "
                        "{optimize}, another {opset}, or a larger {tolerance} if the difference "
                        "is acceptable"
                    )
                ]
            )
    return checks


def _trace(loaded: LoadedModel, path: Path, config: ExportConfig) -> None:
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
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # TracerWarnings about Python control flow on shapes
        torch.onnx.export(
            _LogitsOnly.wrap(loaded),
            tuple(torch.from_numpy(example[name]) for name in names),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes or None,
            opset_version=config.opset,
            dynamo=False,
        )


def _ort_model_type(loaded: LoadedModel) -> str:
    """The model type onnxruntime's optimizer fuses this model as: the spec's, the config's own
    when the optimizer knows it, else BERT's passes (which match no pattern they do not find)."""
    from onnxruntime.transformers.optimizer import MODEL_TYPES

    if loaded.spec is not None:
        return loaded.spec.ort_model_type
    model_type = loaded.config.model_type
    return model_type if model_type in MODEL_TYPES else "bert"


def _optimize(loaded: LoadedModel, path: Path) -> dict[str, int]:
    """Fuse the graph in place with onnxruntime's transformer optimizer; return fused op counts."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = loaded.config
    heads, width = config.num_attention_heads, config.hidden_size
    if loaded.shapes is not None:
        # Pruned attention is narrower than the hidden size; 0 lets the optimizer read each
        # layer's own shape where layers differ.
        per_layer = {shape.heads for shape in loaded.shapes}
        heads = per_layer.pop() if len(per_layer) == 1 else 0
        width = heads * head_size(config)
    # Its fusion modules log remarks through top-level loggers and print to stdout, and a failed
    # symbolic shape inference inside them saves "sym_shape_infer_temp.onnx" (plus external data)
    # into the working directory: run it from a scratch one so the user's folder stays clean.
    logging.disable(logging.WARNING)
    try:
        with (
            contextlib.redirect_stdout(io.StringIO()),
            tempfile.TemporaryDirectory() as scratch,
            contextlib.chdir(scratch),
        ):
            optimized = optimize_model(
                str(path.resolve()),
                model_type=_ort_model_type(loaded),
                num_heads=heads,
                hidden_size=width,
                opt_level=1,
            )
    finally:
        logging.disable(logging.NOTSET)
    optimized.save_model_to_file(str(path))
    counts: dict[str, int] = {}
    for node in optimized.model.graph.node:
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
    loaded: LoadedModel, folder: Path, config: ExportConfig
) -> tuple[dict[str, Any], list[str]]:
    """Trace, check, optionally fuse and validate ``loaded`` into ``folder`` (which exists).

    The folder gets ``model.onnx``, the tokenizer, ``config.json`` (labels) and
    ``manifest.json`` (inputs, outputs, shapes, validation figures, versions). Switches the
    model to eager attention: its traced MatMul/Softmax is what the optimizer fuses; SDPA's is not.

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
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as e:
        raise ValidationError(f"onnx.checker rejected the export: {str(e).splitlines()[0]}") from e
    fused = _optimize(loaded, path) if config.optimize else None
    checks = validate(path, loaded, config, tolerance)
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
    converted): copy the tokenizer and config, write the updated manifest; return it."""
    for item in exported.iterdir():
        if item.name not in (MODEL_FILE, MANIFEST_FILE):
            shutil.copy2(item, folder / item.name)
    manifest = {**json.loads((exported / MANIFEST_FILE).read_text()), **manifest_update}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return manifest
