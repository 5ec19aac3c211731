"""Prune + int8 together: BERT-base, 50% of heads and FFN removed, int8 on ONNX Runtime, one run.

Builds a BERT-base-shaped classifier with random weights (speed and size depend on shapes, not
values), prunes it with `squeeze prune`'s library function (structured, magnitude importance),
quantizes the pruned model with `squeeze quantize`'s default int8 path (fused ONNX export, then
ONNX Runtime dynamic int8), and times it against the fp32 PyTorch baseline in one process with
identical inputs and threads, in rotating blocks. Prints size and p50 latency (with p10..p90),
the ratios against the baseline, and checks the targets: at least 6x smaller, and at least 4x
faster (5x on a CPU with AVX-512 VNNI) at every batch size measured. Exits 1 if one is missed.

    python benchmarks/compress_latency.py [--batch 1 --seq 128 --context --json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from squeeze.artifact.read import MODEL_FILE
from squeeze.engine.runner import run_step
from squeeze.measure.bench import bench_models
from squeeze.measure.latency import BenchSettings
from squeeze.measure.machine import describe_machine
from squeeze.methods.prune.structured import StructuredPruneConfig
from squeeze.methods.quantize.method import QuantizeConfig
from squeeze.model.tiny import BERT_SHAPES, build_bert_shaped

SIZE_TARGET = 6.0
# Speed-up targets by the CPU's int8 instruction set (the acceptance figures).
SPEEDUP_TARGET = {"avx512_vnni": 5.0, "other": 4.0}


def _quantize(source: Path, out: Path) -> Path:
    if not out.exists():
        run_step(source, QuantizeConfig(), out)  # the default: fused, ORT
    return out


def _int8_ops(folder: Path) -> dict[str, int]:
    """ONNX Runtime's contrib and integer ops in an int8 graph (is attention QAttention?)."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(folder / MODEL_FILE), load_external_data=False).graph.node:
        if node.domain == "com.microsoft" or "Integer" in node.op_type or "Quant" in node.op_type:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(BERT_SHAPES), default="bert-base")
    parser.add_argument("--heads", type=float, default=0.5)
    parser.add_argument("--ffn", type=float, default=0.5)
    parser.add_argument("--batch", default="1")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, help="intra-op threads (default: torch's)")
    parser.add_argument(
        "--context",
        action="store_true",
        help="also time the pruned fp32 PyTorch model and the unpruned int8 model",
    )
    parser.add_argument("--work", default=".cache/bench")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="write the figures as JSON to PATH (alone: print JSON instead of the table)",
    )
    args = parser.parse_args()

    work = Path(args.work) / args.shape
    dense = build_bert_shaped(args.shape, work / "checkpoint")
    # Folder names shared with prune_latency.py and quantize_latency.py, so caches are reused.
    pruned = work / f"pruned-h{args.heads}-f{args.ffn}"
    if not pruned.exists():
        run_step(dense, StructuredPruneConfig(heads=args.heads, ffn=args.ffn), pruned)
    compressed = _quantize(pruned, work / f"{pruned.name}-onnx-int8-dynamic")
    models = {"torch fp32 (baseline)": dense}
    if args.context:
        models["torch fp32 pruned"] = pruned
        models["onnx int8 (unpruned)"] = _quantize(dense, work / "onnx-int8-dynamic")
    models["onnx int8 pruned"] = compressed

    settings = BenchSettings(
        batch_sizes=tuple(int(b) for b in args.batch.split(",")),
        seq_len=args.seq,
        runs=args.runs,
        threads=args.threads,
    )
    results, _ = bench_models([str(path) for path in models.values()], settings)
    base, slim = results[0], results[-1]
    machine = base.machine
    vnni = "avx512_vnni" in machine["isa"]
    speed_target = SPEEDUP_TARGET["avx512_vnni" if vnni else "other"]
    base_bytes = base.extra["size"]["bytes_on_disk"]
    rows = []
    for name, result in zip(models, results, strict=True):
        size = result.extra["size"]["bytes_on_disk"]
        for lat, base_lat in zip(result.latencies, base.latencies, strict=True):
            p10, p90 = (float(np.percentile(lat.samples_ms, q)) for q in (10, 90))
            rows.append(
                {
                    "variant": name,
                    "runtime": result.runtime,
                    "batch": lat.batch,
                    "p50_ms": round(lat.p50_ms, 2),
                    "p10_ms": round(p10, 2),
                    "p90_ms": round(p90, 2),
                    "speedup": round(base_lat.p50_ms / lat.p50_ms, 2),
                    "params": result.extra["size"]["params_total"],
                    "bytes_on_disk": size,
                    "size_ratio": round(base_bytes / size, 2),
                }
            )
    size_ratio = base_bytes / slim.extra["size"]["bytes_on_disk"]
    targets = [
        {
            "target": f"size ratio >= {SIZE_TARGET:g}",
            "value": round(size_ratio, 2),
            "passed": size_ratio >= SIZE_TARGET,
        }
    ]
    for lat, base_lat in zip(slim.latencies, base.latencies, strict=True):
        speedup = base_lat.p50_ms / lat.p50_ms
        # The spread of the ratio: the baseline's p10 and p90 over the int8 model's p90 and p10.
        low = np.percentile(base_lat.samples_ms, 10) / np.percentile(lat.samples_ms, 90)
        high = np.percentile(base_lat.samples_ms, 90) / np.percentile(lat.samples_ms, 10)
        targets.append(
            {
                "target": f"batch {lat.batch} speed-up >= {speed_target:g}"
                + (" (avx512_vnni)" if vnni else " (no avx512_vnni)"),
                "value": round(speedup, 2),
                "range": [round(float(low), 2), round(float(high), 2)],
                "passed": speedup >= speed_target,
            }
        )
    passed = all(t["passed"] for t in targets)
    report = {
        "shape": args.shape,
        "heads": args.heads,
        "ffn": args.ffn,
        "seq": args.seq,
        "runs": args.runs,
        "threads": machine["torch_threads"],
        "rows": rows,
        "targets": targets,
        "passed": passed,
        "int8_ops": _int8_ops(compressed),
        "machine": machine,
    }
    if args.json and args.json != "-":
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.json == "-":
        print(json.dumps(report, indent=2))
        sys.exit(0 if passed else 1)

    print(f"{args.shape}: heads {args.heads:.0%} + FFN {args.ffn:.0%} removed, then int8; "
          f"seq {args.seq}, {args.runs} runs; {describe_machine(machine)}")  # fmt: skip
    print(
        f"  {'variant':<22} {'batch':>5} {'p50 ms':>9} {'p10..p90 ms':>17} {'speed-up':>9} "
        f"{'params':>8} {'MiB':>7} {'smaller':>8}"
    )
    for row in rows:
        spread = f"{row['p10_ms']:.1f}..{row['p90_ms']:.1f}"
        print(
            f"  {row['variant']:<22} {row['batch']:>5} {row['p50_ms']:9.2f} {spread:>17} "
            f"{row['speedup']:8.2f}x {row['params'] / 1e6:7.1f}M "
            f"{row['bytes_on_disk'] / 2**20:7.1f} {row['size_ratio']:7.2f}x"
        )
    ops = ", ".join(f"{op} x{n}" for op, n in report["int8_ops"].items()) or "none"
    print(f"  int8 graph ops: {ops}")
    for t in targets:
        spread = (
            f" (p10..p90 ratio {t['range'][0]:.2f}..{t['range'][1]:.2f})" if "range" in t else ""
        )
        print(f"  {'PASS' if t['passed'] else 'FAIL'}  {t['target']}: {t['value']:.2f}x{spread}")
    if args.json:
        print(f"  wrote {args.json}")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
