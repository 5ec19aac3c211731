"""Every quantization backend and export format on sentence embedders, from the command line.

Each output must still be an embedder: what it returns is the pooled (and normalised) sentence
embedding, not token states, so ``squeeze eval OUT --reference ORIGINAL`` measures its mean
cosine to the fp32 model's embeddings (fidelity) above a floor for the dtype; PyTorch outputs keep
the sentence-transformers files (``SentenceTransformer(path)`` loads them); export folders return
``sentence_embedding`` first; ``squeeze info`` calls every output an embedder.

The table runs each backend on BERT; every family runs the default (ONNX Runtime dynamic int8)
and the ONNX export, BERT and GPT-2 (last-token pooling) the OpenVINO IR. The rest of backends x
families is marked ``slow`` (run with ``SQUEEZE_SLOW=1``), as is the real all-MiniLM-L6-v2 check
of the issue's "done when".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app
from squeeze.core.types import Task
from squeeze.model.pooling import SENTENCE_FILES, folder_files, read_pooling
from squeeze.model.tiny import FAMILIES, build_tiny, tiny_config

runner = CliRunner()
REPO = Path(__file__).parents[2]
SLOW = os.environ.get("SQUEEZE_SLOW") == "1"
slow = [
    pytest.mark.slow,
    pytest.mark.skipif(not SLOW, reason="slow (every backend on every family): SQUEEZE_SLOW=1"),
]
# The lowest mean cosine to the fp32 model's embeddings each dtype must keep on the tiny random
# models (measured: int8 >= 0.9997, int4 >= 0.992, fp16/bf16 >= 0.99999).
FLOOR = {"int8": 0.999, "int4": 0.98, "fp16": 0.999, "bf16": 0.999}


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def as_json(*args: object) -> dict:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, (args[:3], result.stderr, result.exception)
    return json.loads(result.stdout)


# name: (dtype, quantize options, what it writes); "DATA" stands for --data order.csv.
BACKENDS = {
    "onnxruntime dynamic": ("int8", (), "onnx"),
    "onnxruntime static": ("int8", ("--static", "DATA"), "onnx"),
    "onnxruntime int4": ("int4", ("--dtype", "int4", "--backend", "onnxruntime"), "onnx"),
    "openvino weight-only": ("int8", ("--backend", "openvino"), "openvino"),
    "openvino static": ("int8", ("--backend", "openvino", "--static", "DATA"), "openvino"),
    "openvino int4": ("int4", ("--backend", "openvino", "--dtype", "int4"), "openvino"),
    "torch fp16": ("fp16", ("--dtype", "fp16"), "checkpoint"),
    "torch bf16": ("bf16", ("--dtype", "bf16"), "checkpoint"),
    "torchao int8": ("int8", ("--backend", "torch"), "checkpoint"),
    "bitsandbytes int8": ("int8", ("--backend", "bitsandbytes"), "checkpoint"),
    "bitsandbytes int4": ("int4", ("--dtype", "int4", "--backend", "bitsandbytes"), "checkpoint"),
}
# What a backend refuses on a family, with the exit code and the reason's words.
REFUSED = {
    ("torchao int8", "gpt2"): (4, "keeps its weights in Conv1D"),
}


def _cases() -> list:
    cases = []
    for name in BACKENDS:
        for family in FAMILIES:
            marks = [] if family == "bert" or name == "onnxruntime dynamic" else slow
            cases.append(pytest.param(name, family, marks=marks, id=f"{name}-{family}"))
    return cases


@pytest.fixture(scope="session")
def wide_embedders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Hidden size 64: the narrowest that bitsandbytes' 4-bit blocks of 64 accept."""
    root = tmp_path_factory.mktemp("wide-embedders")
    return {
        f: build_tiny(f, root / f, task=Task.EMBEDDING, config=tiny_config(f, hidden=64))
        for f in FAMILIES
    }


def check_embedder(out: Path, original: Path, data: Path, floor: float) -> dict:
    """What every output must be: an embedder (info), returning the embedding (its fidelity to
    the original, through eval); returns eval's report."""
    facts = as_json("info", out)
    assert facts["task"] == "embedding", facts
    assert facts["pooling"].startswith(read_pooling(folder_files(original)).describe())
    scored = as_json("eval", out, "-d", data, "--max-samples", "64", "--reference", original)
    assert scored["task"] == "embedding" and scored["n_samples"] > 0
    assert scored["metrics"]["fidelity"] >= floor, scored["metrics"]
    return scored


def check_export(folder: Path, original: Path) -> None:
    """An export folder returns the sentence embedding first, pooled as the original pools."""
    manifest = json.loads((folder / "manifest.json").read_text())
    names = [output["name"] for output in manifest["outputs"]]
    assert names == ["sentence_embedding", "token_embeddings"]
    pooling_config = json.loads((original / "1_Pooling" / "config.json").read_text())
    assert manifest["outputs"][0]["shape"][1] == pooling_config["word_embedding_dimension"]
    assert manifest["pooling"] == read_pooling(folder_files(original)).to_dict()


