"""Building for another machine: `squeeze bench --fingerprint` there, `quantize --target` here.

The default backend times its candidates on the machine it runs on; a model built on a CI
runner for an edge box is chosen by the box's instruction set instead (rules in
``squeeze.methods.quantize.target``), and wherever the output runs on other flags than it was
chosen for, bench and eval say so.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app
from squeeze.measure.machine import fingerprint, read_fingerprint
from squeeze.methods.quantize.target import rule_for

runner = CliRunner()


@pytest.fixture(autouse=True)
def _vnni_here(monkeypatch):
    """This machine, as these tests see it, has VNNI, so the AVX2-only EPYC they target is
    another machine on whichever CPU runs them (on an AVX2-only runner a target with this
    machine's flags is timed here, by design, and no rule would be used)."""
    from squeeze.measure import machine

    model, flags = machine._cpuinfo()
    monkeypatch.setattr(machine, "_cpuinfo", lambda: (model, flags | {"avx512f", "avx512_vnni"}))


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(
    ("isa", "dtype", "first", "why"),
    [
        (["avx2", "avx512f", "avx512_vnni"], "int8", "openvino static", "VNNI/AMX"),
        (["avx2", "avx_vnni", "amx_int8", "amx_bf16"], "int8", "openvino static+bf16", "bf16"),
        (["avx2"], "int8", "onnxruntime dynamic", "AVX2 without VNNI"),
        ([], "int8", "onnxruntime dynamic", "no AVX2"),
        (["avx2", "avx512_vnni"], "int4", "openvino int4", "VNNI/AMX"),
        (["avx2"], "int4", "onnxruntime int4", "no VNNI"),
        (["avx512_bf16"], "bf16", "openvino bf16", "bf16 kernels"),
        (["avx2"], "bf16", "torch bf16", "no bf16"),
    ],
)
def test_rules_by_instruction_set(isa, dtype, first, why):
    rule = rule_for(isa, dtype)
    assert rule.order[0] == first and why in rule.why
    # bf16 stands in for int8 only where the target computes it.
    assert ("openvino bf16" in rule.order) == (dtype == "bf16" or "amx_bf16" in isa)


def epyc(folder):
    """A fingerprint of an AVX2-only machine, as `bench --fingerprint` writes it there."""
    path = folder / "epyc.json"
    assert invoke("bench", "--fingerprint", path).exit_code == 0
    found = read_fingerprint(path)
    path.write_text(json.dumps({**found, "cpu": "AMD EPYC 7B12", "isa": ["avx2"]}))
    return path


def test_quantize_for_a_target_machine_and_run_it_elsewhere(tiny_classifiers, order_csv, tmp_path):
    model, out = tiny_classifiers["bert"], tmp_path / "q"
    result = invoke("quantize", model, "-o", out, "--backend", "auto", "--target", epyc(tmp_path),
                    "--max-length", "16", "--json")  # fmt: skip
    assert result.exit_code == 0, (result.stderr, result.exception)
    summary = json.loads(result.stdout)
    auto = summary["auto"]
    assert auto["chosen"] == "onnxruntime dynamic"
    assert auto["chosen_for"]["isa"] == ["avx2"] and auto["chosen_for"]["by"].startswith("rule")
    skipped = {c["label"]: c["skipped"] for c in auto["candidates"] if "skipped" in c}
    assert skipped["onnxruntime static"] == "not built: the target's rule ranks onnxruntime " \
        "dynamic first"  # fmt: skip
    assert "target CPU has no bf16" in skipped["openvino bf16"]
    assert any("for the target machine, AMD EPYC 7B12 (avx2), by rule" in n
               for n in summary["notes"])  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["chosen_for"]["cpu"] == "AMD EPYC 7B12"
    # Run here (other flags than it was chosen for), bench and eval say so.
    if set(fingerprint()["isa"]) != {"avx2"}:
        bench = invoke("bench", out, "--seq", "16", "--runs", "2", "--warmup", "0", "--rounds",
                       "1", "--json")  # fmt: skip
        scored = invoke("eval", out, "-d", order_csv, "--max-samples", "50", "--json")
        for ran in (bench, scored):
            assert ran.exit_code == 0, ran.stderr
            assert any(
                "chosen for AMD EPYC 7B12 (avx2)" in n for n in json.loads(ran.stdout)["notes"]
            )


def test_a_fingerprint_never_replaces_another_file(tmp_path):
    kept = tmp_path / "notes.json"
    kept.write_text('{"mine": 1}')
    result = invoke("bench", "--fingerprint", kept)
    assert result.exit_code == 2 and "is not a fingerprint" in result.stderr
    assert kept.read_text() == '{"mine": 1}'


@pytest.mark.parametrize(
    ("target", "extra", "phrase"),
    [
        ("missing.json", ("--backend", "auto"), "cannot be read"),
        ("model/config.json", ("--backend", "auto"), "is not a machine fingerprint"),
        ("epyc", ("--backend", "onnxruntime"), "onnxruntime is pinned"),
    ],
)
def test_bad_targets_are_refused_before_any_work(target, extra, phrase, tiny_classifiers, tmp_path):
    model = tiny_classifiers["bert"]
    path = epyc(tmp_path) if target == "epyc" else (model / "config.json" if "/" in target
                                                    else tmp_path / target)  # fmt: skip
    result = invoke("quantize", model, "-o", tmp_path / "q", "--target", path, *extra)
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert phrase in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "q").exists()


def test_a_recipe_builds_for_its_target(tiny_classifiers, tmp_path):
    """`target:` in a recipe: its measured quantization chooses by the target's rules."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model: {tiny_classifiers['bert']}\ntarget: {epyc(tmp_path)}\nmax_length: 16\n"
        "bench: {batch: 1, runs: 2, rounds: 1, warmup: 0}\nvariants:\n  - quantize(int8, auto)\n"
    )
    out = tmp_path / "out"
    result = invoke("run", recipe, "-o", out, "--cache-dir", tmp_path / "cache", "--quiet")
    assert result.exit_code == 0, (result.stderr, result.exception)
    notes = json.loads((out / "results.json").read_text())["variants"][1]["notes"]
    assert any("for the target machine, AMD EPYC 7B12 (avx2), by rule" in n for n in notes)
