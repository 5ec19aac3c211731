"""A command and a recipe step with the same parameters build the same artifact.

Both go through one runner and one handler per method, so the weights (safetensors) or the ONNX
initializers are equal to the bit, seeded, for every method, recovery and calibration included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app

DATA = ("--max-length", "32", "--max-samples", "400")
CASES = {
    "magnitude with recovery": (
        ("prune", "--method", "magnitude", "--sparsity", "0.5", "--finetune-steps", "4"),
        "magnitude(sparsity=0.5, finetune_steps=4)",
    ),
    "structured with recovery": (
        ("prune", "--method", "structured", "--heads", "0.5", "--ffn", "0.5",
         "--finetune-steps", "4"),
        "structured(heads=0.5, ffn=0.5, finetune_steps=4)",
    ),
    "distill": (
        ("distill", "--student-layers", "1", "--max-steps", "4", "--batch-size", "16",
         "--no-bench"),
        "distill(student_layers=1, max_steps=4, batch_size=16)",
    ),
    "quantize dynamic": (("quantize", "--dtype", "int8"), "quantize(int8)"),
    "quantize static": (
        ("quantize", "--dtype", "int8", "--static", "--calibration-samples", "32",
         "--calibration-method", "entropy"),
        "quantize(int8, static=true, calibration_samples=32, calibration_method=entropy)",
    ),
}  # fmt: skip


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.stderr, result.exception)
    return result


def _tensors(folder: Path) -> dict[str, np.ndarray]:
    """Every weight of an artifact: safetensors tensors, or ONNX initializers."""
    if (folder / "model.onnx").is_file():
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(folder / "model.onnx")).graph
        return {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    from safetensors.numpy import load_file

    tensors: dict[str, np.ndarray] = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


@pytest.mark.parametrize("case", sorted(CASES))
def test_command_and_recipe_step_give_the_same_artifact(
    case, trained_classifier, order_csv, tmp_path
):
    command, step = CASES[case]
    by_command = tmp_path / "command"
    invoke(command[0], trained_classifier, *command[1:], "-d", order_csv, *DATA, "-o",
           by_command, "--quiet")  # fmt: skip
    by_recipe = tmp_path / "recipe"
    invoke("run", "--model", trained_classifier, "-d", order_csv, *DATA, "--variant", step,
           "--select", "best-under-drop=100", "--runs", "2", "--cache-dir", tmp_path / "cache",
           "-o", by_recipe, "--quiet")  # fmt: skip
    expected, got = _tensors(by_command), _tensors(by_recipe / "selected")
    assert expected.keys() == got.keys() and expected
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
