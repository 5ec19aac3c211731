"""Structured pruning speed-up: BERT-base with 50% of heads and 50% of FFN neurons removed.

Builds a BERT-base-shaped classifier with random weights (speed depends on shapes, not values),
prunes it with `squeeze prune`'s library function, exports both models to ONNX, and measures all
four in one process with identical inputs and threads, in rotating blocks. Prints p50 latency and
the speed-up of the pruned model over the unpruned one, for PyTorch and for ONNX Runtime.
Removing half the heads and half the FFN neurons removes half of the encoder's matrix work, so
2x is the ceiling; embeddings, LayerNorms and softmax do not shrink.

    python benchmarks/prune_latency.py [--heads 0.5 --ffn 0.5 --batch 1 --seq 128]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from squeeze.engine.runner import run_step
from squeeze.measure.bench import bench_models
from squeeze.measure.latency import BenchSettings
from squeeze.measure.machine import describe_machine
from squeeze.methods.export.method import ExportConfig, export_onnx
from squeeze.methods.prune.structured import StructuredPruneConfig
from squeeze.model.tiny import BERT_SHAPES, build_bert_shaped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(BERT_SHAPES), default="bert-base")
    parser.add_argument("--heads", type=float, default=0.5)
    parser.add_argument("--ffn", type=float, default=0.5)
    parser.add_argument("--batch", default="1")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--optimize", action="store_true", help="fuse both ONNX graphs")
    parser.add_argument("--work", default=".cache/bench")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(args.work) / args.shape
    dense = build_bert_shaped(args.shape, work / "checkpoint")
    pruned = work / f"pruned-h{args.heads}-f{args.ffn}"
    if not pruned.exists():
        run_step(dense, StructuredPruneConfig(heads=args.heads, ffn=args.ffn), pruned)
    suffix = "-fused" if args.optimize else ""
    onnx = {}
    for name, source in (("dense", dense), ("pruned", pruned)):
        onnx[name] = work / f"{source.name}-onnx{suffix}"
        if not onnx[name].exists():
            export_onnx(str(source), onnx[name], config=ExportConfig(optimize=args.optimize))

    settings = BenchSettings(
        batch_sizes=tuple(int(b) for b in args.batch.split(",")), seq_len=args.seq, runs=args.runs
    )
    models = [str(dense), str(pruned), str(onnx["dense"]), str(onnx["pruned"])]
    results, _ = bench_models(models, settings)
    p50 = {(r.runtime, r.name): {lat.batch: lat.p50_ms for lat in r.latencies} for r in results}
    rows = []
    for runtime, base, slim in (
        ("torch", models[0], models[1]),
        ("onnxruntime", models[2], models[3]),
    ):
        for batch in settings.batch_sizes:
            before, after = p50[(runtime, base)][batch], p50[(runtime, slim)][batch]
            rows.append(
                {
                    "runtime": runtime,
                    "batch": batch,
                    "dense_p50_ms": round(before, 2),
                    "pruned_p50_ms": round(after, 2),
                    "speedup": round(before / after, 2),
                }
            )
    params = {r.name: r.extra["size"]["params_total"] for r in results}
    if args.json:
        print(json.dumps({"rows": rows, "params": params, "machine": results[0].machine}, indent=2))
        return
    print(f"{args.shape}: heads {args.heads:.0%} + FFN {args.ffn:.0%} removed, seq {args.seq}, "
          f"{args.runs} runs; {describe_machine(results[0].machine)}")  # fmt: skip
    print(f"  parameters {params[models[0]] / 1e6:.1f}M -> {params[models[1]] / 1e6:.1f}M")
    for row in rows:
        print(f"  {row['runtime']:<11} batch {row['batch']}: {row['dense_p50_ms']:8.2f} ms -> "
              f"{row['pruned_p50_ms']:8.2f} ms  = {row['speedup']:.2f}x faster")  # fmt: skip


if __name__ == "__main__":
    main()
