"""The nearest-value helper every closed set of values suggests through, the task names other
tools use, the live choices of registered backends, and the data checks that run before any
model loads."""

from __future__ import annotations

import pytest

from squeeze.core.errors import DataError, did_you_mean, nearest
from squeeze.core.types import TASK_ALIASES, Task

BACKENDS = ("onnxruntime", "torch", "bitsandbytes", "openvino", "auto")


@pytest.mark.parametrize(
    ("value", "choices", "expected"),
    [
        ("magnitud", ("magnitude", "structured"), "magnitude"),
        ("onnx", BACKENDS, "onnxruntime"),  # a prefix difflib alone finds too far
        ("fnn", ("heads", "ffn", "layers"), "ffn"),
        ("testing", ("train", "validation", "test"), "test"),
        ("Causal_LM", ("sequence-classification", "causal-lm"), "causal-lm"),
        ("int", ("int8", "int4", "fp16"), "int8"),  # two prefixes: the closest spelling
        ("prune", ("magnitude", "structured", "quantize"), None),
    ],
)
def test_nearest(value, choices, expected):
    assert nearest(value, choices) == expected
    assert did_you_mean(value, choices) == (f" (did you mean '{expected}'?)" if expected else "")


def test_every_task_alias_is_a_task():
    for alias, canonical in TASK_ALIASES.items():
        assert Task(alias) is Task(canonical)
    with pytest.raises(ValueError):
        Task("token-classification")


def test_backend_and_dtype_choices_follow_the_registry(monkeypatch):
    """QuantizeConfig's closed sets are metadata the CLI shows and validation names, read live
    from the registry: a backend registered later is valid too."""
    from dataclasses import fields, replace

    from squeeze.core.errors import ConfigError
    from squeeze.engine import registry
    from squeeze.methods.quantize.method import QuantizeConfig

    choices = {f.name: f.metadata["choices"] for f in fields(QuantizeConfig)}
    assert tuple(choices["backend"]) == tuple(registry.backends())
    assert tuple(choices["dtype"]) == ("int8", "int4", "fp16", "bf16")
    with pytest.raises(
        ConfigError, match=r"^backend must be one of .* \(did you mean 'torch'\?\)$"
    ):
        QuantizeConfig(backend="torhc")
    torch = registry.backends()["torch"]
    monkeypatch.setitem(registry._BACKENDS, "halfcast", replace(torch, name="halfcast"))
    assert "halfcast" in choices["backend"]
    assert QuantizeConfig(dtype="fp16", backend="halfcast").backend == "halfcast"


def test_the_runner_checks_data_before_the_model(tmp_path):
    """The one runner refuses a missing data file before loading (the model here is absent,
    so a later check would report the model instead)."""
    from squeeze.data.spec import DataSpec
    from squeeze.engine.runner import run_step
    from squeeze.engine.step import StepOptions
    from squeeze.methods.prune.magnitude import MagnitudePruneConfig

    (tmp_path / "reviews.csv").write_text("text,label\na,b\n")
    options = StepOptions(data=DataSpec(str(tmp_path / "review.csv")))
    with pytest.raises(DataError, match=r"no such file: .*review.csv \(did you mean 'reviews.csv'"):
        run_step(tmp_path / "no-model", MagnitudePruneConfig(sparsity=0.5), tmp_path / "o", options)
