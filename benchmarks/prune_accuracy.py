"""Accuracy of the demo model after pruning, with and without recovery fine-tuning.

Runs `squeeze prune`'s library function on the fine-tuned demo model (make demo builds it) for
magnitude sparsity 0.5 and 0.8 and structured heads 0.3 + FFN 0.5, each without and with
recovery steps, and prints accuracy on the held-out test split (1,035 sentences) before and after,
parameters and zipped size. Importance for structured pruning is first-order Taylor on the
training split.

    python benchmarks/prune_accuracy.py [--steps 100]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

from squeeze.data.spec import DataSpec
from squeeze.engine.runner import run_step
from squeeze.engine.step import StepOptions
from squeeze.measure.machine import describe_machine, fingerprint
from squeeze.methods.prune.magnitude import MagnitudePruneConfig
from squeeze.methods.prune.structured import StructuredPruneConfig

DEMO_MODEL = ".cache/demo/minilm-movie-reviews"
DEMO_DATA = DataSpec(
    ".cache/demo/movie_reviews.tsv", text_column="text", label_column="score", label_map="sign",
    max_samples=2000,
)  # fmt: skip
METHODS = {
    "magnitude 0.5": MagnitudePruneConfig(sparsity=0.5),
    "magnitude 0.8": MagnitudePruneConfig(sparsity=0.8),
    "structured heads 0.3 ffn 0.5": StructuredPruneConfig(heads=0.3, ffn=0.5, importance="taylor"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEMO_MODEL)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not Path(args.model, "config.json").exists():
        raise SystemExit(f"{args.model} is missing: run `make demo` first")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, method in METHODS.items():
            for steps in (0, args.steps):
                result = run_step(
                    args.model, replace(method, finetune_steps=steps), Path(tmp) / f"{len(rows)}",
                    StepOptions(data=DEMO_DATA, max_length=64),
                )  # fmt: skip
                rows.append({
                    "method": name, "recovery_steps": steps,
                    "accuracy_before": result.metric_before.primary.value,
                    "accuracy_after": result.metric_after.primary.value,
                    "n_test": result.metric_after.n_samples,
                    "params_after": result.after["params_total"],
                    "zipped_ratio": result.after["bytes_compressed"]
                    / result.before["bytes_compressed"],
                    "seconds": result.seconds,
                })  # fmt: skip
    if args.json:
        print(json.dumps({"rows": rows, "machine": fingerprint()}, indent=2))
        return
    print(f"demo model, test split; {describe_machine(fingerprint())}")
    for r in rows:
        print(
            f"  {r['method']:<29} recovery {r['recovery_steps']:>3} steps: accuracy "
            f"{r['accuracy_before']:.4f} -> {r['accuracy_after']:.4f} (n={r['n_test']}), "
            f"params {r['params_after'] / 1e6:.2f}M, zipped x{r['zipped_ratio']:.2f}, "
            f"{r['seconds']:.0f} s"
        )


if __name__ == "__main__":
    main()
