"""``bench --backends``, PyTorch precisions and torch.compile, and the GPU paths' CPU side: what
is refused here and why, and the provider lists a GPU machine would get."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app
from squeeze.measure import backends as availability
from squeeze.model.runtime import ort_providers

runner = CliRunner()
FAST = ("--seq", "16", "--runs", "3", "--warmup", "1", "--rounds", "1")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_backends_lists_every_runtime_with_a_reason():
    result = invoke("bench", "--backends", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    found = {b["name"]: b for b in report["backends"]}
    assert found["torch cpu"]["available"] and found["onnxruntime cpu"]["available"]
    assert all(b["why"] for b in report["backends"])
    assert "isa" in report["machine"]
    text = invoke("bench", "--backends")
    assert text.exit_code == 0 and "onnxruntime tensorrt" in text.stdout
    assert "squeeze[gpu]" in text.stdout or found["onnxruntime tensorrt"]["available"]


def test_backends_say_why_not(monkeypatch):
    """No GPU, no onnxruntime-gpu, no torchao, a CPU without VNNI: each named."""
    monkeypatch.setattr(availability, "_gpu", lambda: None)
    monkeypatch.setattr(availability, "_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(availability, "cpu_flags", lambda: {"avx2"})
    real = availability.importlib.util.find_spec
    monkeypatch.setattr(
        availability.importlib.util, "find_spec",
        lambda name: None if name == "torchao" else real(name),
    )  # fmt: skip
    found = {a.name: a for a in availability.available_backends()}
    assert found["torch cuda"].why == "no CUDA device on this machine"
    assert "no CUDAExecutionProvider: pip install 'squeeze[gpu]'" in found["onnxruntime cuda"].why
    assert not found["torchao int8"].available
    assert "7-bit weights" in found["onnxruntime cpu"].why
    assert "emulated" in found["torch cpu"].why


def test_providers_a_gpu_machine_gets(monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(
        ort, "get_available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )  # fmt: skip
    assert ort_providers("cuda:1")[0] == ("CUDAExecutionProvider", {"device_id": 1})
    trt, cuda, cpu = ort_providers("cuda", tensorrt=True, int8=True)
    assert trt == (
        "TensorrtExecutionProvider",
        {"device_id": 0, "trt_fp16_enable": True, "trt_int8_enable": True},
    )
    assert cuda[0] == "CUDAExecutionProvider" and cpu == "CPUExecutionProvider"


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_torch_half_precisions_are_timed(precision, tiny_classifiers):
    result = invoke(
        "bench", tiny_classifiers["bert"], "--runtime", "torch", "--precision", precision, *FAST,
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (bench,) = json.loads(result.stdout)["results"]
    assert bench["runtime"] == f"torch {precision}"
    assert bench["settings"]["precision"] == precision
    assert bench["latency"][0]["p50_ms"] > 0


def test_torch_compile_on_cpu(tiny_classifiers):
    result = invoke("bench", tiny_classifiers["bert"], "--compile", *FAST, "--json")
    assert result.exit_code == 0, result.stderr
    (bench,) = json.loads(result.stdout)["results"]
    assert bench["runtime"] == "torch compiled" and bench["settings"]["compile"]


@pytest.mark.parametrize(
    ("args", "code", "phrase"),
    [
        (("--precision", "tf32"), 2, "--precision tf32 is a CUDA matmul mode; pass --device cuda"),
        (("--precision", "int3"), 2, "--precision must be one of fp32, tf32, fp16, bf16"),
        (("--runtime", "tensorrt"), 4, "TensorRT runs on CUDA; pass --device cuda"),
        (("--device", "cuda"), 4, "no CUDA device on this machine"),
    ],
)
def test_gpu_only_settings_are_refused_on_the_cpu(args, code, phrase, tiny_classifiers):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = invoke("bench", tiny_classifiers["bert"], *args, *FAST)
    assert result.exit_code == code, (result.stderr, result.exception)
    assert phrase in result.stderr


def test_bench_needs_a_model_or_backends():
    result = invoke("bench")
    assert result.exit_code == 2 and "--backends" in result.stderr


def test_torch_targets_run_sdpa_attention(tiny_classifiers):
    """What bench times on PyTorch is transformers' SDPA attention (fused kernels on CUDA), not
    the eager attention the ONNX export traces."""
    from squeeze.model.checkpoint import load

    for family in ("bert", "llama"):
        assert load(tiny_classifiers[family]).model.config._attn_implementation == "sdpa"


def test_cuda_peak_is_the_models_own(monkeypatch, tiny_classifiers):
    """Weights plus what its runs allocated above the memory resident before its block."""
    import torch

    from squeeze.measure.bench import torch_target
    from squeeze.model.checkpoint import load

    loaded = load(tiny_classifiers["bert"])
    weights = sum(p.numel() * p.element_size() for p in loaded.model.parameters()) + sum(
        b.numel() * b.element_size() for b in loaded.model.buffers()
    )
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 10_000)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 10_500)
    target = torch_target("bert", loaded, "cuda")
    target.reset_peak()
    assert target.peak_memory() == weights + 500
