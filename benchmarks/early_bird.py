"""Early-bird tickets against fine-tune-then-prune on the demo (MiniLM, movie reviews).

Both paths end at the same size (the same fraction of heads and FFN neurons removed, uniform
across layers) from the same pre-trained encoder, data, seed and step budget:

- usual: fine-tune the full model for the budget, prune it structurally (Taylor importance on
  the training data), then recover for ``--recovery-steps``;
- early-bird: ``squeeze finetune --early-bird``: slimming scales while fine-tuning, the ticket
  drawn once its masks settle, the pruned model fine-tuned for the rest of the budget.

Prints each path's training time (every phase timed) and its test accuracy, in one process on
one machine. Needs the demo assets (`make demo` fetches them).

    python benchmarks/early_bird.py [--heads 0.5 --ffn 0.5 --epochs 2 --recovery-steps 80]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from squeeze.data.assets import demo_model_path
from squeeze.data.spec import DataSpec
from squeeze.engine.runner import run_step
from squeeze.engine.step import StepOptions
from squeeze.measure.evaluate import evaluate
from squeeze.measure.machine import describe_machine, fingerprint
from squeeze.methods.finetune import finetune
from squeeze.methods.prune.early_bird import EarlyBirdConfig
from squeeze.methods.prune.structured import StructuredPruneConfig
from squeeze.train.loop import TrainConfig


def _test_accuracy(path: Path, data: DataSpec, max_length: int) -> float:
    from dataclasses import replace

    from squeeze.data.encoding import encode_for
    from squeeze.model.checkpoint import load

    loaded = load(str(path))
    test = replace(data, split="test", max_samples=None)
    encoded, _ = encode_for(loaded, test, max_length=max_length)
    return evaluate(loaded, encoded).primary.value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=".cache/demo/movie_reviews.tsv")
    parser.add_argument("--heads", type=float, default=0.5)
    parser.add_argument("--ffn", type=float, default=0.5)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--max-samples", type=int, default=2000)
    parser.add_argument("--recovery-steps", type=int, default=80)
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    data = DataSpec(args.data, text_column="text", label_column="score", label_map="sign",
                    max_samples=args.max_samples)  # fmt: skip
    train = TrainConfig(epochs=args.epochs, lr=1e-4, batch_size=32, seed=args.seed)
    base = str(demo_model_path())
    rows = {}
    with tempfile.TemporaryDirectory(prefix="early-bird-") as work:
        root = Path(work)
        start = time.perf_counter()
        full = finetune(base, data, root / "full", config=train, max_length=args.max_length)
        tuned_s = time.perf_counter() - start
        prune = StructuredPruneConfig(
            heads=args.heads, ffn=args.ffn, finetune_steps=args.recovery_steps, lr=1e-4,
            seed=args.seed,
        )  # fmt: skip
        start = time.perf_counter()
        run_step(str(root / "full"), prune, root / "pruned",
                 StepOptions(data=data, max_length=args.max_length, measure=False))  # fmt: skip
        pruned_s = time.perf_counter() - start
        rows["fine-tune, prune, recover"] = {
            "steps": full.train.steps + args.recovery_steps,
            "train_s": tuned_s + pruned_s,
            "phases_s": {"fine-tune": tuned_s, "prune + recovery": pruned_s},
            "test_accuracy": _test_accuracy(root / "pruned", data, args.max_length),
        }
        bird = EarlyBirdConfig(heads=args.heads, ffn=args.ffn, threshold=args.threshold)
        start = time.perf_counter()
        early = finetune(base, data, root / "bird", config=train, max_length=args.max_length,
                         early_bird=bird)  # fmt: skip
        bird_s = time.perf_counter() - start
        ticket = early.early_bird or {}
        rows["early-bird"] = {
            "steps": ticket.get("total_steps"),
            "train_s": bird_s,
            "phases_s": {"search": ticket.get("search_s"), "ticket": ticket.get("ticket_train_s")},
            "drawn_at_step": ticket.get("drawn_at_step"),
            "settled": ticket.get("settled"),
            "test_accuracy": _test_accuracy(root / "bird", data, args.max_length),
        }
    machine = fingerprint()
    if args.json:
        print(json.dumps({"rows": rows, "machine": machine, "args": vars(args)}, indent=2))
        return
    print(f"MiniLM on movie reviews, {args.heads:.0%} heads + {args.ffn:.0%} FFN removed, "
          f"{args.epochs:g} epochs of {args.max_samples} samples, seed {args.seed}; "
          f"{describe_machine(machine)}")  # fmt: skip
    for name, row in rows.items():
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in row["phases_s"].items() if v is not None)
        extra = f", ticket at step {row['drawn_at_step']}" if "drawn_at_step" in row else ""
        print(f"  {name:<26} {row['train_s']:7.1f} s ({phases}{extra}); test accuracy "
              f"{row['test_accuracy']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
