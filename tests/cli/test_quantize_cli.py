"""`squeeze quantize` on tiny models of every family, as users and CI call it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app
from squeeze.model.tiny import FAMILIES

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", ["int8", "fp16", "bf16"])
def test_every_dtype_produces_a_runnable_artifact(
    family, dtype, tiny_classifiers, order_csv, tmp_path
):
    out = tmp_path / "q"
    result = invoke("quantize", tiny_classifiers[family], "-o", out, "--dtype", dtype, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["backend"] == ("onnxruntime" if dtype == "int8" else "torch")
    assert summary["backend_default"] and summary["agreement"]["top1_agreement"] >= 0.75
    assert summary["agreement"]["n_predictions"] > 0
    assert json.loads((out / "quantize.json").read_text())["config"]["dtype"] == dtype
    # The artifact loads and runs: eval picks the format (ONNX folder or checkpoint).
    scored = invoke("eval", out, "-d", order_csv, "--max-samples", "40", "--json")
    assert scored.exit_code == 0, scored.stderr
    report = json.loads(scored.stdout)
    # The quantizer was ONNX Runtime or torch; so is the runtime that runs what it made.
    assert report["runtime"] == summary["backend"] and report["n_samples"] == 40
    if dtype == "fp16":  # an fp16 ONNX export for GPU providers comes with it
        assert summary["onnx_agreement"]["top1_agreement"] >= 0.75
        onnx_scored = invoke("eval", out / "onnx", "-d", order_csv, "--max-samples", "8", "--json")
        assert onnx_scored.exit_code == 0, onnx_scored.stderr
        assert json.loads(onnx_scored.stdout)["runtime"] == "onnxruntime"
    if dtype != "int8":
        info = json.loads(invoke("info", out, "--json").stdout)
        assert info["dtype"] == {"fp16": "float16", "bf16": "bfloat16"}[dtype]
        assert summary["after"]["bytes_on_disk"] < 0.6 * summary["before"]["bytes_on_disk"]


def test_int8_of_a_real_width_model_is_4x_smaller_and_accurate(
    trained_classifier, order_csv, tmp_path
):
    result = invoke("quantize", trained_classifier, "-o", tmp_path / "q", "--dtype", "int8",
                    "-d", order_csv, "--max-length", "32", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["metric_before"]["metrics"]["accuracy"] >= 0.9
    assert summary["drop_points"] < 5 and summary["agreement"]["n_predictions"] == 256


def test_static_int8_with_calibration(trained_classifier, order_csv, tmp_path):
    out = tmp_path / "static"
    result = invoke("quantize", trained_classifier, "-o", out, "--dtype", "int8", "--static",
                    "-d", order_csv, "--calibration-samples", "64", "--calibration-method",
                    "percentile", "--per-channel", "--max-length", "32", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quantization"]["mode"] == "static QDQ" and manifest["dtype"] == "int8"
    assert any("calibrated on 64 examples (percentile)" in n for n in summary["notes"])
    assert summary["metric_after"]["metrics"]["accuracy"] >= 0.8


def test_quantizing_a_pruned_model(trained_classifier, order_csv, tmp_path):
    pruned = tmp_path / "pruned"
    assert invoke("prune", trained_classifier, "-o", pruned, "--method", "structured",
                  "--heads", "0.5", "--ffn", "0.5").exit_code == 0  # fmt: skip
    result = invoke("quantize", pruned, "-o", tmp_path / "q", "--dtype", "int8", "-d", order_csv,
                    "--max-length", "32", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["metric_after"] is not None and summary["agreement"]["top1_agreement"] > 0.9


def test_gate_failure(trained_classifier, order_csv, tmp_path):
    out = tmp_path / "gated"
    result = invoke("quantize", trained_classifier, "-o", out, "--dtype", "int8", "-d", order_csv,
                    "--max-length", "32", "--max-accuracy-drop", "-1")  # fmt: skip
    assert result.exit_code == 1 and "more than --max-accuracy-drop -1" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "code", "phrase"),
    [
        (("--dtype", "int3"), 2, "--dtype must be one of"),
        (
            ("--dtype", "int4", "--backend", "onnxruntime", "--block-size", "48"),
            2,
            "--block-size must be one of 16, 32, 64, 128, 256, not 48",
        ),
        (
            ("--dtype", "int4", "--backend", "bitsandbytes"),
            4,
            "widths divisible by 64; this model has input widths 32",
        ),
        (("--dtype", "bf16", "--backend", "bitsandbytes"), 4, "has no bf16; use --backend torch"),
        (
            ("--dtype", "bf16", "--backend", "onnxruntime"),
            4,
            "onnxruntime has no bf16; use --backend torch",
        ),
        (("--dtype", "fp16", "--backend", "onnxruntime"), 4, "has no fp16"),
        (("--dtype", "fp16", "--static"), 2, "--static is int8 calibration"),
        (("--dtype", "int8", "--max-accuracy-drop", "1"), 2, "needs --data"),
        (("--dtype", "int8", "--calibration-method", "kl"), 2, "--calibration-method"),
    ],
)
def test_bad_combinations(args, code, phrase, tiny_classifiers, tmp_path):
    result = invoke("quantize", tiny_classifiers["bert"], "-o", tmp_path / "x", *args)
    assert result.exit_code == code, (result.stderr, result.exception)
    assert phrase in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_int4_matmulnbits_on_every_family(family, tiny_lms, tmp_path):
    """Weight-only int4 ONNX: every projection MatMulNBits, the vocabulary projection too,
    runnable by eval and bench."""
    out = tmp_path / "q4"
    args = ("quantize", tiny_lms[family], "-o", out, "--dtype", "int4", "--backend", "onnxruntime")
    result = invoke(*args, "--block-size", "16", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    # Random tiny LMs: token logits are near ties, so 4-bit rounding flips some (int8: 0.75).
    assert summary["agreement"]["top1_agreement"] >= 0.75
    manifest = json.loads((out / "manifest.json").read_text())
    quantization = manifest["quantization"]
    assert manifest["dtype"] == "int4" and quantization["block_size"] == 16
    # Two layers of at least four projections each (GPT-2 keeps q, k and v in one), plus the
    # vocabulary projection (in 8 bits): a language model keeps nothing fp32.
    assert quantization["quantized"]["MatMul"] >= 9 and quantization["kept_fp32"] == []
    assert any(node.endswith(("lm_head/MatMul", "decoder/MatMul", "vocab_projector/MatMul"))
               for node in quantization["eight_bit"])  # fmt: skip
    bench = invoke("bench", out, "--seq", "16", "--runs", "2", "--warmup", "1", "--rounds", "1")
    assert bench.exit_code == 0, bench.stderr


def test_int4_is_smaller_than_int8_and_keeps_accuracy(tmp_path):
    """At a width where weights outweigh the graph (hidden 256), int4 is clearly smaller than
    int8: blocks of 32 cost 4 + 4/32 (fp32 scale) + 4/32 (zero point) bits a weight, 0.64 bytes,
    against int8's one byte."""
    from squeeze.core.types import Task
    from squeeze.model.tiny import build_tiny, tiny_config

    model = build_tiny("llama", tmp_path / "m", task=Task.CAUSAL_LM,
                       config=tiny_config("llama", hidden=256))  # fmt: skip
    sizes = {}
    for dtype, backend in (("int8", "onnxruntime"), ("int4", "onnxruntime")):
        result = invoke("quantize", model, "-o", tmp_path / dtype, "--dtype", dtype,
                        "--backend", backend, "--json")  # fmt: skip
        assert result.exit_code == 0, result.stderr
        summary = json.loads(result.stdout)
        sizes[dtype] = summary["after"]["bytes_on_disk"]
        # Random weights: token logits are near ties, and int4 rounds the vocabulary projection
        # too (on squeeze's built-in text, 8,795 tokens: int8 0.95, int4 0.56 measured); a broken
        # graph agrees on about 1/vocab of the tokens.
        assert summary["agreement"]["top1_agreement"] >= {"int8": 0.9, "int4": 0.5}[dtype]
    assert sizes["int4"] < 0.8 * sizes["int8"], sizes


