"""Structured pruning of all-MiniLM-L6-v2 as an embedder, recovered by embedding distillation.

Issue 28's target: remove 50% of the attention heads and FFN neurons, recover by distillation
from the original's sentence embeddings on the movie reviews' training text (unlabelled: the
recovery never reads a label), and stay within 1 point of the original's k-nearest-neighbour
accuracy on the test split (labels = sign of the score). It runs the CLI as a user would, in
subprocesses:

- ``squeeze prune MODEL --method structured --heads H --ffn F --finetune-steps N --lr LR
  --embedding-loss L -d reviews.tsv ...`` once per recovery setting (``none`` = pruning alone).
  Each summary holds the original's and the pruned model's kNN accuracy on the test split, the
  change with its 95% paired bootstrap interval, and the fidelity (mean cosine of the pruned
  model's embeddings of the test texts to the original's, their similarity Spearman and top-10
  neighbour overlap);
- ``squeeze bench ORIGINAL BEST`` (PyTorch, batch 1 and 32, ``--seq`` tokens) on the setting
  with the best kNN accuracy, both models timed together in rotating blocks.

It prints one row per setting and the latency, with the machine. ``--quick`` runs the same
commands on a tiny random embedder and generated sentences in seconds (CI keeps the script
working; its figures mean nothing).

    python benchmarks/embedder_prune.py [--settings none,cosine:800:1e-4,mse:800:1e-4]
        [--heads 0.5 --ffn 0.5] [--batch-size 32] [--max-length 64] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = ".cache/demo/movie_reviews.tsv"
DATA_OPTIONS = ("--text-column", "text", "--label-column", "score", "--label-map", "sign")


def _squeeze(*args: object) -> dict:
    """Run ``squeeze ARGS --json`` as a user would; its JSON summary."""
    command = [sys.executable, "-m", "squeeze", *map(str, args), "--json", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout)


def _setting(text: str) -> tuple[str, int, float]:
    """``loss:steps:lr`` (``cosine:800:1e-4``), or ``none`` for pruning alone."""
    if text == "none":
        return "cosine", 0, 5e-5
    loss, steps, lr = text.split(":")
    return loss, int(steps), float(lr)


def _quick_assets(work: Path) -> tuple[str, str, tuple[str, ...]]:
    """A tiny random embedder and 600 generated labelled sentences."""
    from squeeze.core.types import Task
    from squeeze.model.tiny import build_tiny, write_order_task

    model = build_tiny("bert", work / "tiny-embedder", task=Task.EMBEDDING)
    data = write_order_task(work / "order.csv", 600)
    return str(model), str(data), ()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="Embedder folder (default: the demo's all-MiniLM-L6-v2).")
    parser.add_argument("--data", default=DATA)
    parser.add_argument(
        "--settings",
        default="none,cosine:800:1e-4,mse:800:1e-4",
        help="Recovery settings, comma-separated: loss:steps:lr, or none.",
    )
    parser.add_argument("--heads", type=float, default=0.5)
    parser.add_argument("--ffn", type=float, default=0.5)
    parser.add_argument("--importance", default="taylor", choices=("taylor", "magnitude"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seq", type=int, default=64, help="Tokens per text when timing.")
    parser.add_argument("--runs", type=int, default=30, help="Timed runs per model and batch.")
    parser.add_argument("--quick", action="store_true", help="Tiny model and data (CI).")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--work", help="Keep the pruned models here (default: a temp folder).")
    args = parser.parse_args()  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.quick:
            model, data, data_options = _quick_assets(work)
        else:
            from squeeze.data.assets import demo_model_path

            model, data, data_options = (
                str(args.model or demo_model_path()),
                args.data,
                DATA_OPTIONS,
            )
            if not Path(data).is_file():
                raise SystemExit(f"{data} is missing: run `make demo` first (it fetches it)")
        common = ("-d", data, *data_options, "--max-length", args.max_length)
        rows = []
        for index, text in enumerate(args.settings.split(",")):
            loss, steps, lr = _setting(text.strip())
            out = work / f"pruned-{index}"
            start = time.perf_counter()
            summary = _squeeze(
                "prune", model, "--method", "structured", "--heads", args.heads, "--ffn",
                args.ffn, "--importance", args.importance, "--finetune-steps", steps, "--lr", lr,
                "--batch-size", args.batch_size, "--embedding-loss", loss, *common, "-o", out,
                "--overwrite",
            )  # fmt: skip
            before, after = summary["metric_before"], summary["metric_after"]
            rows.append({
                "setting": "pruning alone" if not steps else f"{loss}, {steps} steps, lr {lr:g}",
                "out": str(out),
                "knn_before": before["metrics"]["knn_accuracy"],
                "knn_after": after["metrics"]["knn_accuracy"],
                "drop_points": summary["drop_points"],
                "drop_ci95": summary["drop_ci95"],
                "n_test": after["n_samples"],
                **{k: after["metrics"][k] for k in ("fidelity", "sim_spearman", "top10_overlap")},
                "params_before": summary["before"]["params_total"],
                "params_after": summary["after"]["params_total"],
                "bytes_before": summary["before"]["bytes_on_disk"],
                "bytes_after": summary["after"]["bytes_on_disk"],
                "seconds": time.perf_counter() - start,
                "notes": summary["notes"],
            })  # fmt: skip
        best = max(rows, key=lambda r: r["knn_after"])
        batches = "1,32"
        timed = _squeeze("bench", model, best["out"], "--batch", batches, "--seq", args.seq,
                         "--runs", 3 if args.quick else args.runs)  # fmt: skip
    latency = {
        name: {str(lat["batch"]): lat["p50_ms"] for lat in result["latency"]}
        for name, result in zip(("original", "pruned"), timed["results"], strict=True)
    }
    machine = timed["results"][0]["machine"]
    if args.json:
        print(json.dumps({"rows": rows, "best": best["setting"], "latency_p50_ms": latency,
                          "seq": args.seq, "machine": machine}, indent=2))  # fmt: skip
        return
    print(f"{'MiniLM' if not args.quick else 'tiny embedder (quick: figures mean nothing)'}, "
          f"structured heads {args.heads} ffn {args.ffn} ({args.importance} importance); "
          f"kNN accuracy on the test split (n={rows[0]['n_test']}); {machine['cpu']}, "
          f"{machine['cores']} cores, {machine['torch_threads']} threads")  # fmt: skip
    print(
        f"  original: kNN {rows[0]['knn_before']:.4f}, "
        f"{rows[0]['params_before'] / 1e6:.2f}M params, {rows[0]['bytes_before'] / 2**20:.1f} MiB"
    )
    for r in rows:
        low, high = r["drop_ci95"]
        print(f"  {r['setting']:<30} kNN {r['knn_after']:.4f} (drop {r['drop_points']:+.2f} pts "
              f"[{low:+.2f}, {high:+.2f}]), fidelity {r['fidelity']:.4f}, sim rho "
              f"{r['sim_spearman']:.4f}, top-10 overlap {r['top10_overlap']:.3f}, "
              f"{r['params_after'] / 1e6:.2f}M params, {r['bytes_after'] / 2**20:.1f} MiB, "
              f"{r['seconds']:.0f} s")  # fmt: skip
    for batch in batches.split(","):
        o, p = latency["original"][batch], latency["pruned"][batch]
        print(
            f"  latency batch {batch}, {args.seq} tokens (p50, PyTorch): original {o:.2f} ms, "
            f"best pruned {p:.2f} ms ({o / p:.2f}x)"
        )


if __name__ == "__main__":
    main()
