"""A new method or quantization backend is one module: a config plus a registered handler.

These tests register both from here, touching no other file of squeeze, and use them the way a
user would: a recipe step, ``run_step``, ``squeeze quantize --backend``. The registries are
copied per test so nothing leaks into other tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from typer.testing import CliRunner

from squeeze.cli.main import app
from squeeze.core.config import StepConfig, param
from squeeze.core.errors import ConfigError, Problem, UnsupportedError
from squeeze.core.types import StepResult
from squeeze.engine import registry
from squeeze.engine.registry import Backend, register, register_backend
from squeeze.engine.runner import run_step
from squeeze.engine.step import StepOptions
from squeeze.plan.steps import parse_chain


@pytest.fixture
def own_registries(monkeypatch):
    registry.methods()
    registry.backends()
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    monkeypatch.setattr(registry, "_BACKENDS", dict(registry._BACKENDS))


@dataclass(frozen=True, kw_only=True)
class ShrinkHeadConfig(StepConfig):
    """Scale the classifier's weights (a stand-in for any new transformation)."""

    factor: float = param(0.5, help="Multiply the task head's weights by this.")

    def problems(self) -> list[Problem]:
        return [] if 0 < self.factor <= 1 else [Problem("{factor} must be in (0, 1]")]


def _shrink_head(loaded, config, ctx):
    head = loaded.model.get_output_embeddings() or loaded.model.classifier
    with torch.no_grad():
        head.weight.mul_(config.factor)
    return StepResult(model=loaded, details={"scaled": config.factor})


def test_a_method_registered_from_one_module_is_a_recipe_step_and_runs(
    own_registries, tiny_classifiers, tmp_path
):
    register(ShrinkHeadConfig, name="shrink_head", help="scale the task head", summary="s.json")(
        _shrink_head
    )
    (call,) = parse_chain("shrink_head(factor=0.25)")
    assert call.canonical() == "shrink_head(factor=0.25)"
    with pytest.raises(ConfigError, match=r"shrink_head\(\): factor must be in \(0, 1\]"):
        parse_chain("shrink_head(factor=2)", "variants[1]")
    summary = run_step(tiny_classifiers["bert"], call.config, tmp_path / "out", StepOptions())
    written = json.loads((tmp_path / "out" / "s.json").read_text())
    assert written["method"] == "shrink_head" and written["scaled"] == 0.25
    assert summary.written and (tmp_path / "out" / "model.safetensors").is_file()


def _halfcast(loaded, config, ctx, agree):
    from squeeze.model.runtime import torch_forward

    loaded.model.half()
    return StepResult(model=loaded), torch_forward(loaded.model)


def test_a_backend_registered_from_one_module_serves_the_command_and_recipes(
    own_registries, tiny_classifiers, tmp_path
):
    register_backend(
        Backend(
            name="halfcast",
            dtypes=("fp16",),
            default_for=(),
            produces="checkpoint",
            quantize=_halfcast,
            help="cast to fp16",
        )
    )
    (call,) = parse_chain("quantize(fp16, halfcast)")
    assert call.config.chosen_backend.name == "halfcast"
    result = CliRunner().invoke(app, [
        "quantize", str(tiny_classifiers["bert"]), "-o", str(tmp_path / "q"), "--dtype", "fp16",
        "--backend", "halfcast", "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["backend"] == "halfcast" and summary["agreement"]["top1_agreement"] >= 0.75
    # The default stays the default, and a combination the backend lacks is refused by name.
    assert parse_chain("quantize(fp16)")[0].config.chosen_backend.name == "torch"
    with pytest.raises(UnsupportedError, match="backend halfcast has no int8"):
        parse_chain("quantize(int8, halfcast)")


@pytest.mark.parametrize(
    ("needs", "phrase"),
    [
        ({"cpu_feature": "no_such_isa_flag"}, "needs a CPU with no_such_isa_flag"),
        (
            {"modules": ("no_such_package_xyz",), "extra": "xyz"},
            "needs no_such_package_xyz: pip install 'squeeze[xyz]'",
        ),
        ({"needs_gpu": True}, "runs on CUDA only"),
    ],
)
def test_what_a_backend_needs_is_checked_before_it_runs(
    needs, phrase, own_registries, tiny_classifiers, tmp_path
):
    """Exit 4 with the reason, and nothing written, when the machine lacks what it needs."""
    register_backend(
        Backend(
            name="needy",
            dtypes=("fp16",),
            default_for=(),
            produces="checkpoint",
            quantize=_halfcast,
            help="needs something",
            **needs,
        )
    )
    result = CliRunner().invoke(app, [
        "quantize", str(tiny_classifiers["bert"]), "-o", str(tmp_path / "q"), "--dtype", "fp16",
        "--backend", "needy",
    ])  # fmt: skip
    assert result.exit_code == 4, (result.stderr, result.exception)
    assert phrase in result.stderr and not (tmp_path / "q").exists()
