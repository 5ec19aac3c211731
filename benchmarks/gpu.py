"""GPU execution: BERT-base at batch 1/32/256, seq 128, every way squeeze runs it, one run.

Rows: PyTorch fp32 eager (the reference), TF32 matmuls, fp16 and bf16 eager (SDPA attention),
fp16 through torch.compile, the fp16 ONNX export `squeeze quantize --dtype fp16` writes on ONNX
Runtime's CUDA provider, and on its TensorRT provider (fp16, and int8 from a static QDQ export)
where onnxruntime-gpu has it. Every row is timed in one process with identical inputs, CUDA
synchronised after every run, in rotating blocks; the table gives p50 (spread), the ratio to
fp32 eager, and torch's peak allocated GPU memory. A row this machine cannot run is listed with
the reason. The target checked: squeeze's GPU default (fp16, what `quantize --dtype fp16`
deploys) at least 4x faster than fp32 eager at batch 32 (anchor, H100: fp32 eager 19.6 ms,
tf32 9.7 ms).

    python benchmarks/gpu.py                      # on a GPU machine
    python benchmarks/gpu.py --device cpu --quick  # the same code paths on the CPU, in seconds
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from squeeze.artifact.read import load_export
from squeeze.core.errors import SqueezeError
from squeeze.data.spec import DataSpec
from squeeze.engine.runner import run_step
from squeeze.engine.step import StepOptions
from squeeze.measure.bench import export_target, frame_ids, torch_target
from squeeze.measure.latency import BenchSettings, Target, measure, synthetic_inputs
from squeeze.measure.machine import describe_machine
from squeeze.methods.quantize.method import QuantizeConfig
from squeeze.model.checkpoint import load
from squeeze.model.tiny import BERT_SHAPES, build_bert_shaped, write_order_task

DEFAULT = "torch fp16"  # what `squeeze quantize --dtype fp16` deploys
TARGET_SPEEDUP, TARGET_BATCH = 4.0, 32
TORCH_ROWS = {  # label -> (precision, compiled)
    "torch fp32": ("fp32", False),
    "torch tf32": ("tf32", False),
    "torch fp16": ("fp16", False),
    "torch bf16": ("bf16", False),
    "torch fp16 compiled": ("fp16", True),
}


def _exports(dense: Path, work: Path) -> dict[str, Path]:
    """The fp16 ONNX export and a static int8 QDQ one, built once on the CPU."""
    fp16, int8 = work / "fp16", work / "int8-static"
    if not fp16.exists():
        run_step(dense, QuantizeConfig(dtype="fp16"), fp16)
    if not int8.exists():
        calibration = write_order_task(work / "calibration.csv", 128)
        options = StepOptions(calibration_data=DataSpec(str(calibration)))
        run_step(dense, QuantizeConfig(static=True, calibration_samples=64), int8, options)
    return {"fp16": fp16 / "onnx", "int8": int8}


def _targets(dense: Path, work: Path, device: str, threads: int) -> tuple[list[Target], dict]:
    targets, skipped = [], {}
    cuda = device.startswith("cuda")
    for label, (precision, compiled) in TORCH_ROWS.items():
        if precision == "tf32" and not cuda:
            skipped[label] = "tf32 is a CUDA matmul mode"
            continue
        try:
            loaded = load(dense, device=device)
            target = torch_target(label, loaded, device, precision, compiled)
        except SqueezeError as e:
            skipped[label] = str(e)
            continue
        targets.append(target)
    exports = _exports(dense, work)
    rows = (("onnxruntime fp16", "fp16", False), ("tensorrt fp16", "fp16", True),
            ("tensorrt int8", "int8", True))  # fmt: skip
    for label, dtype, tensorrt in rows:
        try:
            exported = load_export(exports[dtype], device=device, threads=threads,
                                   tensorrt=tensorrt)  # fmt: skip
        except SqueezeError as e:
            skipped[label] = str(e)
            continue
        target = export_target(label, exported, label.split()[0], device)
        targets.append(target)
    return targets, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--shape", choices=sorted(BERT_SHAPES), default="bert-base")
    parser.add_argument("--batch", default="1,32,256")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="tiny shape, batch 1,2, seq 16")
    parser.add_argument("--work", default=".cache/bench-gpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.shape, args.batch, args.seq, args.runs = "tiny", "1,2", 16, 3

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device on this machine: nothing measured (run it on a GPU machine, or "
              "--device cpu --quick for the same code paths on the CPU)")  # fmt: skip
        sys.exit(0)
    work = Path(args.work) / args.shape
    dense = build_bert_shaped(args.shape, work / "checkpoint")
    threads = torch.get_num_threads()
    targets, skipped = _targets(dense, work, args.device, threads)
    settings = BenchSettings(
        batch_sizes=tuple(int(b) for b in args.batch.split(",")), seq_len=args.seq,
        runs=args.runs, warmup=5, rounds=3, device=args.device,
    )  # fmt: skip
    tokenizer = load(dense).tokenizer
    names = ["input_ids", "attention_mask", "token_type_ids"]

    def inputs_for(batch: int) -> dict[str, Any]:
        return synthetic_inputs(names, batch, args.seq, vocab_size=tokenizer.vocab_size,
                                special_ids=frame_ids(tokenizer))  # fmt: skip

    results = measure(targets, inputs_for, settings, threads)
    base = {lat.batch: lat.p50_ms for lat in results[0].latencies}
    rows = [
        {
            "variant": r.name, "batch": lat.batch, "p50_ms": round(lat.p50_ms, 3),
            "p90_ms": round(lat.p90_ms, 3), "stdev_ms": round(lat.stdev_ms, 3),
            "vs_fp32_eager": round(base[lat.batch] / lat.p50_ms, 2),
            "peak_memory_bytes": r.peak_memory_bytes,
        }
        for r in results
        for lat in r.latencies
    ]  # fmt: skip
    default = next((row for row in rows if row["variant"] == DEFAULT
                    and row["batch"] == TARGET_BATCH), None)  # fmt: skip
    verdict = None if default is None else default["vs_fp32_eager"] >= TARGET_SPEEDUP
    machine = results[0].machine
    if args.json:
        print(json.dumps({"rows": rows, "skipped": skipped, "target_met": verdict,
                          "machine": machine}, indent=2))  # fmt: skip
        return
    print(f"{args.shape}, seq {args.seq}, {args.runs} runs per row, {args.device}; "
          f"{describe_machine(machine)}")  # fmt: skip
    for row in rows:
        peak = row["peak_memory_bytes"]
        memory = f"{peak / 2**20:8.0f} MiB" if peak else "       n/a"
        ratio = row["vs_fp32_eager"]
        print(f"  {row['variant']:<22} batch {row['batch']:>3}: p50 {row['p50_ms']:9.3f} ms "
              f"(sd {row['stdev_ms']:.3f})  {ratio:5.2f}x  peak {memory}")  # fmt: skip
    for label, why in skipped.items():
        print(f"  {label:<22} not run: {why}")
    if verdict is not None:
        print(f"target: {DEFAULT} >= {TARGET_SPEEDUP:g}x fp32 eager at batch {TARGET_BATCH}: "
              f"{'met' if verdict else 'missed'} ({default['vs_fp32_eager']}x)")  # fmt: skip


if __name__ == "__main__":
    main()
