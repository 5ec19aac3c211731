"""Metrics are right to the digit, and the same code scores any forward (torch or ONNX Runtime)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from squeeze.core.errors import UnsupportedError
from squeeze.core.types import Task
from squeeze.data.encoding import encode
from squeeze.data.examples import load_dataset
from squeeze.data.spec import DataSpec
from squeeze.measure.evaluate import classification_metrics, evaluate, evaluate_forward
from squeeze.model.checkpoint import load


def test_classification_metrics_by_hand():
    accuracy, macro_f1 = classification_metrics(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]))
    # class 0: tp 2, fp 0, fn 1 -> F1 0.8; class 1: tp 1, fp 1, fn 0 -> F1 2/3
    assert accuracy == pytest.approx(0.75)
    assert macro_f1 == pytest.approx((0.8 + 2 / 3) / 2)


def test_macro_f1_counts_a_class_only_predicted():
    _, macro_f1 = classification_metrics(np.array([2, 0]), np.array([0, 0]))
    assert macro_f1 == pytest.approx((2 / 3 + 0) / 2)


def test_any_forward_is_scored_by_the_same_code(order_csv, tiny_classifiers):
    """A rule-based numpy forward stands in for an ONNX Runtime session."""
    loaded = load(tiny_classifiers["distilbert"])
    dataset = load_dataset(DataSpec(str(order_csv), split="test"))
    encoded = encode(
        dataset, loaded.tokenizer, input_names=loaded.input_names, label2id=loaded.config.label2id
    )
    a_id, b_id = loaded.tokenizer.convert_tokens_to_ids(["a", "b"])

    def rule(inputs):
        ids = inputs["input_ids"]
        a_first = (ids == a_id).argmax(axis=1) < (ids == b_id).argmax(axis=1)
        return np.stack([~a_first, a_first], axis=1).astype(np.float32)

    evaluation = evaluate_forward(rule, encoded, Task.SEQUENCE_CLASSIFICATION, batch_size=7)
    assert evaluation.primary.name == "accuracy" and evaluation.primary.value == 1.0
    assert evaluation.n_samples == len(dataset.examples) > 100


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_perplexity_matches_the_models_own_loss(family, tiny_lms, order_csv):
    loaded = load(tiny_lms[family])
    dataset = load_dataset(DataSpec(str(order_csv), max_samples=40), need_labels=False)
    encoded = encode(dataset, loaded.tokenizer, input_names=loaded.input_names)
    ours = evaluate(loaded, encoded, batch_size=16)

    batch = loaded.tokenizer([e.text for e in dataset.examples], padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.inference_mode():
        reference = loaded.model(**batch, labels=labels).loss.item()
    assert ours.primary.name == "perplexity"
    assert ours.primary.value == pytest.approx(float(np.exp(reference)), rel=1e-4)


def test_masked_lm_has_no_metric(tiny_lms, order_csv):
    loaded = load(tiny_lms["bert"])
    dataset = load_dataset(DataSpec(str(order_csv), max_samples=4), need_labels=False)
    encoded = encode(dataset, loaded.tokenizer, input_names=loaded.input_names)
    with pytest.raises(UnsupportedError, match="no metric for masked-lm"):
        evaluate(loaded, encoded)
