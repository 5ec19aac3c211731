"""Start-up time of the CLI: ``squeeze --help`` and every ``squeeze CMD --help``.

CI logs and shells call ``squeeze`` often; help and argument errors must come back at once. The
CLI modules import only typer and squeeze's light modules (configs, registry, data specs); torch,
transformers, numpy and rich load inside command bodies. Each command line runs ``--runs`` times
in a fresh process; the median wall time is checked against ``--target`` (0.3 s). Exits 1 when
any median misses it. Run: `make bench` (or python benchmarks/startup.py).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from squeeze.measure.machine import describe_machine, fingerprint

COMMANDS = ("info", "eval", "finetune", "prune", "distill", "quantize", "export", "bench", "run",
            "sweep", "tune", "report", "steps", "cache")  # fmt: skip


def _squeeze() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m squeeze``."""
    script = Path(sys.executable).with_name("squeeze")
    if script.is_file():
        return [str(script)]
    found = shutil.which("squeeze")
    return [found] if found else [sys.executable, "-m", "squeeze"]


def _wall_s(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--target", type=float, default=0.3, help="seconds (median)")
    args = parser.parse_args()

    print(describe_machine(fingerprint()))
    base = _squeeze()
    _wall_s([*base, "--help"])  # warm the file cache once, as any later call finds it
    missed = []
    for command in ("", *COMMANDS):
        argv = [*base, *([command] if command else []), "--help"]
        times = [_wall_s(argv) for _ in range(args.runs)]
        median = statistics.median(times)
        verdict = "ok" if median < args.target else "MISSED"
        label = f"squeeze {command} --help".replace("  ", " ")
        print(f"{label:<28} median {median:.3f} s  (min {min(times):.3f}, max {max(times):.3f})"
              f"  {verdict}")  # fmt: skip
        if median >= args.target:
            missed.append(label)
    print(f"target: every median under {args.target:g} s over {args.runs} runs")
    if missed:
        print(f"missed: {', '.join(missed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
