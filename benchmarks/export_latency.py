"""PyTorch vs ONNX Runtime (plain and fused) CPU latency, measured together in one run.

Builds a model with random weights (the shape decides the speed, not the values), exports it
twice with `squeeze export` (plain and --optimize), and times all three with `squeeze bench`'s
library function in rotating blocks. Prints p50 latencies and the ratios against PyTorch.

    python benchmarks/export_latency.py                 # BERT-base shape (110M parameters)
    python benchmarks/export_latency.py --shape minilm  # the demo model's shape (22.7M)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from squeeze.measure.bench import bench_models
from squeeze.measure.latency import BenchSettings
from squeeze.measure.machine import describe_machine
from squeeze.methods.export.method import ExportConfig, export_onnx
from squeeze.model.tiny import BERT_SHAPES, build_bert_shaped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(BERT_SHAPES), default="bert-base")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--work", default=".cache/bench")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(args.work) / args.shape
    checkpoint = build_bert_shaped(args.shape, work / "checkpoint")
    exports = {"onnx": ExportConfig(), "onnx-fused": ExportConfig(optimize=True)}
    for name, config in exports.items():
        if not (work / name).exists():
            export_onnx(str(checkpoint), work / name, config=config)

    settings = BenchSettings(
        batch_sizes=tuple(int(b) for b in args.batch.split(",")), seq_len=args.seq, runs=args.runs
    )
    results, _ = bench_models([str(checkpoint), *(str(work / n) for n in exports)], settings)
    torch_p50 = {lat.batch: lat.p50_ms for lat in results[0].latencies}
    rows = [
        {
            "variant": ["torch", *exports][i],
            "batch": lat.batch,
            "p50_ms": round(lat.p50_ms, 2),
            "p90_ms": round(lat.p90_ms, 2),
            "speedup_vs_torch": round(torch_p50[lat.batch] / lat.p50_ms, 2),
        }
        for i, result in enumerate(results)
        for lat in result.latencies
    ]
    if args.json:
        print(
            json.dumps({"shape": args.shape, "rows": rows, "machine": results[0].machine}, indent=2)
        )
        return
    machine = describe_machine(results[0].machine)
    print(f"{args.shape} shape, seq {args.seq}, {args.runs} runs, {machine}")
    for row in rows:
        print(
            f"  {row['variant']:<11} batch {row['batch']:>2}: p50 {row['p50_ms']:8.2f} ms "
            f"(p90 {row['p90_ms']:8.2f})  {row['speedup_vs_torch']:.2f}x vs torch"
        )


if __name__ == "__main__":
    main()