def check_sentence_files(out: Path, original: Path) -> None:
    """A PyTorch output keeps the sentence-transformers files, declaring the original's pooling."""
    assert all((out / name).is_file() for name in SENTENCE_FILES)
    assert read_pooling(folder_files(out)) == read_pooling(folder_files(original))


@pytest.mark.parametrize(("name", "family"), _cases())
def test_every_backend_keeps_an_embedder(
    name, family, tiny_embedders, wide_embedders, order_csv, tmp_path
):
    dtype, options, produces = BACKENDS[name]
    models = wide_embedders if name == "bitsandbytes int4" else tiny_embedders
    original, out = models[family], tmp_path / "q"
    options = tuple(f"--data={order_csv}" if o == "DATA" else o for o in options)
    result = invoke("quantize", original, "-o", out, *options, "--json")
    if (name, family) in REFUSED:
        code, words = REFUSED[name, family]
        assert result.exit_code == code and words in result.stderr, result.stderr
        return
    assert result.exit_code == 0, (result.stderr, result.exception)
    summary = json.loads(result.stdout)
    agreement = summary["agreement"]
    assert agreement["top1_agreement"] is None and agreement["mean_cosine"] >= FLOOR[dtype]
    check_embedder(out, original, order_csv, FLOOR[dtype])
    if produces == "checkpoint":
        check_sentence_files(out, original)
    else:
        check_export(out, original)
        assert json.loads((out / "manifest.json").read_text())["format"] == produces
    if dtype == "fp16":  # and the fp16 ONNX export beside it
        check_export(out / "onnx", original)
        check_embedder(out / "onnx", original, order_csv, FLOOR[dtype])


def _export_cases() -> list:
    cases = [pytest.param("onnx", family, id=f"onnx-{family}") for family in FAMILIES]
    for family in FAMILIES:
        marks = [] if family in ("bert", "gpt2") else slow
        cases.append(pytest.param("openvino", family, marks=marks, id=f"openvino-{family}"))
    return cases


@pytest.mark.parametrize(("fmt", "family"), _export_cases())
def test_exports_return_the_pooled_embedding(fmt, family, tiny_embedders, order_csv, tmp_path):
    original, out = tiny_embedders[family], tmp_path / fmt
    report = as_json("export", original, "-o", out, "--format", fmt)
    assert report["validation"]["max_abs_diff"] <= report["validation"]["tolerance"] == 1e-4
    check_export(out, original)
    # Exported, the embedding is what the original computes (fidelity 1, not merely close).
    check_embedder(out, original, order_csv, 0.99999)


def test_the_sentence_embedding_pools_the_token_embeddings(tiny_embedders, tmp_path):
    """The graph's first output is its second pooled over real tokens and normalised: the
    pooling is inside the graph, at [batch, dim]."""
    from transformers import AutoTokenizer

    from squeeze.methods.export.validate import VALIDATION_TEXTS
    from squeeze.model.runtime import ort_session

    for family in ("bert", "gpt2"):
        out = tmp_path / family
        as_json("export", tiny_embedders[family], "-o", out)
        session = ort_session(out / "model.onnx")
        wanted = [i.name for i in session.get_inputs()]
        encoded = AutoTokenizer.from_pretrained(out)(
            list(VALIDATION_TEXTS[:3]), padding=True, return_tensors="np"
        )
        inputs = {name: encoded[name].astype(np.int64) for name in wanted}
        sentence, tokens = session.run(None, inputs)
        mask = inputs["attention_mask"].astype(bool)
        assert mask.sum() < mask.size  # padded, so pooling over real tokens matters
        if family == "bert":  # mean over real tokens
            pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        else:  # the last real token
            pooled = tokens[np.arange(len(tokens)), mask.sum(1) - 1]
        pooled /= np.linalg.norm(pooled, axis=-1, keepdims=True)
        assert sentence.shape == (3, tokens.shape[-1])
        np.testing.assert_allclose(sentence, pooled, atol=1e-5)


def test_an_export_pooling_unlike_pytorch_fails_validation(tiny_embedders, tmp_path, monkeypatch):
    """Validation compares the pooled embeddings: a graph pooling otherwise than the PyTorch
    model is refused (exit 5) and nothing is written."""
    import squeeze.model.pooling as pooling_module

    real = pooling_module.pool  # the tracer's; the PyTorch reference keeps its own
    cls = pooling_module.Pooling(mode="cls")
    monkeypatch.setattr(pooling_module, "pool", lambda hidden, mask, _: real(hidden, mask, cls))
    result = invoke("export", tiny_embedders["bert"], "-o", tmp_path / "bad")
    assert result.exit_code == 5, result.stderr
    assert result.stderr.startswith("error: ONNX export disagrees with PyTorch")
    assert not (tmp_path / "bad").exists()


