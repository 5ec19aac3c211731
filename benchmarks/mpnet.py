"""MPNet on real weights: all-mpnet-base-v2 fine-tuned on the movie reviews, compressed by the CLI.

Drives `squeeze` the way a user does (subprocesses, `--json`): fine-tunes the all-mpnet-base-v2
encoder (`python -m squeeze.data.assets mpnet`) on a seeded subset of the movie-review sentences at
max length 64 (kept in .cache/mpnet/ under a name made of the settings: reruns skip it), then runs
`squeeze eval` (fp32, test split), `squeeze quantize --dtype int8` (ONNX Runtime dynamic, accuracy
before and after on the test split), `squeeze export`, `squeeze prune --method structured --heads
0.25 --ffn 0.25` (reloaded by `squeeze eval`, exported, run in ONNX Runtime), a brief `squeeze
distill --student-layers 6`, and `squeeze bench` once over all of them per thread count (batch 1,
seq 64, rotating blocks, identical inputs and threads). Prints accuracy, parameters, size on disk
and p50 latency (p10..p90) per variant with the machine's fingerprint, and checks the target:
int8 within 0.5 points of fp32. Exits 1 if it is missed or a command failed (the others still run).

    python benchmarks/mpnet.py [--train-samples 800 --epochs 1 --threads 1,2 --json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from squeeze.measure.machine import describe_machine, fingerprint

ACCURACY_DROP_TARGET = 0.5  # points
PRUNE = ("--method", "structured", "--heads", "0.25", "--ffn", "0.25")


def _squeeze_command() -> list[str]:
    """The `squeeze` script beside this interpreter (the venv's), else `python -m squeeze`."""
    script = Path(sys.executable).with_name("squeeze")
    return [str(script)] if script.exists() else [sys.executable, "-m", "squeeze"]


class Runner:
    """Runs CLI commands with `--json`, timing them; a failure is recorded, not raised."""

    def __init__(self) -> None:
        self.env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
        self.env.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.steps: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []

    def __call__(self, name: str, *args: str) -> dict[str, Any] | None:
        """``squeeze ARGS --json`` (ARGS starts with the command), recorded under ``name``."""
        command = [*_squeeze_command(), *args, "--json"]
        shown = " ".join(["squeeze", *args])
        print(f"  [{time.strftime('%H:%M:%S')}] {shown}", flush=True)
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=self.env, check=False)
        seconds = time.perf_counter() - start
        self.steps.append({"step": name, "command": shown, "rc": done.returncode, "s": seconds})
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-25:]
            self.failures.append({"step": name, "command": shown, "rc": done.returncode,
                                  "stderr_tail": tail})  # fmt: skip
            print(f"    FAILED (exit {done.returncode}, {seconds:.0f} s):", flush=True)
            for line in tail:
                print(f"      {line}")
            return None
        print(f"    done in {seconds:.0f} s", flush=True)
        return json.loads(done.stdout)


def _asset(*args: str) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "squeeze.data.assets", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr.strip() or f"squeeze.data.assets {args[0]} failed")
    return Path(done.stdout.strip())


def _lscpu_model() -> str | None:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            return value.strip()
    return None


def _accuracy(summary: dict[str, Any] | None, key: str | None = "metric_after") -> float | None:
    """Accuracy from a step summary's metric (``key``) or from `squeeze eval` (``key=None``)."""
    metric = summary if key is None else (summary or {}).get(key)
    return metric["metrics"]["accuracy"] if metric else None


def _finetune(run: Runner, base: Path, data: list[str], args: argparse.Namespace) -> Path | None:
    name = (
        f"{base.name}-ft-n{args.train_samples}-e{args.epochs:g}-lr{args.lr:g}-b{args.batch_size}"
        f"-len{args.max_length}"
    )
    out = Path(args.work).parent / name  # outside the per-run folder: kept between runs
    if (out / "config.json").exists() and (out / "finetune.json").exists():
        print(f"  fine-tuned model cached: {out}")
        return out
    summary = run(
        "finetune", "finetune", str(base), *data, "--max-samples", str(args.train_samples),
        "--max-eval-samples", str(args.eval_samples), "--epochs", f"{args.epochs:g}",
        "--lr", f"{args.lr:g}", "--batch-size", str(args.batch_size),
        "--max-length", str(args.max_length), "-o", str(out), "--overwrite", "-q",
    )  # fmt: skip
    return out if summary is not None else None


