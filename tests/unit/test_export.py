"""ONNX export of every family: checked, validated against PyTorch, and honest when it is not."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import squeeze.methods.export.validate as onnx_export
from squeeze.artifact.read import export_folder
from squeeze.artifact.sizes import onnx_size_stats
from squeeze.core.errors import CheckpointError, ValidationError
from squeeze.methods.export.method import ExportConfig, export_onnx
from squeeze.model.checkpoint import load
from squeeze.model.runtime import ort_forward, ort_session
from squeeze.model.tiny import FAMILIES, order_task


def _inputs(loaded, texts):
    encoded = loaded.tokenizer(texts, padding=True, return_tensors="np")
    return {name: encoded[name].astype(np.int64) for name in loaded.input_names}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("head", ["classifier", "lm"])
def test_export_matches_pytorch_on_new_padded_batches(
    family, head, tiny_classifiers, tiny_lms, tmp_path
):
    source = (tiny_classifiers if head == "classifier" else tiny_lms)[family]
    result = export_onnx(str(source), tmp_path / "onnx")
    manifest = json.loads((result.out / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(result.manifest))
    assert manifest["family"] == family and manifest["validation"]["max_abs_diff"] < 1e-5
    assert [i["shape"] for i in manifest["inputs"]] == [["batch", "sequence"]] * len(
        manifest["inputs"]
    )
    assert (result.out / "tokenizer.json").is_file() and (result.out / "config.json").is_file()

    # Independently of the exporter's own validation: a batch of another size and padding.
    loaded = load(source)
    inputs = _inputs(loaded, [text for text, _ in order_task(5, seed=3)])
    assert not inputs["attention_mask"].all()
    with torch.inference_mode():
        expected = loaded.model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits
    got = ort_forward(ort_session(result.onnx_path))(inputs)
    mask = inputs["attention_mask"].astype(bool)
    diff = np.abs(expected.numpy() - got)
    assert (diff if head == "classifier" else diff[mask]).max() < 1e-5


def test_optimized_export_fuses_attention_and_still_agrees(tiny_classifiers, tmp_path):
    result = export_onnx(
        str(tiny_classifiers["bert"]), tmp_path / "o", config=ExportConfig(optimize=True)
    )
    fused = result.manifest["fused_ops"]
    assert fused["Attention"] == 2 and fused["SkipLayerNormalization"] == 4
    assert result.manifest["validation"]["max_abs_diff"] < 1e-5 and result.notes == []


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_optimizer_leaves_the_working_directory_clean(
    family, tiny_classifiers, tmp_path, monkeypatch
):
    # A failed symbolic shape inference inside the optimizer once dropped its model into the cwd.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = export_onnx(
        str(tiny_classifiers[family]), tmp_path / "o", config=ExportConfig(optimize=True)
    )
    assert list(cwd.iterdir()) == []
    if family == "llama":
        assert "fused no attention for llama" in result.notes[0]


def test_static_shapes(tiny_classifiers, tmp_path):
    config = ExportConfig(dynamic=False, batch=2, seq_len=16)
    result = export_onnx(str(tiny_classifiers["roberta"]), tmp_path / "s", config=config)
    session = ort_session(result.onnx_path)
    assert [i.shape for i in session.get_inputs()] == [[2, 16], [2, 16]]
    assert result.manifest["outputs"][0]["shape"] == [2, 2]


def test_tolerance_breach_fails_and_writes_nothing(tiny_classifiers, tmp_path, monkeypatch):
    real = onnx_export.torch_forward
    monkeypatch.setattr(
        onnx_export, "torch_forward", lambda model, **kw: lambda x: real(model, **kw)(x) + 0.5
    )
    with pytest.raises(ValidationError, match=r"differ by up to 0\.5 on the '3 padded"):
        export_onnx(str(tiny_classifiers["distilbert"]), tmp_path / "bad")
    assert list(tmp_path.iterdir()) == []


def test_size_stats_of_an_export(tiny_classifiers, tmp_path):
    result = export_onnx(str(tiny_classifiers["bert"]), tmp_path / "onnx")
    stats = onnx_size_stats(result.out)
    torch_params = sum(p.numel() for p in load(tiny_classifiers["bert"]).model.parameters())
    assert abs(stats.params_total - torch_params) / torch_params < 0.05
    assert stats.bytes_on_disk == result.onnx_path.stat().st_size


def test_bare_onnx_file_needs_its_manifest(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"manifest\.json"):
        export_folder(tmp_path / "model.onnx")
    assert export_folder(tmp_path) is None
