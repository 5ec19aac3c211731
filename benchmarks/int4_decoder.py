"""int4 weight-only ONNX (MatMulNBits) on a ~110M decoder: size and latency against int8, fp32.

Builds a Llama-shaped causal LM with random weights (12 layers, hidden 768, FFN 2048, vocab
32000, tied embeddings: 110M parameters; speed and size depend on shapes, not values; or GPT-2
small, `--shape gpt2-124m`), then
with `squeeze quantize`'s library: ONNX Runtime dynamic int8, and int4 MatMulNBits at accuracy
level 4 (int8 activations per block) and 0 (fp32 compute). All are timed with the fp32 ONNX
export and fp32 PyTorch in one rotating measurement per sequence length, batch 1: 128 tokens (a
prompt, compute-bound) and 8 (close to one decoding step without a KV cache, where reading the
weights dominates and 4-bit weights should pay). Prints p50 (spread), speed-up, size on disk and
top-1 token agreement with the original (random weights: logits are near ties, so agreement is
a floor, not an accuracy).

    python benchmarks/int4_decoder.py [--shape llama-110m|gpt2-124m|quick] [--seq 128,8] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from squeeze.core.types import Task
from squeeze.engine.runner import run_step
from squeeze.engine.step import StepOptions
from squeeze.measure.bench import bench_models
from squeeze.measure.latency import BenchSettings
from squeeze.measure.machine import describe_machine
from squeeze.methods.export.method import ExportConfig, export_onnx
from squeeze.methods.quantize.method import QuantizeConfig
from squeeze.model.tiny import build_tiny

VARIANTS = {
    "onnx int8 dynamic": QuantizeConfig(),
    "onnx int4 (level 4)": QuantizeConfig(dtype="int4", backend="onnxruntime"),
    "onnx int4 (level 0)": QuantizeConfig(dtype="int4", backend="onnxruntime", accuracy_level=0),
}


# Decoder shapes with random weights; every one ties its vocabulary projection to the embedding.
SHAPES = {
    # 12 layers, hidden 768, FFN 2048, vocabulary 32,000: 109.5M parameters.
    "llama-110m": ("llama", {"hidden_size": 768, "num_hidden_layers": 12,
                             "intermediate_size": 2048, "num_attention_heads": 12,
                             "num_key_value_heads": 12, "vocab_size": 32000,
                             "max_position_embeddings": 512}),
    # GPT-2 small: 124M parameters, Conv1D projections (exported as Gemm).
    "gpt2-124m": ("gpt2", {}),
    "quick": ("llama", {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
                        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 512,
                        "max_position_embeddings": 512}),
}  # fmt: skip


def build_decoder(out: Path, shape: str) -> Path:
    import transformers

    if not (out / "config.json").exists():
        family, fields = SHAPES[shape]
        config_class = transformers.LlamaConfig if family == "llama" else transformers.GPT2Config
        config = config_class(**fields, tie_word_embeddings=True)
        build_tiny(family, out, task=Task.CAUSAL_LM, config=config)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", default="128,8")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-110m",
                        help="quick: a tiny shape, the code paths only")  # fmt: skip
    parser.add_argument("--work", default=".cache/bench-int4")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(args.work) / args.shape
    dense = build_decoder(work / "checkpoint", args.shape)
    models, agreement = {"torch fp32": dense, "onnx fp32": work / "onnx-fp32"}, {}
    if not models["onnx fp32"].exists():
        export_onnx(str(dense), models["onnx fp32"], config=ExportConfig())
    for name, config in VARIANTS.items():
        models[name] = work / name.replace(" ", "-").replace("(", "").replace(")", "")
        summary = run_step(dense, config, models[name], StepOptions(overwrite=True))
        agreement[name] = summary.details["agreement"]["top1_agreement"]
    rows = []
    for seq in (int(s) for s in args.seq.split(",")):
        settings = BenchSettings(batch_sizes=(1,), seq_len=seq, runs=args.runs)
        results, _ = bench_models([str(p) for p in models.values()], settings)
        base = results[0]
        rows += [
            {
                "variant": name, "seq": seq, "p50_ms": round(r.latencies[0].p50_ms, 2),
                "stdev_ms": round(r.latencies[0].stdev_ms, 2),
                "speedup": round(base.latencies[0].p50_ms / r.latencies[0].p50_ms, 2),
                "params": r.extra["size"]["params_total"],
                "bytes_on_disk": r.extra["size"]["bytes_on_disk"],
                "top1_agreement": agreement.get(name),
            }
            for name, r in zip(models, results, strict=True)
        ]  # fmt: skip
    if args.json:
        print(json.dumps({"rows": rows, "machine": base.machine}, indent=2))
        return
    print(f"{args.shape} decoder, {rows[0]['params'] / 1e6:.1f}M parameters, batch 1, "
          f"{args.runs} runs; {describe_machine(base.machine)}")  # fmt: skip
    for row in rows:
        agree = f", top-1 agreement {row['top1_agreement']:.2%}" if row["top1_agreement"] else ""
        mib = row["bytes_on_disk"] / 2**20
        print(f"  seq {row['seq']:>3} {row['variant']:<20} p50 {row['p50_ms']:8.2f} ms "
              f"(sd {row['stdev_ms']:.2f}) "
              f"{row['speedup']:5.2f}x, {mib:7.1f} MiB{agree}")  # fmt: skip


if __name__ == "__main__":
    main()
