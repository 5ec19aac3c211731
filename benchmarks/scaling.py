"""How time and peak memory of every CLI step grow with model size, up to a 1.1B Llama.

Llama-shaped sequence classifiers with random weights (no download; a classification head, so
no 32000 x hidden output matrix) of about 10M, 110M, 350M and 1.1B parameters (TinyLlama's
shape) are built once under --work and reused. Each step runs as a user runs it, as its own
`squeeze` process started from a fresh wrapper process, so the wrapper's
``getrusage(RUSAGE_CHILDREN).ru_maxrss`` is that step's peak RSS alone: info, export (fp32
ONNX, external data above 2 GB, validated), quantize (ONNX Runtime dynamic int8), structured
pruning (magnitude importance, no data), bench of the checkpoint (PyTorch) and of the export
(ONNX Runtime), and eval of the export. A toy model of the same family ("base", a few
thousand parameters) gives each step's fixed cost (interpreter, torch, onnxruntime).

Prints, per size and step: wall time, peak RSS, peak RSS / fp32 weight bytes (raw and net of
the fixed cost) and the growth exponent log(time ratio) / log(params ratio) against the next
smaller size. Targets: peak RSS under 2.5x the fp32 weights (net of the fixed cost at every
size; raw as well where the weights are 1 GiB or more) and no step growing faster than
linearly (exponent at most 1 + --slack, on wall time, and on time net of the fixed cost where
that is at least --min-net-s). Exits 1 when a target is missed.

    python benchmarks/scaling.py                     # every size, up to 1.1B (about an hour)
    python benchmarks/scaling.py --max-params 150M   # quick: base, 10m and 110m
    python benchmarks/scaling.py --sizes 10m,350m --steps info,export
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# Llama shapes scaled together (hidden, FFN, depth, heads; 4 KV heads past the smallest); the
# vocabulary stays Llama's 32000, so the embedding is a real share of the small ones too.
SIZES: dict[str, dict[str, int]] = {
    "base": {},  # squeeze.model.tiny's toy Llama: the fixed cost of every step
    "10m": {"hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 4,
            "num_attention_heads": 8, "num_key_value_heads": 2},
    "110m": {"hidden_size": 768, "intermediate_size": 2304, "num_hidden_layers": 12,
             "num_attention_heads": 12, "num_key_value_heads": 4},
    "350m": {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 28,
             "num_attention_heads": 16, "num_key_value_heads": 4},
    "1.1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
             "num_attention_heads": 32, "num_key_value_heads": 4},
}  # fmt: skip
COMMON = {"vocab_size": 32000, "max_position_embeddings": 2048}
STEPS = ("info", "export", "quantize", "prune", "bench", "bench-onnx", "eval-onnx")
# Each step's output folder, and the steps that read it.
NEEDS = {"bench-onnx": "export", "eval-onnx": "export"}
BENCH = ["--batch", "1", "--seq", "32", "--runs", "5", "--warmup", "1", "--rounds", "1"]
MEMORY_TARGET = 2.5
RAW_FROM_BYTES = 1 << 30

# Runs one command and prints its wall time and peak RSS (this process's largest child).
_WRAPPER = """
import json, resource, subprocess, sys, time
argv, log = json.loads(sys.argv[1]), sys.argv[2]
with open(log, "w") as out:
    start = time.perf_counter()
    rc = subprocess.call(argv, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"rc": rc, "seconds": seconds, "peak_rss": peak}))
