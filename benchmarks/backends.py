"""Deployment backends on this CPU: what `squeeze quantize --backend auto` builds, times and picks.

For each model, one `--backend auto` run builds every int8 candidate this machine can run (ONNX
Runtime dynamic and static QDQ, OpenVINO weight-only and NNCF static, torchao), times all of
them and the fp32 PyTorch input in one rotating measurement at batch 1, scores them, and keeps
the fastest within the gate. Two models:

- BERT-base shape (random weights, seq 128): speed depends on shapes, not values; calibrated on
  generated text; no accuracy (random weights have none).
- The demo model (MiniLM-L6 fine-tuned on the movie reviews by `make demo`, seq 64): accuracy on
  the demo's test split, 1-point gate.

    python benchmarks/backends.py [--only bert-base|demo] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from squeeze.data.spec import DataSpec
from squeeze.engine.runner import run_step
from squeeze.engine.step import StepOptions
from squeeze.measure.machine import describe_machine
from squeeze.methods.quantize.method import QuantizeConfig
from squeeze.model.tiny import build_bert_shaped, write_order_task

DEMO_MODEL = ".cache/demo/minilm-movie-reviews"
DEMO_DATA = ".cache/demo/movie_reviews.tsv"


def _auto(model: Path, out: Path, options: StepOptions) -> dict[str, Any]:
    summary = run_step(model, QuantizeConfig(backend="auto"), out, options)
    report = summary.to_dict()
    report["metric_before"] = summary.metric_before.to_dict() if summary.metric_before else None
    return report


def _print(name: str, report: dict[str, Any]) -> None:
    auto = report["auto"]
    timing = auto["timing"]
    before = report["metric_before"]
    accuracy = f", accuracy {before['metrics']['accuracy']:.4f}" if before else ""
    ref = auto["reference"]
    print(f"{name}: batch 1, seq {timing['seq_len']}, {timing['runs']} runs in "
          f"{timing['rounds']} rotating rounds; {describe_machine(auto['machine'])}")  # fmt: skip
    print(f"  {'fp32 PyTorch (input)':<24} p50 {ref['p50_ms']:8.2f} ms (sd {ref['stdev_ms']:.2f})"
          f"  1.00x{accuracy}")  # fmt: skip
    for c in auto["candidates"]:
        if "skipped" in c:
            print(f"  {c['label']:<24} skipped: {c['skipped']}")
            continue
        metric = c["metric"]
        scored = (
            f", accuracy {metric['metrics']['accuracy']:.4f} (drop {c['drop']:+.2f} pts, 95% "
            f"[{c['drop_interval'][0]:+.2f}, {c['drop_interval'][1]:+.2f}])"
            if metric else ""
        )  # fmt: skip
        mark = "  <- auto's choice" if c["chosen"] else ("" if c["passed"] else "  (missed gate)")
        mib = c["bytes_on_disk"] / 2**20
        print(f"  {c['label']:<24} p50 {c['p50_ms']:8.2f} ms (sd {c['stdev_ms']:.2f}) "
              f"{c['speedup']:5.2f}x, {mib:6.1f} MiB{scored}{mark}")  # fmt: skip
    passing = [c for c in auto["candidates"] if c.get("passed")]
    fastest = min(passing, key=lambda c: c["p50_ms"])["label"] if passing else None
    print(f"  auto chose {auto['chosen']}; fastest within the gate in this run: {fastest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("bert-base", "demo"))
    parser.add_argument("--demo-model", default=DEMO_MODEL)
    parser.add_argument("--data", default=DEMO_DATA)
    parser.add_argument("--gate", type=float, default=1.0, help="points (demo model)")
    parser.add_argument("--work", default=".cache/bench-backends")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(args.work)
    reports = {}
    if args.only in (None, "bert-base"):
        dense = build_bert_shaped("bert-base", work / "bert-base")
        calibration = write_order_task(work / "calibration.csv", 256)
        options = StepOptions(calibration_data=DataSpec(str(calibration)), max_length=128,
                              overwrite=True)  # fmt: skip
        reports["bert-base shape"] = _auto(dense, work / "bert-base-auto", options)
    if args.only in (None, "demo"):
        data = DataSpec(args.data, text_column="text", label_column="score", label_map="sign")
        options = StepOptions(data=data, max_length=64, max_accuracy_drop=args.gate,
                              overwrite=True)  # fmt: skip
        reports["demo model"] = _auto(Path(args.demo_model), work / "demo-auto", options)
    if args.json:
        print(json.dumps(reports, indent=2, default=str))
        return
    for name, report in reports.items():
        _print(name, report)


if __name__ == "__main__":
    main()