def test_int4_keeps_a_classification_head_fp32(wide_classifiers, tmp_path):
    out = tmp_path / "q4"
    result = invoke("quantize", wide_classifiers["roberta"], "-o", out, "--dtype", "int4",
                    "--backend", "onnxruntime", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    kept = json.loads((out / "manifest.json").read_text())["quantization"]["kept_fp32"]
    assert kept and all("classifier" in node for node in kept)


@pytest.fixture(scope="session")
def wide_classifiers(tmp_path_factory):
    """Hidden size 64: the narrowest that 4-bit blocks of 64 accept."""
    from squeeze.model.tiny import build_tiny, tiny_config

    root = tmp_path_factory.mktemp("wide")
    return {f: build_tiny(f, root / f, config=tiny_config(f, hidden=64)) for f in FAMILIES}


PYTORCH_INT = [("int8", "torch"), ("int8", "bitsandbytes"), ("int4", "bitsandbytes")]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("dtype", "backend"), PYTORCH_INT)
def test_pytorch_deployment_int8_and_int4(
    family, dtype, backend, wide_classifiers, order_csv, tmp_path
):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "q"
    args = ("quantize", wide_classifiers[family], "-o", out, "--dtype", dtype, "--backend", backend)
    result = invoke(*args, "--json")
    if family == "gpt2" and backend == "torch":
        assert result.exit_code == 4 and "Conv1D, so nothing would change" in result.stderr
        return
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["agreement"]["top1_agreement"] >= 0.75
    assert summary["after"]["bytes_on_disk"] < 0.45 * summary["before"]["bytes_on_disk"]
    config = json.loads((out / "config.json").read_text())
    method = "torchao" if backend == "torch" else "bitsandbytes"
    assert config["quantization_config"]["quant_method"] == method
    # Plain transformers reloads it with its quantization config; squeeze evaluates it.
    AutoModelForSequenceClassification.from_pretrained(out, device_map="cpu")
    info = invoke("info", out, "--json")
    assert info.exit_code == 0, info.stderr
    assert json.loads(info.stdout)["params_nonzero"] > 0
    scored = invoke("eval", out, "-d", order_csv, "--max-samples", "16", "--json")
    assert scored.exit_code == 0, scored.stderr
    assert json.loads(scored.stdout)["n_samples"] == 16