"""


def _checkpoint(work: Path, name: str) -> Path:
    # The 1.1B folder is shared with other benchmarks (e.g. info_speed.py): same path, same shape.
    return work / f"llama-{name}" if name != "base" else work / "scaling" / "llama-base"


def build(work: Path, name: str) -> Path:
    """The size's checkpoint, built once (into a temporary folder, then renamed)."""
    out = _checkpoint(work, name)
    if (out / "config.json").is_file():
        return out
    import transformers

    from squeeze.model.tiny import build_tiny

    config = transformers.LlamaConfig(**SIZES[name], **COMMON) if SIZES[name] else None
    tmp = out.with_name(f".{out.name}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    build_tiny("llama", tmp, config=config)
    if (out / "config.json").is_file():  # built meanwhile by someone else
        shutil.rmtree(tmp)
    else:
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return out


def _weights(folder: Path) -> tuple[int, int]:
    """Parameters and fp32 bytes, from the safetensors header (no weights read)."""
    params = 0
    for file in folder.glob("*.safetensors"):
        with file.open("rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        for key, entry in header.items():
            if key != "__metadata__":
                params += math.prod(entry["shape"])
    return params, 4 * params


def _squeeze() -> list[str]:
    script = Path(sys.executable).with_name("squeeze")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "squeeze"]


def _commands(model: Path, out: Path, data: Path) -> dict[str, list[str]]:
    write = ["--overwrite", "--json"]
    return {
        "info": ["info", str(model), "--json"],
        "export": ["export", str(model), "-o", str(out / "export"), *write],
        "quantize": ["quantize", str(model), "--dtype", "int8", "-o", str(out / "int8"), *write],
        "prune": ["prune", str(model), "--method", "structured", "--heads", "0.25", "--ffn",
                  "0.25", "--importance", "magnitude", "-o", str(out / "pruned"), *write],
        "bench": ["bench", str(model), *BENCH, "--json", "-q"],
        "bench-onnx": ["bench", str(out / "export"), *BENCH, "--json", "-q"],
        "eval-onnx": ["eval", str(out / "export"), "--data", str(data), "--max-length", "32",
                      "--batch-size", "8", "--json", "-q"],
    }  # fmt: skip


def run_step(argv: list[str], log: Path) -> dict[str, Any]:
    """One step in a fresh wrapper process: rc, wall seconds, peak RSS bytes."""
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, json.dumps(argv), str(log)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _parse_count(text: str) -> float:
    scale = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}
    text = text.strip().lower()
    return float(text[:-1]) * scale[text[-1]] if text[-1] in scale else float(text)


def _cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no lscpu)"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            return value.strip()
    return "unknown"


def _exponent(small: float, large: float, p_small: int, p_large: int) -> float | None:
    if small <= 0 or large <= 0 or p_large <= p_small:
        return None
    return math.log(large / small) / math.log(p_large / p_small)


