"""int8 on the CPU: latency and size of every ONNX Runtime mode against fp32 PyTorch, one run.

Builds a BERT-base-shaped classifier with random weights (int8 speed depends on shapes, not
values), quantizes it with `squeeze quantize`'s library function in each mode, and times all
variants in one process with identical inputs and threads, in rotating blocks. Prints p50
latency, speed-up and size ratio against fp32 PyTorch, and the CPU's ISA flags: int8 speed-ups
depend on AVX-512 VNNI.

    python benchmarks/quantize_latency.py [--shape bert-base --batch 1 --seq 128]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from squeeze.data.spec import DataSpec
from squeeze.engine.runner import run_step
from squeeze.engine.step import StepOptions
from squeeze.measure.bench import bench_models
from squeeze.measure.latency import BenchSettings
from squeeze.measure.machine import describe_machine
from squeeze.methods.export.method import ExportConfig, export_onnx
from squeeze.methods.quantize.method import QuantizeConfig
from squeeze.model.tiny import BERT_SHAPES, build_bert_shaped, write_order_task

VARIANTS = {
    "onnx int8 dynamic (fused, default)": QuantizeConfig(),
    "onnx int8 dynamic (unfused)": QuantizeConfig(optimize=False),
    "onnx int8 static QDQ": QuantizeConfig(static=True, calibration_samples=64),
    "torch int8 (torchao)": QuantizeConfig(backend="torch"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(BERT_SHAPES), default="bert-base")
    parser.add_argument("--batch", default="1")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--work", default=".cache/bench")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(args.work) / args.shape
    dense = build_bert_shaped(args.shape, work / "checkpoint")
    models = {"torch fp32": dense}
    exports = (("onnx fp32", ExportConfig()), ("onnx fp32 fused", ExportConfig(optimize=True)))
    for name, config in exports:
        models[name] = work / name.replace(" ", "-")
        if not models[name].exists():
            export_onnx(str(dense), models[name], config=config)
    calibration = write_order_task(work / "calibration.csv", 256)
    for name, config in VARIANTS.items():
        folder = name.split(" (")[0].replace(" ", "-") + ("-unfused" if "unfused" in name else "")
        models[name] = work / folder
        if not models[name].exists():
            options = StepOptions(calibration_data=DataSpec(str(calibration)))
            run_step(dense, config, models[name], options)

    settings = BenchSettings(
        batch_sizes=tuple(int(b) for b in args.batch.split(",")), seq_len=args.seq, runs=args.runs
    )
    results, _ = bench_models([str(path) for path in models.values()], settings)
    base = results[0]
    base_bytes = base.extra["size"]["bytes_on_disk"]
    rows = []
    for name, result in zip(models, results, strict=True):
        size = result.extra["size"]["bytes_on_disk"]
        for lat, base_lat in zip(result.latencies, base.latencies, strict=True):
            rows.append(
                {
                    "variant": name,
                    "batch": lat.batch,
                    "p50_ms": round(lat.p50_ms, 2),
                    "p90_ms": round(lat.p90_ms, 2),
                    "speedup": round(base_lat.p50_ms / lat.p50_ms, 2),
                    "bytes_on_disk": size,
                    "size_ratio": round(base_bytes / size, 2),
                }
            )
    if args.json:
        print(json.dumps({"rows": rows, "machine": base.machine}, indent=2))
        return
    print(f"{args.shape}, seq {args.seq}, {args.runs} runs; {describe_machine(base.machine)}")
    for row in rows:
        print(
            f"  {row['variant']:<35} batch {row['batch']}: p50 {row['p50_ms']:8.2f} ms "
            f"(p90 {row['p90_ms']:8.2f})  {row['speedup']:5.2f}x faster, "
            f"{row['bytes_on_disk'] / 2**20:6.1f} MiB ({row['size_ratio']:.2f}x smaller)"
        )


if __name__ == "__main__":
    main()
