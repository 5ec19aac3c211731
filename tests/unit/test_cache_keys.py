"""Cache keys: an artifact built by other library versions or on another device is never
reused, while the same build environment keeps finding its artifacts."""

from __future__ import annotations

from importlib import metadata

import pytest
import torch

from squeeze.plan import cache
from squeeze.plan.execute import ChainContext, chain_keys
from squeeze.plan.steps import parse_chain

CHAIN = parse_chain("magnitude(0.5) -> quantize(int8)")


@pytest.fixture(autouse=True)
def _fresh_versions():
    """library_versions() is read once per process: each test reads its own patched ones."""
    cache.library_versions.cache_clear()
    yield
    cache.library_versions.cache_clear()


def _keys(device="cpu"):
    ctx = ChainContext(model="m", data=None, calibration_data=None, max_length=32, device=device)
    return chain_keys(CHAIN, ctx, "root")


def _installed(monkeypatch, **versions):
    """Pretend these distributions are installed at these versions (None: not installed)."""
    real = metadata.version

    def version(name):
        wanted = versions.get(name.replace("-", "_"), "real")
        if wanted is None:
            raise metadata.PackageNotFoundError(name)
        return real(name) if wanted == "real" else wanted

    monkeypatch.setattr(metadata, "version", version)
    cache.library_versions.cache_clear()


@pytest.mark.parametrize("library", ["torch", "transformers", "onnxruntime", "openvino", "nncf"])
def test_a_library_upgrade_changes_every_key(monkeypatch, library):
    _installed(monkeypatch, **{library: "1.0.0"})
    before = _keys()
    assert _keys() == before  # stable while nothing changes
    _installed(monkeypatch, **{library: "1.0.1"})
    after = _keys()
    assert all(a != b for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("library", ["openvino", "nncf"])
def test_installing_an_optional_builder_changes_the_key(monkeypatch, library):
    _installed(monkeypatch, **{library: None})
    assert library not in cache.library_versions()
    without = _keys()
    _installed(monkeypatch, **{library: "2026.4.1"})
    assert _keys()[0] != without[0]


def test_squeezes_own_version_is_in_the_key(monkeypatch):
    before = _keys()
    monkeypatch.setattr(cache, "__version__", "99.0.0")
    cache.library_versions.cache_clear()
    assert _keys()[0] != before[0]


def test_the_device_is_in_the_key(monkeypatch):
    names = {0: "NVIDIA H100 80GB HBM3", 1: "NVIDIA H100 80GB HBM3", 2: "NVIDIA A100-SXM4-40GB"}
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: names[device.index or 0])
    cpu, h100, a100 = _keys("cpu"), _keys("cuda"), _keys("cuda:2")
    assert len({cpu[0], h100[0], a100[0]}) == 3 and len({cpu[1], h100[1], a100[1]}) == 3
    assert _keys("cuda:1") == h100  # another GPU of the same model builds the same bytes


def test_the_cpus_instruction_sets_are_in_the_key(monkeypatch):
    from squeeze.measure import machine

    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "fma"})
    avx2 = _keys()
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "fma", "sse4_2"})
    assert _keys() == avx2  # a flag no kernel choice reads
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    assert _keys()[0] != avx2[0]


def test_a_pinned_default_backend_keys_the_quantize_step_only(monkeypatch):
    """`quantize(int8)` names no backend either way, but the measured default and a
    $SQUEEZE_BACKEND pin build different artifacts: their keys differ from the quantize step on,
    and the step before keeps its key (its cached artifact stays valid)."""
    monkeypatch.setenv("SQUEEZE_BACKEND", "onnxruntime")
    pinned = _keys()
    monkeypatch.delenv("SQUEEZE_BACKEND")
    measured = _keys()
    assert pinned[0] == measured[0] and pinned[1] != measured[1]
    monkeypatch.setenv("SQUEEZE_BACKEND", "openvino")
    assert _keys()[1] not in (pinned[1], measured[1])


def test_a_target_machine_keys_measured_choices_only(monkeypatch):
    """A recipe's `target` fingerprint changes what the measured default builds (its rules, not
    this machine's timings), so it keys that step; a pinned backend ignores it."""
    monkeypatch.delenv("SQUEEZE_BACKEND")
    edge = {"cpu": "AMD EPYC", "isa": ["avx2"]}

    def keys(target):
        ctx = ChainContext(model="m", data=None, calibration_data=None, max_length=32,
                           target=target)  # fmt: skip
        return chain_keys(CHAIN, ctx, "root")

    here, there = keys(None), keys(edge)
    assert here[0] == there[0] and here[1] != there[1]
    monkeypatch.setenv("SQUEEZE_BACKEND", "onnxruntime")
    assert keys(None) == keys(edge)


def test_the_build_threads_are_in_the_key(monkeypatch):
    """A recovery trained on 1 and on 2 threads ends with other weights: another artifact."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _keys()
        torch.set_num_threads(2)
        assert _keys()[0] != one[0]
    finally:
        torch.set_num_threads(before)


def test_a_step_that_times_the_machine_takes_this_process_threads(monkeypatch):
    """A Ray worker builds on the threads its task holds; the measured default's choice is a
    timing, built (and keyed) with the threads latency is measured with."""
    from squeeze.plan.execute import step_threads

    monkeypatch.delenv("SQUEEZE_BACKEND")
    ctx = ChainContext(model="m", data=None, calibration_data=None, max_length=32, threads=7)
    pruned, measured = CHAIN
    assert step_threads(pruned, ctx) == 7
    assert step_threads(measured, ctx) == torch.get_num_threads()
    monkeypatch.setenv("SQUEEZE_BACKEND", "onnxruntime")
    assert step_threads(measured, ctx) == 7
