"""Loading, saving and atomic outputs, table-driven over every tiny family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from squeeze.core.errors import CheckpointError, ConfigError, OutputExistsError
from squeeze.core.output import MARKER, atomic_output
from squeeze.core.types import Task
from squeeze.model.checkpoint import detect_task, load, save
from squeeze.model.info import describe
from squeeze.model.sizes import size_stats
from squeeze.model.tiny import FAMILIES, LM_TASK, order_task


def _logits(loaded, texts: list[str]) -> np.ndarray:
    batch = loaded.tokenizer(texts, padding=True, return_tensors="pt")
    inputs = {k: v for k, v in batch.items() if k in loaded.input_names}
    with torch.inference_mode():
        return loaded.model(**inputs).logits.numpy()


@pytest.mark.parametrize("family", FAMILIES)
def test_load_detects_task_and_family(family, tiny_classifiers, tiny_lms):
    classifier = load(tiny_classifiers[family])
    lm = load(tiny_lms[family])
    assert classifier.task is Task.SEQUENCE_CLASSIFICATION
    assert lm.task is LM_TASK[family]
    assert classifier.family == family
    assert "input_ids" in classifier.input_names and "attention_mask" in classifier.input_names
    assert ("token_type_ids" in classifier.input_names) == (family == "bert")
    assert classifier.tokenizer.pad_token_id is not None


@pytest.mark.parametrize("family", FAMILIES)
def test_save_and_reload_gives_identical_logits(family, tiny_classifiers, tmp_path):
    texts = [text for text, _ in order_task(4, seed=1)]
    original = load(tiny_classifiers[family])
    out = save(original, tmp_path / "copy")
    reloaded = load(out)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    np.testing.assert_array_equal(_logits(original, texts), _logits(reloaded, texts))
    assert reloaded.config.id2label == original.config.id2label


def test_describe_reports_shapes_and_counts(tiny_lms):
    facts = describe(load(tiny_lms["llama"]))
    assert facts["family"] == "llama" and facts["task"] == "causal-lm"
    assert (facts["layers"], facts["heads"], facts["kv_heads"]) == (2, 4, 2)
    assert (facts["hidden_size"], facts["intermediate_size"]) == (32, 64)
    assert facts["dtype"] == "float32"
    assert 0 < facts["params_nonzero"] <= facts["params_total"]
    assert facts["bytes_on_disk"] == (Path(facts["path"]) / "model.safetensors").stat().st_size


def test_size_stats_counts_zeros(tiny_classifiers):
    loaded = load(tiny_classifiers["bert"])
    before = size_stats(loaded)
    weight = loaded.model.bert.encoder.layer[0].intermediate.dense.weight
    nonzero_in_weight = int(torch.count_nonzero(weight))
    with torch.no_grad():
        weight.zero_()
    after = size_stats(loaded)
    assert after.params_total == before.params_total
    assert before.params_nonzero - after.params_nonzero == nonzero_in_weight == 64 * 32


def test_base_encoder_as_classifier_needs_permission(tiny_lms):
    with pytest.raises(CheckpointError, match="lacks weights"):
        load(tiny_lms["bert"], task=Task.SEQUENCE_CLASSIFICATION)
    loaded = load(
        tiny_lms["bert"],
        task=Task.SEQUENCE_CLASSIFICATION,
        allow_new_weights=True,
        label_names=["neg", "neu", "pos"],
    )
    assert loaded.config.num_labels == 3 and loaded.config.label2id["pos"] == 2
    assert any("classifier.weight" in note for note in loaded.notes)


def test_detect_task_from_architectures():
    class Config:
        def __init__(self, architectures: list[str] | None) -> None:
            self.architectures = architectures

    assert detect_task(Config(["GPT2LMHeadModel"])) is Task.CAUSAL_LM
    assert detect_task(Config(["LlamaForSequenceClassification"])) is Task.SEQUENCE_CLASSIFICATION
    assert detect_task(Config(None)) is Task.BASE


def test_existing_output_is_refused_and_left_intact(tiny_classifiers, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="pass overwrite to replace"):
        save(load(tiny_classifiers["gpt2"]), out)
    assert (out / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_overwrite_replaces_output(tiny_classifiers, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    (out / MARKER).write_text("")  # an earlier squeeze output: only those are replaced
    save(load(tiny_classifiers["gpt2"]), out, overwrite=True)
    assert (out / "config.json").is_file() and not (out / "old.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_input_checkpoint_is_never_an_output(tiny_classifiers):
    loaded = load(tiny_classifiers["roberta"])
    with pytest.raises(ConfigError, match="inputs are never modified"):
        save(loaded, tiny_classifiers["roberta"], overwrite=True)


def test_failed_write_leaves_no_output(tmp_path):
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "out", overwrite=False) as tmp:
        (tmp / "half.bin").write_bytes(b"partial")
        raise RuntimeError("step failed")
    assert list(tmp_path.iterdir()) == []