def analyse(
    rows: list[dict[str, Any]], slack: float, min_net_s: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """Add ratios and exponents to each measured row; return the rows and the missed targets."""
    base = {r["step"]: r for r in rows if r["size"] == "base"}
    missed = []
    previous: dict[str, dict[str, Any]] = {}
    for row in rows:
        step = row["step"]
        if row["rc"] != 0:
            missed.append(f"{row['size']} {step}: exit code {row['rc']} (see {row['log']})")
        fixed = base.get(step)
        row["rss_ratio"] = row["peak_rss"] / row["fp32_bytes"]
        row["net_seconds"] = row["seconds"] - fixed["seconds"] if fixed else None
        row["net_rss_ratio"] = None
        if fixed and row["size"] != "base":
            row["net_rss_ratio"] = max(row["peak_rss"] - fixed["peak_rss"], 0) / row["fp32_bytes"]
        row["exponent"] = row["net_exponent"] = None
        before = previous.get(step)
        if before is not None and row["size"] != "base":
            row["exponent"] = _exponent(
                before["seconds"], row["seconds"], before["params"], row["params"]
            )
            if fixed and before["size"] != "base":
                net_before, net = before["net_seconds"], row["net_seconds"]
                if min(net_before, net) >= min_net_s:
                    row["net_exponent"] = _exponent(
                        net_before, net, before["params"], row["params"]
                    )
        if row["size"] != "base":
            previous[step] = row
        where = f"{row['size']} {step}"
        if row["net_rss_ratio"] is not None and row["net_rss_ratio"] > MEMORY_TARGET:
            missed.append(f"{where}: peak RSS net of the fixed cost {row['net_rss_ratio']:.2f}x")
        if row["fp32_bytes"] >= RAW_FROM_BYTES and row["rss_ratio"] > MEMORY_TARGET:
            missed.append(f"{where}: peak RSS {row['rss_ratio']:.2f}x the fp32 weights")
        for key in ("exponent", "net_exponent"):
            if row[key] is not None and row[key] > 1 + slack:
                missed.append(f"{where}: time grows with exponent {row[key]:.2f} ({key})")
    return rows, missed


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'size':<5} {'params':>13} {'fp32 bytes':>14} {'step':<10} {'time_s':>8} "
        f"{'exp':>5} {'net exp':>7} {'peak_rss':>10} {'rss/fp32':>8} {'net/fp32':>8}"
    )
    print(header)
    print("-" * len(header))
    last = None
    for r in rows:
        size = r["size"] if r["size"] != last else ""
        params = f"{r['params']:,}" if size else ""
        fp32 = f"{r['fp32_bytes']:,}" if size else ""
        last = r["size"]
        print(
            f"{size:<5} {params:>13} {fp32:>14} {r['step']:<10} {r['seconds']:8.1f} "
            f"{_fmt(r['exponent'], '5.2f'):>5} {_fmt(r['net_exponent'], '7.2f'):>7} "
            f"{r['peak_rss'] / 2**30:8.2f}GB {r['rss_ratio']:8.2f} "
            f"{_fmt(r['net_rss_ratio'], '8.2f'):>8}"
            + ("" if r["rc"] == 0 else f"  FAILED rc={r['rc']}")
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated size names")
    parser.add_argument("--max-params", help="skip sizes above this many parameters, e.g. 400M")
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated steps")
    parser.add_argument("--work", default=".cache/bench", help="checkpoints and outputs")
    parser.add_argument("--slack", type=float, default=0.1, help="allowed exponent above 1")
    parser.add_argument("--min-net-s", type=float, default=5.0, help="net time worth an exponent")
    parser.add_argument("--keep", action="store_true", help="keep the outputs of each size")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--build", help=argparse.SUPPRESS)  # internal: build one size
    args = parser.parse_args()
    work = Path(args.work)
    if args.build:
        build(work, args.build)
        return 0

    from squeeze.measure.machine import describe_machine, fingerprint
    from squeeze.model.tiny import write_order_task

    names = [n for n in args.sizes.split(",") if n]
    steps = [s for s in args.steps.split(",") if s]
    unknown = sorted(set(names) - set(SIZES)) + sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown size or step: {', '.join(unknown)}")
    steps = [s for s in STEPS if s in steps]  # in dependency order
    for step in steps:
        if NEEDS.get(step) and NEEDS[step] not in steps:
            parser.error(f"step {step} needs step {NEEDS[step]}")
    if "base" not in names:
        names.insert(0, "base")  # the fixed cost every ratio is taken net of
    names = sorted(names, key=list(SIZES).index)

    scratch = work / "scaling"
    scratch.mkdir(parents=True, exist_ok=True)
    data = write_order_task(scratch / "order.csv", 64)
    machine = fingerprint()
    print(f"machine: {describe_machine(machine)}; lscpu model: {_cpu_model()}", flush=True)
    rows = []
    for name in names:
        # Built in its own process so this one stays small while the steps are measured.
        subprocess.run([sys.executable, __file__, "--work", str(work), "--build", name], check=True)
        model = _checkpoint(work, name)
        params, fp32 = _weights(model)
        if args.max_params and name != "base" and params > _parse_count(args.max_params):
            continue
        out = scratch / name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        commands = _commands(model, out, data)
        for step in steps:
            log = out / f"{step}.log"
            result = run_step([*_squeeze(), *commands[step]], log)
            row = {"size": name, "params": params, "fp32_bytes": fp32, "step": step,
                   **result, "log": str(log)}  # fmt: skip
            rows.append(row)
            print(
                f"  {name:<5} {step:<10} {result['seconds']:7.1f} s  "
                f"{result['peak_rss'] / 2**30:6.2f} GB  rc {result['rc']}",
                file=sys.stderr,
                flush=True,
            )
        if not args.keep:
            for folder in ("export", "int8", "pruned"):
                shutil.rmtree(out / folder, ignore_errors=True)

    rows, missed = analyse(rows, args.slack, args.min_net_s)
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows, "missed": missed}, indent=2))
    else:
        print_table(rows)
        print(
            f"targets: peak RSS <= {MEMORY_TARGET}x fp32 weights (net of 'base' at every size, "
            f"raw from {RAW_FROM_BYTES / 2**30:.0f} GiB); time exponent <= {1 + args.slack:.2f}"
        )
    for line in missed:
        print(f"MISSED {line}")
    if not missed:
        print("all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