def test_sentence_transformers_loads_the_pytorch_outputs(tiny_embedders, tmp_path):
    """``SentenceTransformer(path)`` loads a quantized checkpoint and encodes as squeeze does."""
    st = pytest.importorskip("sentence_transformers")
    original = tiny_embedders["bert"]
    texts = ["a w1 b", "b w2 w3 a", "w4 a b w5 w6 w7"]
    expected = st.SentenceTransformer(str(original), device="cpu").encode(texts)
    for dtype in ("bf16", "fp16"):
        out = tmp_path / dtype
        invoke("quantize", original, "-o", out, "--dtype", dtype)
        got = st.SentenceTransformer(str(out), device="cpu").encode(texts)
        cosine = (got * expected).sum(-1) / np.linalg.norm(got, axis=-1)
        assert got.shape == expected.shape and cosine.min() > 0.999


def test_gpt2_4bit_widths_are_refused_in_one_line(tiny_embedders, tmp_path):
    """GPT-2 keeps its projections in Conv1D, which bitsandbytes replaces too: a width its 4-bit
    blocks cannot split is refused before any work (it crashed inside the quantizer)."""
    result = invoke("quantize", tiny_embedders["gpt2"], "-o", tmp_path / "q", "--dtype", "int4",
                    "--backend", "bitsandbytes")  # fmt: skip
    assert result.exit_code == 4, result.stderr
    assert "4-bit bitsandbytes needs widths divisible by 64" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "q").exists()


def test_static_int8_of_a_model_without_matmul_weights(tiny_embedders, order_csv, tmp_path):
    """A GPT-2 embedder's unfused graph has its projections as Gemm and no weighted MatMul (no
    head): the outlier scan has nothing to probe (it read every output and crashed), and its
    Gemms are scanned like MatMuls."""
    from squeeze.methods.quantize.outliers import outlier_matmuls

    export = tmp_path / "fp32"
    invoke("export", tiny_embedders["gpt2"], "-o", export)
    feeds = [{"input_ids": np.array([[5, 6, 7]]), "attention_mask": np.ones((1, 3), np.int64)}]
    assert outlier_matmuls(export / "model.onnx", feeds, 0.001)  # Gemm inputs are scanned
    out = tmp_path / "static"
    result = invoke("quantize", tiny_embedders["gpt2"], "-o", out, "--static", "-d", order_csv)
    assert result.exit_code == 0, result.stderr


def test_auto_judges_embedders_by_fidelity_on_unlabelled_text(tiny_embedders, order_csv, tmp_path):
    """Without labels the primary metric is fidelity: every candidate is scored against the
    input's embeddings, its drop is in fidelity points, its agreement is a mean cosine, and the
    fidelity floor judges it (tests/unit/test_quantize.py: the floor decides the winner)."""
    texts = tmp_path / "texts.csv"
    texts.write_text("text\n" + "\n".join(
        line.rsplit(",", 1)[0] for line in order_csv.read_text().splitlines()[1:400]
    ) + "\n")  # fmt: skip
    summary = as_json(
        "quantize", tiny_embedders["bert"], "-o", tmp_path / "auto", "--backend", "auto",
        "-d", texts, "--min-fidelity", "0.999", "--max-length", "16",
    )  # fmt: skip
    assert summary["auto"]["gated"] and summary["min_fidelity"] == 0.999
    assert any("fastest within the fidelity floor" in n for n in summary["notes"])
    built = [c for c in summary["auto"]["candidates"] if "skipped" not in c]
    assert {"onnxruntime dynamic", "onnxruntime static", "torch torchao"} <= {
        c["label"] for c in built
    }
    for candidate in built:
        fidelity = candidate["metric"]["metrics"]["fidelity"]
        assert fidelity >= FLOOR["int8"] and candidate["agreement"]["mean_cosine"] is not None
        assert candidate["drop"] == pytest.approx((1 - fidelity) * 100)
        assert candidate["passed"]  # the floor judged each candidate's fidelity
    (winner,) = [c for c in built if c["chosen"]]
    assert summary["metric_after"]["metrics"] == winner["metric"]["metrics"]
    check_embedder(tmp_path / "auto", tiny_embedders["bert"], texts, FLOOR["int8"])


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="slow (all-MiniLM-L6-v2, 23M parameters): SQUEEZE_SLOW=1")
def test_the_real_minilm_quantized_with_defaults_keeps_its_embeddings(tmp_path):
    """The issue's "done when": ``squeeze quantize <all-MiniLM-L6-v2 as shipped> -o out`` with no
    other flags keeps a mean cosine >= 0.99 to the fp32 embeddings of held-out movie reviews."""
    from squeeze.data import assets

    # Asked for with SQUEEZE_SLOW=1: an asset that cannot be had fails the test, not skips it.
    model = assets.demo_model_path()
    reviews = assets.movie_reviews(REPO / ".cache" / "demo")
    out = tmp_path / "int8"
    summary = as_json("quantize", model, "-o", out)
    assert summary["backend"] == "onnxruntime" and summary["written"]
    assert summary["after"]["bytes_on_disk"] < summary["before"]["bytes_on_disk"] / 3
    scored = as_json(
        "eval", out, "--data", reviews, "--text-column", "text", "--label-column", "score",
        "--label-map", "sign", "--split", "test", "--reference", model,
    )  # fmt: skip
    assert scored["n_samples"] > 1000 and scored["metrics"]["fidelity"] >= 0.99
