"""squeeze.artifact: a checkpoint, an ONNX export and an OpenVINO IR, each decided once from its
files and answered the same way: runtime, config and positions, sizes, fact sheet, a Runnable."""

from __future__ import annotations

import numpy as np
import pytest

from squeeze.artifact import Artifact
from squeeze.core.errors import CheckpointError, ConfigError
from squeeze.core.types import Task
from squeeze.methods.export.config import ExportConfig
from squeeze.methods.export.method import export_onnx
from squeeze.model.checkpoint import load

FORMATS = [
    ("checkpoint", "torch"),
    ("onnx", "onnxruntime"),
    ("openvino", "openvino"),
]


@pytest.fixture(scope="module")
def artifacts(tiny_classifiers, tmp_path_factory) -> dict[str, str]:
    source = str(tiny_classifiers["bert"])
    root = tmp_path_factory.mktemp("artifacts")
    made = {"checkpoint": source}
    for fmt in ("onnx", "openvino"):
        made[fmt] = str(export_onnx(source, root / fmt, ExportConfig(format=fmt)).out)
    return made


@pytest.mark.parametrize(("fmt", "runtime"), FORMATS)
def test_every_format_answers_the_same_questions(artifacts, fmt, runtime):
    artifact = Artifact.of(artifacts[fmt])
    assert artifact.runtime == runtime
    assert (artifact.export is None) == (fmt == "checkpoint")
    assert artifact.positions() == Artifact.of(artifacts["checkpoint"]).positions()

    run = artifact.open(device="cpu")
    assert run.runtime == runtime and run.task is Task.SEQUENCE_CLASSIFICATION
    batch = run.tokenizer(["a b c", "b a"], padding="max_length", max_length=8, return_tensors="np")
    logits = run.forward({name: batch[name].astype(np.int64) for name in run.input_names})
    assert logits.shape == (2, 2)

    loaded = load(artifacts["checkpoint"]) if fmt == "checkpoint" else None
    sizes = artifact.sizes(loaded)
    facts = artifact.facts()
    assert facts is not None
    assert sizes["params_total"] == facts["params_total"] > 0
    assert sizes["params_nonzero"] == facts["params_nonzero"]
    assert sizes["bytes_on_disk"] == facts["bytes_on_disk"] > 0


def test_an_export_is_opened_for_the_task_it_was_made_for(artifacts):
    with pytest.raises(ConfigError, match="was exported as sequence-classification, not causal-lm"):
        Artifact.of(artifacts["onnx"]).open(task=Task.CAUSAL_LM)


def test_a_graph_file_names_its_folder_and_needs_its_manifest(artifacts, tmp_path):
    graph = f"{artifacts['onnx']}/model.onnx"
    assert Artifact.of(graph).export == Artifact.of(artifacts["onnx"]).export
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"no manifest\.json beside it"):
        Artifact.of(tmp_path / "model.onnx")


def test_a_hub_id_is_a_checkpoint_that_only_loading_can_describe():
    artifact = Artifact.of("someone/some-model")
    assert artifact.runtime == "torch" and artifact.manifest is None
    assert artifact.facts() is None


def test_bench_times_what_it_is_given_and_builds_nothing(artifacts, monkeypatch):
    """A checkpoint timed on ONNX Runtime needs the export its caller built; with it, the
    checkpoint's row is timed through that export."""
    import squeeze.methods.export.method as export_method
    from squeeze.measure.bench import bench_models
    from squeeze.measure.latency import BenchSettings

    settings = BenchSettings(seq_len=8, runs=2, warmup=0, rounds=1)
    checkpoint = artifacts["checkpoint"]
    with pytest.raises(ConfigError, match="export it first"):
        bench_models([checkpoint], settings, runtimes=("onnxruntime",))

    def no_export(*args, **kwargs):
        raise AssertionError("the bench built an export")

    monkeypatch.setattr(export_method, "export_onnx", no_export)
    results, _ = bench_models(
        [checkpoint], settings, runtimes=("torch", "onnxruntime"),
        exports={checkpoint: {"onnxruntime": artifacts["onnx"]}},
    )  # fmt: skip
    assert [r.runtime for r in results] == ["torch", "onnxruntime"]
    assert all(r.latencies[0].p50_ms > 0 for r in results)
