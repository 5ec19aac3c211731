"""Validation against PyTorch: the batches an export must reproduce (real sentences of several
sizes, padding included: a graph that ignores ``attention_mask`` fails here), the comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from squeeze.core.errors import Problem, ValidationError
from squeeze.core.types import Task
from squeeze.methods.export.config import ExportConfig
from squeeze.model.loaded import LoadedModel
from squeeze.model.runtime import export_session, ort_forward, torch_forward

# Real sentences of different lengths, so validation batches are padded like production ones.
VALIDATION_TEXTS = (
    "A quiet, patient film that earns every one of its small triumphs.",
    "Terrible.",
    "It starts slowly, but by the second act the story grips you and does not let go until the "
    "very last scene, which is as moving as anything this year.",
    "The plot is thin and the jokes are thinner.",
    "Not bad at all!",
)


def tokenize(loaded: LoadedModel, texts: list[str], config: ExportConfig) -> dict[str, np.ndarray]:
    """``texts`` as the export's int64 inputs, padded as ``config``'s shapes are."""
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
        return {f"{config.batch}x{config.seq_len} padded": tokenize(loaded, picked, config)}
    batches = {}
    for label, chosen in (
        ("3 padded", texts[:3]),
        ("1 unpadded", texts[2:3]),
        ("4 own-vocab", [*own, texts[1]]),
    ):
        inputs = tokenize(loaded, chosen, config)
        batches[f"{label} {inputs['input_ids'].shape[0]}x{inputs['input_ids'].shape[1]}"] = inputs
    return batches


def _max_abs_diff(
    expected: np.ndarray, got: np.ndarray, mask: np.ndarray, token_level: bool
) -> float:
    if expected.shape != got.shape:
        raise ValidationError(f"ONNX outputs have shape {got.shape}, PyTorch {expected.shape}")
    diff = np.abs(expected - got)
    if token_level:  # logits at padded positions are never used; they may differ
        diff = diff[mask.astype(bool)]
    return float(diff.max()) if diff.size else 0.0


References = dict[str, tuple[dict[str, np.ndarray], np.ndarray]]


def reference_outputs(loaded: LoadedModel, config: ExportConfig) -> References:
    """PyTorch's logits on every validation batch, keyed by the batch's name, with its inputs."""
    reference = torch_forward(loaded.model, pooling=loaded.pooling)
    return {
        name: (inputs, reference(inputs))
        for name, inputs in validation_batches(loaded, config).items()
    }


def validate(
    path: Path, loaded: LoadedModel, tolerance: float, references: References
) -> dict[str, Any]:
    """Compare the ONNX file at ``path`` (or an OpenVINO IR's .xml) with PyTorch's outputs
    ``references`` (taken before, see :func:`reference_outputs`) on every validation batch;
    return the manifest's ``validation`` entry (the tolerance, the largest difference, each
    batch's).

    Raises:
        ValidationError: a batch differs beyond ``tolerance``; the message names it.
    """
    exported = ort_forward(export_session(path))
    token_level = loaded.task not in (Task.SEQUENCE_CLASSIFICATION, Task.EMBEDDING)
    kind = "OpenVINO" if path.suffix == ".xml" else "ONNX"
    checks = []
    for name, (inputs, expected) in references.items():
        diff = _max_abs_diff(expected, exported(inputs), inputs["attention_mask"], token_level)
        checks.append({"batch": name, "max_abs_diff": diff})
        if not diff <= tolerance:
            problem = Problem(
                f"{kind} export disagrees with PyTorch: outputs differ by up to {diff:.3g} "
                f"on the '{name}' batch (tolerance {tolerance:g}); try without "
                "{optimize}, another {opset}, or a larger {tolerance} if the difference "
                "is acceptable"
            )
            raise ValidationError([problem])
    worst = max(c["max_abs_diff"] for c in checks)
    return {"tolerance": tolerance, "max_abs_diff": worst, "checks": checks}
