"""`squeeze info` reads its facts from the files: the same facts loading the model gives, on
every family, after pruning and quantization, and on damaged files one line and exit 3."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from squeeze.cli.main import app
from squeeze.core.types import Task
from squeeze.model.checkpoint import load, save
from squeeze.model.info import describe
from squeeze.model.tiny import FAMILIES, build_tiny

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def info_json(*args) -> dict:
    result = invoke("info", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def assert_same_facts(folder: Path, **load_options) -> dict:
    """info from files agrees with describe() of the loaded model on every fact both report."""
    from_files = info_json(folder)
    loaded = describe(load(folder, **load_options))
    shared = set(from_files) & set(loaded)
    assert shared >= set(loaded) - {"notes"}
    assert {k: from_files[k] for k in shared} == {k: loaded[k] for k in shared}
    return from_files


def assert_one_line_error(result, code: int, phrase: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert phrase in lines[0] and "Traceback" not in result.output


@pytest.mark.parametrize("family", FAMILIES)
def test_facts_from_files_match_loading(family, tiny_classifiers, tiny_lms):
    facts = assert_same_facts(tiny_classifiers[family])
    assert facts["format"] == "safetensors" and facts["weights_dtype"] == "float32"
    assert_same_facts(tiny_lms[family])


def test_every_other_tiny_family_matches_loading(tiny_classifiers):
    """Families beyond the core five, with a spec or without (whatever conftest builds)."""
    for family, folder in tiny_classifiers.items():
        if family not in FAMILIES:
            assert_same_facts(folder)


def test_task_override_changes_what_is_reported(tiny_lms):
    facts = info_json(tiny_lms["gpt2"], "--task", "base")
    loaded = describe(load(tiny_lms["gpt2"], task=Task.BASE))
    assert (facts["task"], facts["architecture"]) == ("base", loaded["architecture"])
    assert facts["architecture"] == "GPT2Model" and facts["labels"] is None


def test_magnitude_pruned_counts_its_zeros(tiny_classifiers, tmp_path):
    out = tmp_path / "sparse"
    args = ("prune", tiny_classifiers["bert"], "-o", out, "--method", "magnitude")
    result = invoke(*args, "--sparsity", "0.5", "--quiet")
    assert result.exit_code == 0, result.stderr
    facts = assert_same_facts(out)
    assert facts["params_nonzero"] < 0.8 * facts["params_total"]


def test_structured_pruned_reports_per_layer_shapes(tiny_classifiers, tmp_path):
    """Heads cut from one layer only: the config cannot say it, squeeze.json does."""
    from squeeze.model.arch import layer_list
    from squeeze.model.shapes import current_shapes, keep_heads

    loaded = load(tiny_classifiers["bert"])
    keep_heads(layer_list(loaded.model, loaded.spec)[0], loaded.spec, loaded.config, [0, 1])
    loaded.shapes = current_shapes(loaded.model, loaded.spec, loaded.config)
    out = save(loaded, tmp_path / "cut")
    facts = assert_same_facts(out)
    assert (facts["layers"], facts["heads"], facts["intermediate_size"]) == (2, [2, 4], 64)

    uniform = tmp_path / "uniform"
    args = ("prune", tiny_classifiers["llama"], "-o", uniform, "--method", "structured")
    result = invoke(*args, "--heads", "0.5", "--ffn", "0.5", "--layers", "1", "--quiet")
    assert result.exit_code == 0, result.stderr
    facts = assert_same_facts(uniform)
    assert (facts["layers"], facts["heads"], facts["kv_heads"]) == (1, 2, 1)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_negative_zero_counts_as_zero(dtype, tiny_classifiers, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(tiny_classifiers["bert"], tmp_path / "signed")
    weights = folder / "model.safetensors"
    state = {name: t.to(dtype) for name, t in load_file(weights).items()}
    target = "bert.encoder.layer.0.intermediate.dense.weight"
    state[target] = torch.full_like(state[target], -0.0)
    state[target][0, :5] = 1.0
    save_file(state, weights, metadata={"format": "pt"})
    expected = sum(int(torch.count_nonzero(t)) for t in state.values())
    facts = info_json(folder)
    assert facts["params_nonzero"] == expected
    assert facts["params_total"] - facts["params_nonzero"] >= state[target].numel() - 5
    assert facts["dtype"] == str(dtype).removeprefix("torch.")


def test_sharded_checkpoint(tiny_classifiers, tmp_path):
    from transformers import AutoModelForSequenceClassification

    folder = shutil.copytree(tiny_classifiers["gpt2"], tmp_path / "sharded")
    (folder / "model.safetensors").unlink()
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifiers["gpt2"])
    model.save_pretrained(folder, max_shard_size="40KB")
    assert (folder / "model.safetensors.index.json").is_file()
    assert len(list(folder.glob("*.safetensors"))) > 1
    assert_same_facts(folder)
    next(iter(sorted(folder.glob("model-*.safetensors")))).unlink()
    assert_one_line_error(invoke("info", folder), 3, "the checkpoint is incomplete")


@pytest.mark.parametrize(
    ("backend", "method"), [("torch", "torchao"), ("bitsandbytes", "bitsandbytes 8-bit")]
)
def test_quantized_checkpoint(backend, method, tiny_classifiers, tmp_path):
    out = tmp_path / "q"
    args = ("quantize", tiny_classifiers["bert"], "-o", out, "--dtype", "int8")
    result = invoke(*args, "--backend", backend, "--quiet")
    assert result.exit_code == 0, result.stderr
    facts = assert_same_facts(out)
    assert facts["quantization"] == method and "int8" in facts["weights_dtype"]


def test_export_folder(tiny_classifiers, tmp_path):
    from squeeze.artifact.sizes import onnx_size_stats

    out = tmp_path / "onnx"
    result = invoke("export", tiny_classifiers["distilbert"], "-o", out)
    assert result.exit_code == 0, result.stderr
    facts = info_json(out)
    stats = onnx_size_stats(out)
    assert facts["format"] == "onnx" and facts["family"] == "distilbert"
    assert (facts["params_total"], facts["bytes_on_disk"]) == (
        stats.params_total,
        stats.bytes_on_disk,
    )
    assert facts["inputs"] == ["input_ids", "attention_mask"] and facts["layers"] == 2
    assert info_json(out / "model.onnx")["params_nonzero"] == stats.params_nonzero


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _bad_json(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8:16] = b"{{{{{{{{"
    path.write_bytes(bytes(data))


def _huge_length(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:8] = (1 << 40).to_bytes(8, "little")
    path.write_bytes(bytes(data))


def _too_short(path: Path) -> None:
    path.write_bytes(b"\x01\x02")


@pytest.mark.parametrize("damage", [_truncated, _bad_json, _huge_length, _too_short])
def test_damaged_weights_are_one_line_exit_3(damage, tiny_classifiers, tmp_path):
    folder = shutil.copytree(tiny_classifiers["bert"], tmp_path / "broken")
    damage(folder / "model.safetensors")
    assert_one_line_error(invoke("info", folder), 3, "corrupt or truncated")


def test_bad_sources_are_one_line(tiny_classifiers, tmp_path):
    assert_one_line_error(invoke("info", tmp_path / "nope"), 3, "no such checkpoint folder")
    folder = shutil.copytree(tiny_classifiers["bert"], tmp_path / "bad-config")
    (folder / "config.json").write_text("{not json")
    assert_one_line_error(invoke("info", folder), 3, "unreadable config.json")
    # Hub ids are loaded as before (offline in tests: fails at once).
    assert_one_line_error(invoke("info", "some-org/some-model"), 3, "not available offline")


def test_pickled_weights_still_go_through_loading(tiny_classifiers, tmp_path):
    from safetensors.torch import load_file

    folder = shutil.copytree(tiny_classifiers["bert"], tmp_path / "pickled")
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    assert_one_line_error(invoke("info", folder), 3, "pickled")


def test_spec_of_a_family_with_a_spec(tiny_classifiers):
    result = invoke("info", tiny_classifiers["bert"], "--spec")
    assert result.exit_code == 0, result.stderr
    assert "ArchSpec(" in result.stdout and "squeeze's bert spec" in result.stdout
    found = info_json(tiny_classifiers["bert"], "--spec")["spec"]
    assert found["code"].startswith('ArchSpec(\n    "bert"') and found["family_spec"] == "bert"
    assert isinstance(found["differences"], list)


def test_spec_proposed_for_a_family_without_one(tmp_path):
    import transformers

    config = transformers.OPTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64,
        word_embed_proj_dim=32, max_position_embeddings=64, vocab_size=47, pad_token_id=0,
    )  # fmt: skip
    folder = build_tiny("opt", tmp_path / "opt", config=config)
    result = invoke("info", folder, "--spec")
    assert result.exit_code == 0, result.stderr
    assert 'ArchSpec(\n    "opt"' in result.stdout and "differences" not in result.stdout
    found = info_json(folder, "--spec")["spec"]
    assert found["family_spec"] is None and found["differences"] is None
    assert found["values"]["query"].endswith("q_proj") and found["values"]["decoder"]


def test_spec_discovery_failure_is_a_note(tiny_classifiers, monkeypatch):
    import squeeze.model.discover

    def nothing(model, config):
        raise ValueError("found no list of transformer blocks in the model")

    monkeypatch.setattr(squeeze.model.discover, "propose_spec", nothing)
    result = invoke("info", tiny_classifiers["gpt2"], "--spec")
    assert result.exit_code == 0, result.stderr
    assert "found nothing to propose: found no list of transformer blocks" in result.stdout


def test_info_does_not_import_torch(tiny_classifiers):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from squeeze.cli.main import app\n"
        f"result = CliRunner().invoke(app, ['info', {str(tiny_classifiers['llama'])!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('torch', 'transformers', 'onnx') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
