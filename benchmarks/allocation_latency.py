"""Uneven layer widths against uniform ones at the same parameter count: what they cost in speed.

`squeeze prune --allocation global` removes the same number of heads and FFN neurons as the
uniform prune, but where they matter least, so layers keep different widths. Same parameters and
FLOPs; the question is whether uneven matrices run slower (less regular kernels, per-layer head
counts in the fused attention). Builds a BERT-base-shaped classifier with random weights, prunes
it three ways at the same amounts, quantizes each to the deployed int8 ONNX format, and times
all of them in one rotating measurement:

- uniform: every layer loses the same share;
- global: the global ranking on these weights (random weights give mildly uneven widths);
- skewed: a scripted ranking that keeps early layers wide and late ones narrow (the widest
  spread the ranking can produce), to bound the effect.

    python benchmarks/allocation_latency.py [--heads 0.5 --ffn 0.5 --seq 128 --runs 30]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from squeeze.engine.runner import run_step
from squeeze.measure.bench import bench_models
from squeeze.measure.latency import BenchSettings
from squeeze.measure.machine import describe_machine
from squeeze.methods.prune.importance import Importance, magnitude_importance
from squeeze.methods.prune.slicing import prune_structured
from squeeze.methods.prune.structured import StructuredPruneConfig
from squeeze.methods.quantize.method import QuantizeConfig
from squeeze.model.checkpoint import load, save
from squeeze.model.tiny import BERT_SHAPES, build_bert_shaped


def _skewed(n_layers: int, heads: int, width: int) -> Importance:
    """Flat scores in the first layer, ever steeper ones deeper down: the per-layer
    normalisation leaves flat layers' units all fairly important and steep layers' tails near
    zero, so the early layers stay wide and the late ones turn narrow."""
    import torch

    def layer(i: int, n: int) -> torch.Tensor:
        power = 3.0 * i / max(n_layers - 1, 1)
        return (torch.arange(1, n + 1).float() ** -power)[torch.randperm(n)]

    return Importance(
        "skewed",
        [layer(i, heads) for i in range(n_layers)],
        [layer(i, width) for i in range(n_layers)],
    )


def _prune(
    dense: Path, out: Path, config: StructuredPruneConfig, how: str
) -> tuple[list[int], list[int]]:
    """Prune ``dense`` into ``out`` once; return each layer's head and FFN counts."""
    import torch

    if not out.exists():
        loaded = load(str(dense))
        if how == "skewed":
            torch.manual_seed(0)
            c = loaded.config
            importance = _skewed(c.num_hidden_layers, c.num_attention_heads, c.intermediate_size)
        else:
            importance = magnitude_importance(loaded.model, loaded.spec, loaded.config)
        loaded.shapes, _, _ = prune_structured(loaded.model, loaded.spec, config, importance)
        save(loaded, out)
    shapes = json.loads((out / "squeeze.json").read_text())["layers"]
    return [layer["heads"] for layer in shapes], [layer["ffn"] for layer in shapes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(BERT_SHAPES), default="bert-base")
    parser.add_argument("--heads", type=float, default=0.5)
    parser.add_argument("--ffn", type=float, default=0.5)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--work", default=".cache/bench")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(args.work) / args.shape
    dense = build_bert_shaped(args.shape, work / "checkpoint")
    widths, models = {}, {}
    for how in ("uniform", "global", "skewed"):
        allocation = "uniform" if how == "uniform" else "global"
        config = StructuredPruneConfig(heads=args.heads, ffn=args.ffn, allocation=allocation)
        pruned = work / f"alloc-{how}-h{args.heads}-f{args.ffn}"
        widths[how] = _prune(dense, pruned, config, how)
        int8 = work / f"{pruned.name}-int8"
        if not int8.exists():
            run_step(str(pruned), QuantizeConfig(), int8)
        models[f"{how} torch fp32"] = str(pruned)
        models[f"{how} onnx int8"] = str(int8)
    settings = BenchSettings(seq_len=args.seq, runs=args.runs)
    results, _ = bench_models(list(models.values()), settings)
    by_path = {r.name: r for r in results}
    rows = []
    for label, path in models.items():
        latency = by_path[path].latencies[0]
        rows.append(
            {
                "variant": label,
                "params": by_path[path].extra["size"]["params_total"],
                "p50_ms": round(latency.p50_ms, 2),
                "p90_ms": round(latency.p90_ms, 2),
            }
        )
    base = {
        row["variant"].split()[1]: row["p50_ms"]
        for row in rows
        if row["variant"].startswith("uniform")
    }
    for row in rows:
        row["vs_uniform"] = round(row["p50_ms"] / base[row["variant"].split()[1]], 3)
    machine = results[0].machine
    if args.json:
        print(json.dumps({"rows": rows, "widths": widths, "machine": machine}, indent=2))
        return
    print(f"{args.shape}: heads {args.heads:.0%} + FFN {args.ffn:.0%} removed, batch 1, seq "
          f"{args.seq}, {args.runs} runs; {describe_machine(machine)}")  # fmt: skip
    for how, (heads, ffn) in widths.items():
        print(f"  {how:<8} heads per layer {heads}; FFN {min(ffn)}-{max(ffn)}")
    for row in rows:
        print(f"  {row['variant']:<20} {row['params'] / 1e6:6.1f}M params  p50 "
              f"{row['p50_ms']:8.2f} ms (p90 {row['p90_ms']:.2f})  "
              f"{row['vs_uniform']:.3f}x uniform's time")  # fmt: skip


if __name__ == "__main__":
    main()