def _bench_rows(
    bench: dict[str, Any], names: dict[str, str], accuracy: dict[str, float | None]
) -> list[dict[str, Any]]:
    """One row per measured model; speed-up and latency ratio against the first (fp32 torch)."""
    rows = []
    base = bench["results"][0]["latency"][0]
    for result in bench["results"]:
        lat = result["latency"][0]
        p10, p90 = (float(np.percentile(lat["samples_ms"], q)) for q in (10, 90))
        # The spread of the ratio: the variant's p10 and p90 over the baseline's p90 and p10.
        ratio_low = p10 / float(np.percentile(base["samples_ms"], 90))
        ratio_high = p90 / float(np.percentile(base["samples_ms"], 10))
        variant = names[result["name"]]
        rows.append({
            "variant": variant, "runtime": result["runtime"], "threads": lat["threads"],
            "accuracy": accuracy.get(variant), "params": result["size"]["params_total"],
            "bytes_on_disk": result["size"]["bytes_on_disk"],
            "p50_ms": round(lat["p50_ms"], 2), "p10_ms": round(p10, 2), "p90_ms": round(p90, 2),
            "latency_ratio": round(lat["p50_ms"] / base["p50_ms"], 3),
            "latency_ratio_range": [round(ratio_low, 3), round(ratio_high, 3)],
            "speedup": round(base["p50_ms"] / lat["p50_ms"], 2),
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", help="another encoder to run instead (default: the all-mpnet-base-v2 asset)"
    )
    parser.add_argument("--train-samples", type=int, default=800, help="fine-tuning subset")
    parser.add_argument("--eval-samples", type=int, default=200, help="validation subset")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--distill-samples", type=int, default=320)
    parser.add_argument("--distill-steps", type=int, default=20)
    parser.add_argument("--no-distill", action="store_true", help="skip squeeze distill")
    parser.add_argument(
        "--threads", default="", help="intra-op thread counts to bench, e.g. 1,2 (default: 1,cores)"
    )
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--work", default=".cache/mpnet/run")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = parser.parse_args()

    start = time.perf_counter()
    cores = os.cpu_count() or 1
    threads = [int(t) for t in args.threads.split(",") if t] or sorted({1, cores})
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"mpnet.py: an encoder on the movie reviews; {describe_machine(fingerprint())}")
    base = Path(args.model) if args.model else _asset("mpnet", str(work.parent))
    tsv = _asset("movie-reviews", ".cache/demo")
    data = ["--data", str(tsv), "--text-column", "text", "--label-column", "score",
            "--label-map", "sign"]  # fmt: skip
    length = ["--max-length", str(args.max_length)]
    run = Runner()

    figures: dict[str, Any] = {}
    model = _finetune(run, base, data, args)
    if model is None:
        raise SystemExit("fine-tuning failed; nothing else to measure")
    figures["finetune"] = json.loads((model / "finetune.json").read_text())
    out = {name: work / name for name in ("int8", "onnx", "pruned", "pruned-onnx", "distilled")}
    figures["eval"] = run("eval fp32", "eval", str(model), *data, "--split", "test", *length, "-q")
    figures["quantize"] = run(
        "quantize int8", "quantize", str(model), "--dtype", "int8", *data, *length,
        "-o", str(out["int8"]), "--overwrite", "-q",
    )  # fmt: skip
    figures["export"] = run("export", "export", str(model), "-o", str(out["onnx"]), "--overwrite")
    figures["prune"] = run(
        "prune", "prune", str(model), *PRUNE, *length, "-o", str(out["pruned"]), "--overwrite", "-q"
    )
    if figures["prune"] is not None:
        figures["eval_pruned"] = run(
            "eval pruned", "eval", str(out["pruned"]), *data, "--split", "test", *length, "-q"
        )
        figures["export_pruned"] = run(
            "export pruned", "export", str(out["pruned"]), "-o", str(out["pruned-onnx"]),
            "--overwrite",
        )  # fmt: skip
    if not args.no_distill:
        figures["distill"] = run(
            "distill", "distill", str(model), "--student-layers", "6", *data,
            "--max-samples", str(args.distill_samples), "--max-steps", str(args.distill_steps),
            "--batch-size", str(args.batch_size), *length, "--no-bench",
            "-o", str(out["distilled"]), "--overwrite", "-q",
        )  # fmt: skip

    # What was written, in table order; each gets its accuracy on the test split where measured.
    candidates = {
        "fp32 torch (baseline)": (model, _accuracy(figures["eval"], None)),
        "fp32 onnx": (out["onnx"], None),
        "int8 onnx": (out["int8"], _accuracy(figures["quantize"])),
        "pruned torch": (out["pruned"], _accuracy(figures.get("eval_pruned"), None)),
        "pruned onnx": (out["pruned-onnx"], None),
        "distilled 6L torch": (out["distilled"], _accuracy(figures.get("distill"))),
    }
    written = {"eval": "fp32 torch (baseline)", "export": "fp32 onnx", "quantize": "int8 onnx",
               "prune": "pruned torch", "export_pruned": "pruned onnx",
               "distill": "distilled 6L torch"}  # fmt: skip
    present = {"fp32 torch (baseline)"} | {
        variant for step, variant in written.items() if step != "eval" and figures.get(step)
    }
    models = {name: spec for name, spec in candidates.items() if name in present}
    names = {str(path): name for name, (path, _) in models.items()}
    accuracy = {name: acc for name, (_, acc) in models.items()}

    benches: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for count in threads:
        load = os.getloadavg()[0]
        bench = run(
            f"bench threads={count}", "bench", *names, "--batch", "1",
            "--seq", str(args.max_length), "--runs", str(args.runs), "--threads", str(count), "-q",
        )  # fmt: skip
        if bench is not None:
            bench["load_average_1m_before"] = load
            benches.append(bench)
            rows += _bench_rows(bench, names, accuracy)

    fp32_acc = accuracy["fp32 torch (baseline)"]
    quantize = figures["quantize"] or {}
    targets = []
    if quantize.get("drop_points") is not None:
        drop = quantize["drop_points"]
        targets.append({
            "target": f"int8 accuracy within {ACCURACY_DROP_TARGET:g} points of fp32",
            "value": round(drop, 3), "passed": drop <= ACCURACY_DROP_TARGET,
        })  # fmt: skip
    before = _accuracy(quantize, "metric_before")
    consistent = before is None or fp32_acc is None or abs(before - fp32_acc) < 1e-9
    machine = fingerprint()  # this process: torch threads = cores; each bench sets its own
    report = {
        "model": str(base), "finetuned": str(model), "max_length": args.max_length,
        "train_samples": args.train_samples, "epochs": args.epochs, "threads": threads,
        "rows": rows, "targets": targets, "fp32_accuracy_eval": fp32_acc,
        "fp32_accuracy_quantize": before, "consistent_fp32": consistent,
        "failures": run.failures, "steps": run.steps, "figures": figures, "bench": benches,
        "machine": machine, "lscpu_model": _lscpu_model(),
        "seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    passed = bool(targets) and all(t["passed"] for t in targets) and not run.failures
    report["passed"] = passed
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")

    train = figures["finetune"]["train"]
    print(
        f"\n{base.name} fine-tuned on {figures['finetune']['n_train']} movie reviews "
        f"({train['steps']} steps, {train['elapsed_s']:.0f} s); batch 1, seq {args.max_length}, "
        f"{args.runs} runs; {describe_machine(machine)}; lscpu: {report['lscpu_model']}"
    )
    n_test = (figures["eval"] or {}).get("n_samples")
    print(f"  accuracy on the test split (n={n_test}); '=' marks an export validated against "
          "its checkpoint (max logit difference 1e-4)")  # fmt: skip
    header = (
        f"  {'variant':<22} {'thr':>3} {'accuracy':>8} {'params':>8} {'MiB':>7} {'p50 ms':>8} "
        f"{'p10..p90 ms':>15} {'ratio':>6} {'speed-up':>8}"
    )
    for count in threads:
        print(header)
        for row in (r for r in rows if r["threads"] == count):
            acc = f"{row['accuracy']:.4f}" if row["accuracy"] is not None else "="
            spread = f"{row['p10_ms']:.1f}..{row['p90_ms']:.1f}"
            print(
                f"  {row['variant']:<22} {row['threads']:>3} {acc:>8} "
                f"{row['params'] / 1e6:7.1f}M {row['bytes_on_disk'] / 2**20:7.1f} "
                f"{row['p50_ms']:8.1f} {spread:>15} {row['latency_ratio']:6.3f} "
                f"{row['speedup']:7.2f}x"
            )
    for bench in benches:
        count = bench["results"][0]["latency"][0]["threads"]
        print(
            f"  load average before the {count}-thread bench: {bench['load_average_1m_before']:.2f}"
        )
    for count in threads:
        int8 = next(
            (r for r in rows if r["threads"] == count and r["variant"] == "int8 onnx"), None
        )
        if int8 is not None:
            low, high = int8["latency_ratio_range"]
            print(
                f"  int8 onnx / fp32 torch latency, {count} thread(s): {int8['latency_ratio']:.3f} "
                f"(p10..p90 ratio {low:.3f}..{high:.3f}; {int8['speedup']:.2f}x faster)"
            )
    if not consistent:
        print(f"  NOTE: squeeze eval gave fp32 accuracy {fp32_acc}, squeeze quantize {before}")
    for t in targets:
        print(f"  {'PASS' if t['passed'] else 'FAIL'}  {t['target']}: drop {t['value']:.2f} points")
    for failure in run.failures:
        print(f"  FAILED  {failure['command']} (exit {failure['rc']})")
    print(
        f"  {report['seconds'] / 60:.1f} min in all" + (f"; wrote {args.json}" if args.json else "")
    )
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
