"""The default int8 backend is the measured choice, remembered per machine and model shape.

The rest of the suite pins ONNX Runtime ($SQUEEZE_BACKEND, tests/conftest.py); these tests
unset the pin and give each test its own squeeze cache, as a user's first run would have.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app
from squeeze.data.calibration import builtin_calibration, builtin_held_out
from squeeze.methods.quantize.method import QuantizeConfig

runner = CliRunner()


@pytest.fixture
def measured(monkeypatch, tmp_path):
    """No pinned backend; a fresh squeeze cache of the test's own."""
    monkeypatch.delenv("SQUEEZE_BACKEND", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("SQUEEZE_CACHE", str(cache))
    return cache


def quantize(model, out, *args):
    result = runner.invoke(app, ["quantize", str(model), "-o", str(out), *map(str, args), "--json"])
    assert result.exit_code == 0, (result.stderr, result.exception)
    return json.loads(result.stdout)


def choice(summary):
    """The note that says what was chosen."""
    return next(n for n in summary["notes"] if " chose " in n)


def built(summary):
    return [c for c in summary["auto"]["candidates"] if "skipped" not in c]


def test_default_measures_then_remembers(measured, trained_classifier, order_csv, tmp_path):
    data = ("-d", order_csv, "--max-length", "32", "--max-accuracy-drop", "5")
    first = quantize(trained_classifier, tmp_path / "a", *data)
    assert first["backend"] == "auto" and first["backend_default"]
    assert first["auto"]["remembered"] is None
    assert choice(first).startswith("the default backend (measured) chose")
    labels = {c["label"] for c in built(first)}
    # Every int8 path squeeze has is a candidate, static ones included.
    assert {"onnxruntime dynamic", "onnxruntime static", "openvino weight-only",
            "openvino static"} <= labels  # fmt: skip
    (decision,) = (measured / ".decisions").glob("*.json")
    ranking = [t["label"] for t in json.loads(decision.read_text())["ranking"]]
    assert sorted(ranking) == sorted(labels)

    again = quantize(trained_classifier, tmp_path / "b", *data)
    assert again["auto"]["remembered"] is not None and "remembered from" in choice(again)
    (winner,) = built(again)  # the remembered fastest passed the gate: built alone
    assert winner["chosen"] and winner["label"] == ranking[0]
    assert winner["metric"] is not None  # accuracy is measured every time
    not_built = [c for c in again["auto"]["candidates"] if "not built" in c.get("skipped", "")]
    assert len(not_built) == len(ranking) - 1 and all("p50_ms" in c for c in not_built)


def test_a_decision_that_cannot_be_read_is_measured_again(
    measured, two_candidates, tiny_classifiers, tmp_path
):
    model = tiny_classifiers["bert"]
    quantize(model, tmp_path / "a", "--max-length", "16")
    (decision,) = (measured / ".decisions").glob("*.json")
    decision.write_text("{half a file")
    again = quantize(model, tmp_path / "b", "--max-length", "16")
    assert again["auto"]["remembered"] is None and len(built(again)) > 1
    assert json.loads(decision.read_text())["ranking"]
    # --backend auto measures again even where a decision is remembered.
    fresh = quantize(model, tmp_path / "c", "--max-length", "16", "--backend", "auto")
    assert fresh["auto"]["remembered"] is None and len(built(fresh)) == 2
    assert choice(fresh).startswith("backend auto chose")


def test_another_shape_is_another_decision(measured, two_candidates, tiny_classifiers, tmp_path):
    quantize(tiny_classifiers["bert"], tmp_path / "a", "--max-length", "16")
    other = quantize(tiny_classifiers["bert"], tmp_path / "b", "--max-length", "32")
    assert other["auto"]["remembered"] is None
    assert len(list((measured / ".decisions").glob("*.json"))) == 2


def test_a_pin_is_used_and_a_bad_pin_refused(monkeypatch, tiny_classifiers, tmp_path):
    monkeypatch.setenv("SQUEEZE_BACKEND", "openvino")
    summary = quantize(tiny_classifiers["bert"], tmp_path / "a", "--max-length", "16")
    assert summary["backend"] == "openvino" and "auto" not in summary
    monkeypatch.setenv("SQUEEZE_BACKEND", "onnx-runtime")
    result = runner.invoke(app, ["quantize", str(tiny_classifiers["bert"]), "-o",
                                 str(tmp_path / "b")])  # fmt: skip
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert "$SQUEEZE_BACKEND is 'onnx-runtime', which is not a backend" in result.stderr
    assert not (tmp_path / "b").exists()


def test_a_foreign_cache_is_refused_before_any_work(measured, tiny_classifiers, tmp_path):
    measured.mkdir()
    (measured / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["quantize", str(tiny_classifiers["bert"]), "-o",
                                 str(tmp_path / "a")])  # fmt: skip
    assert result.exit_code == 2 and "is not a squeeze cache" in result.stderr
    assert [p.name for p in measured.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_static_without_data_calibrates_on_builtin_text(backend, tiny_classifiers, tmp_path):
    summary = quantize(tiny_classifiers["bert"], tmp_path / "s", "--backend", backend,
                       "--static", "--max-length", "32")  # fmt: skip
    assert any("squeeze's built-in calibration text" in n for n in summary["notes"])


def test_builtin_text_is_varied_and_calibration_never_sees_the_held_out_half():
    calibration = [e.text for e in builtin_calibration().examples]
    held_out = [e.text for e in builtin_held_out().examples]
    texts = calibration + held_out
    assert len(calibration) == len(held_out) == 256 and len(set(texts)) == 512
    for half in (calibration, held_out):
        lengths = sorted(len(t.split()) for t in half)
        assert lengths[25] <= 8 and lengths[-25] >= 50  # short and long texts both
        assert sum(not t.isascii() for t in half) >= 15  # other scripts and languages
    sample = [e.text for e in builtin_calibration(16).examples]
    assert len(sample) == 16 and sample[0] == calibration[0] and sample[1] == calibration[16]


@pytest.mark.parametrize(
    ("pin", "backend", "canonical", "resolved"),
    [
        (None, None, None, "auto"),  # the measured default
        (None, "auto", None, "auto"),  # naming the default asks for the same
        (None, "onnxruntime", "onnxruntime", None),
        ("onnxruntime", None, None, "onnxruntime"),  # a name stays; its cache key says the pin
        ("onnxruntime", "onnxruntime", None, "onnxruntime"),
        ("onnxruntime", "auto", "auto", None),
    ],
)
def test_canonical_backend(pin, backend, canonical, resolved, monkeypatch):
    if pin is None:
        monkeypatch.delenv("SQUEEZE_BACKEND", raising=False)
    else:
        monkeypatch.setenv("SQUEEZE_BACKEND", pin)
    config = QuantizeConfig(dtype="int8", backend=backend).canonical()
    assert config.backend == canonical
    assert config.environment() == ({"backend": resolved} if resolved else {})
