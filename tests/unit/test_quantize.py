"""Agreement figures and the quantization config's choices, by hand."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from squeeze.core.errors import ConfigError, UnsupportedError
from squeeze.methods.quantize.method import QuantizeConfig
from squeeze.methods.quantize.validate import agreement


def test_agreement_by_hand():
    logits = {"a": np.array([[2.0, 1.0], [0.0, 3.0]]), "b": np.array([[1.0, 2.5], [0.0, 3.5]])}
    batch = {"input_ids": np.zeros((2, 3), dtype=np.int64)}
    result = agreement([logits["a"]], lambda _: logits["b"], [batch], token_level=False)
    assert result.max_abs_diff == 1.5 and result.mean_abs_diff == pytest.approx(3.0 / 4)
    assert result.top1_agreement == 0.5 and result.n_predictions == 2


def test_token_level_agreement_ignores_padding():
    reference = np.zeros((1, 3, 4))
    reference[..., 0] = 1.0
    candidate = reference.copy()
    candidate[0, 2] = [0.0, 9.0, 0.0, 0.0]  # differs only at a padded position
    batch = {"attention_mask": np.array([[1, 1, 0]])}
    result = agreement([reference], lambda _: candidate, [batch], token_level=True)
    assert result.max_abs_diff == 0.0 and result.top1_agreement == 1.0
    assert result.n_predictions == 2


def test_int4_options_name_nothing_outside_int4_onnxruntime():
    """A sweep cache key must not split one int8 artifact by options int8 ignores."""
    assert QuantizeConfig(block_size=64).canonical() == QuantizeConfig().canonical()
    wide = QuantizeConfig(dtype="int4", backend="onnxruntime", block_size=64)
    assert wide.canonical().block_size == 64
    # OpenVINO reads the block size (its group size) and symmetry, not ORT's accuracy level.
    grouped = QuantizeConfig(dtype="int4", backend="openvino", block_size=64, accuracy_level=0)
    assert grouped.canonical() == replace(grouped, accuracy_level=4)
    assert QuantizeConfig(dtype="int4", backend="bitsandbytes", block_size=64).canonical() == (
        QuantizeConfig(dtype="int4", backend="bitsandbytes").canonical()
    )


@pytest.mark.parametrize(
    ("pin", "defaults"),
    [
        (None, {"int8": "auto", "int4": "auto", "bf16": "torch", "fp16": "torch"}),
        ("onnxruntime", {"int8": "onnxruntime", "int4": "onnxruntime", "bf16": "torch"}),
        ("bitsandbytes", {"int8": "bitsandbytes", "int4": "bitsandbytes", "fp16": "torch"}),
    ],
)
def test_default_backends(pin, defaults, monkeypatch):
    """int8 and int4 default to the measured choice; $SQUEEZE_BACKEND pins the dtypes it has."""
    if pin is None:
        monkeypatch.delenv("SQUEEZE_BACKEND", raising=False)
    else:
        monkeypatch.setenv("SQUEEZE_BACKEND", pin)
    for dtype, backend in defaults.items():
        assert QuantizeConfig(dtype=dtype).chosen_backend.name == backend


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"dtype": "int3"}, ConfigError),
        ({"dtype": "int4", "backend": "onnxruntime", "block_size": 48}, ConfigError),
        ({"dtype": "int4", "backend": "onnxruntime", "accuracy_level": 5}, ConfigError),
        ({"dtype": "int4", "backend": "onnxruntime", "static": True}, ConfigError),
        ({"dtype": "fp16", "backend": "bitsandbytes"}, UnsupportedError),
        ({"dtype": "int8", "bnb_4bit_type": "nf8"}, ConfigError),
        ({"dtype": "fp16", "backend": "onnxruntime"}, UnsupportedError),
        ({"dtype": "int8", "calibration_samples": 0}, ConfigError),
    ],
)
def test_bad_requests(kwargs, error):
    with pytest.raises(error):
        QuantizeConfig(**kwargs)


def test_auto_keeps_the_fastest_candidate_above_an_embedders_fidelity_floor():
    from types import SimpleNamespace

    from squeeze.core.types import Evaluation, Metric
    from squeeze.methods.quantize.auto import Candidate, choose

    def built(label, ms, fidelity):
        metrics = (Metric("knn_accuracy", 0.8, 10), Metric("fidelity", fidelity, 10))
        return Candidate(
            label, QuantizeConfig(), latency=SimpleNamespace(p50_ms=ms),
            metric=Evaluation(metrics, 10, 0.1), drop=0.0,
        )  # fmt: skip

    def candidates():
        return [built("fast", 1.0, 0.98), built("mid", 2.0, 0.995), built("slow", 3.0, 0.9999)]

    assert choose(candidates(), None, "point").label == "fast"  # no gate: the fastest
    floor = candidates()
    assert choose(floor, None, "point", min_fidelity=0.99).label == "mid"
    assert [c.passed for c in floor] == [False, True, True]
    # Beside a drop allowance both must hold.
    assert choose(candidates(), 1.0, "point", min_fidelity=0.999).label == "slow"
    # None keeps the floor: the closest to it is chosen, and the step's gate refuses it.
    missed = candidates()
    assert choose(missed, None, "point", min_fidelity=0.99999).label == "slow"
    assert not any(c.passed for c in missed)


@pytest.mark.parametrize(
    ("chosen_ms", "input_ms", "says"), [(15.3, 9.75, True), (4.9, 16.4, False)]
)
def test_a_choice_slower_than_its_input_says_so(chosen_ms, input_ms, says):
    from types import SimpleNamespace

    from squeeze.methods.quantize.auto import Candidate, slower_note

    winner = Candidate("bitsandbytes int4", QuantizeConfig(dtype="int4", backend="bitsandbytes"),
                       latency=SimpleNamespace(p50_ms=chosen_ms))  # fmt: skip
    note = slower_note(winner, SimpleNamespace(p50_ms=input_ms))
    assert (note is not None) == says
    if says:
        assert note == (
            "bitsandbytes int4 is slower than the input here (15.30 ms against 9.75 ms): on this "
            "machine int4 saves size, not time"
        )


def test_openvino_and_nncf_decide_on_telemetry_while_told_it_is_ci(monkeypatch):
    """Their telemetry's sending process can hang an offline machine at exit: squeeze sets it
    up under CI=true (both decline there), and leaves the environment as it found it."""
    import os

    from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker

    from squeeze.model.runtime import no_telemetry

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("NNCF_CI", "mine")
    with no_telemetry():
        assert OptInChecker().check(False, disable_in_ci=True) == ConsentCheckResult.DECLINED
        assert os.environ["NNCF_CI"] == "1"
    assert "CI" not in os.environ and os.environ["NNCF_CI"] == "mine"


def test_auto_breaks_a_tie_within_noise_by_the_listed_order():
    """ONNX Runtime's dynamic and OpenVINO's weight-only int8 of the demo model, 38.2 and 38.0 ms
    on an AVX2 EPYC: either came out faster from one run to the next. Within noise the one
    listed first wins, every time; a candidate faster beyond the noise still wins."""
    from types import SimpleNamespace

    from squeeze.methods.quantize.auto import Candidate, choose, speed_order

    def built(label, ms, sd=0.1):
        return Candidate(label, QuantizeConfig(), latency=SimpleNamespace(p50_ms=ms, stdev_ms=sd))

    first, second = (
        built("onnxruntime dynamic", 38.2, 0.7),
        built("openvino weight-only", 38.0, 1.0),
    )
    assert choose([first, second], None, "point").label == "onnxruntime dynamic"
    assert choose([built("a", 10.15), built("b", 10.0)], None, "point").label == "a"  # 1.5%
    assert choose([built("a", 10.5), built("b", 10.0)], None, "point").label == "b"  # 5%
    order = speed_order([built("c", 30.0), built("a", 10.1), built("b", 10.0)])
    assert [c.label for c in order] == ["a", "b", "c"]