def test_quantizer_failure_is_one_line(wide_classifiers, tmp_path, monkeypatch):
    import squeeze.methods.quantize.in_transformers as integration

    def no_kernels(*args, **kwargs):
        raise RuntimeError("no CPU kernels for 4-bit matmul in this build")

    monkeypatch.setattr(
        integration, "auto_class", lambda task: type("M", (), {"from_pretrained": no_kernels})
    )
    result = invoke("quantize", wide_classifiers["bert"], "-o", tmp_path / "q", "--dtype", "int4",
                    "--backend", "bitsandbytes")  # fmt: skip
    assert result.exit_code == 4
    assert "bitsandbytes could not quantize this model here: no CPU kernels" in result.stderr
    assert not (tmp_path / "q").exists()


def _with_outlier_feature(source, dest):
    """A two-layer BERT classifier, FFN 2048 wide, whose layer-0 FFN feeds one huge channel
    into its output projection: what all-mpnet-base-v2 and other real checkpoints carry
    (outlier features). One channel of 2048 is under 0.1% of the values, as in real widths."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(source)
    config.intermediate_size, config.num_hidden_layers = 2048, 2
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():
        ffn_in = model.bert.encoder.layer[0].intermediate.dense
        ffn_in.weight[7].zero_()
        ffn_in.bias[7] = 400.0  # channel 7 of the GELU output is 400 for every token
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(source).save_pretrained(dest)
    return dest


def test_matmuls_fed_by_outlier_features_stay_fp32(tiny_classifiers, tmp_path):
    import onnx

    model = _with_outlier_feature(tiny_classifiers["bert"], tmp_path / "outlier")
    ops = {}
    for ratio in ("12", "0"):
        out = tmp_path / f"q{ratio}"
        result = invoke("quantize", model, "-o", out, "--dtype", "int8", "--no-optimize",
                        "--outlier-ratio", ratio, "--json")  # fmt: skip
        assert result.exit_code == 0, result.stderr
        kept = json.loads((out / "manifest.json").read_text())["quantization"]["kept_fp32"]
        graph = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
        ops[ratio] = {n.name: n.op_type for n in graph.node}
        if ratio == "0":
            assert kept == []
            continue
        # Only the projection the outlier channel feeds is found, and it stays an fp32 MatMul.
        assert [k["node"] for k in kept] == ["/model/bert/encoder/layer.0/output/dense/MatMul"]
        assert kept[0]["ratio"] > 12
        assert "1 MatMul(s) kept fp32" in " ".join(json.loads(result.stdout)["notes"])
    name = "/model/bert/encoder/layer.0/output/dense/MatMul"
    assert ops["12"][name] == "MatMul" and name not in ops["0"]  # quantized when ratio is 0
    assert (
        list(ops["12"].values()).count("MatMulInteger")
        == list(ops["0"].values()).count("MatMulInteger") - 1
    )


def test_calibration_data_needs_no_labels_the_model_knows(trained_classifier, tmp_path):
    """Calibration reads text only: scores that are no label of the model's are no problem."""
    scored = tmp_path / "scored.tsv"
    scored.write_text(
        "text\tscore\n" + "".join(f"a then b {i}\t{i / 7 - 3:.3f}\n" for i in range(40))
    )
    out = tmp_path / "static"
    result = invoke("quantize", trained_classifier, "-o", out, "--dtype", "int8", "--static",
                    "--calibration-data", scored, "--calibration-samples", "16",
                    "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert any("calibrated on 16 examples" in n for n in json.loads(result.stdout)["notes"])
