"""Training and evaluation throughput of the demo model's shape, with the machine it ran on.

all-MiniLM-L6-v2's architecture (BERT, 6 layers, hidden 384, 12 heads, FFN 1536) with random
weights, a 2-label head, batch 32 and 64 tokens (the demo's settings), on the CPU. Evaluation is
timed as the median of repeated passes after a warm-up; training as samples/s over a fixed number
of optimizer steps after one warm-up step. Run: `make bench` (or python benchmarks/throughput.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
import transformers

from squeeze.core.types import Task
from squeeze.data.encoding import Encoded
from squeeze.measure.evaluate import evaluate_forward
from squeeze.measure.machine import describe_machine, fingerprint
from squeeze.model.runtime import torch_forward
from squeeze.train.loop import TrainConfig, train


def minilm_shaped() -> torch.nn.Module:
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
        intermediate_size=1536, num_labels=2,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config).eval()


def synthetic(n: int, seq: int) -> Encoded:
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, size=(n, seq)).tolist()
    return Encoded(
        features={"input_ids": ids, "attention_mask": [[1] * seq for _ in range(n)]},
        labels=rng.integers(0, 2, size=n).astype(np.int64),
        pad_token_id=0,
        n_truncated=0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    model = minilm_shaped()
    data = synthetic(args.samples, args.seq)
    forward = torch_forward(model)
    evaluate_forward(forward, data, Task.SEQUENCE_CLASSIFICATION)  # warm-up
    eval_rates = [
        evaluate_forward(forward, data, Task.SEQUENCE_CLASSIFICATION).samples_per_s
        for _ in range(args.repeats)
    ]
    train(model, Task.SEQUENCE_CLASSIFICATION, data, TrainConfig(max_steps=1))  # warm-up
    start = time.perf_counter()
    result = train(
        model, Task.SEQUENCE_CLASSIFICATION, data, TrainConfig(max_steps=args.train_steps)
    )
    train_rate = result.samples_seen / (time.perf_counter() - start)

    figures = {
        "model": "all-MiniLM-L6-v2 shape (random weights)",
        "batch": 32,
        "seq_len": args.seq,
        "eval_samples_per_s_median": statistics.median(eval_rates),
        "eval_samples_per_s_min": min(eval_rates),
        "eval_samples_per_s_max": max(eval_rates),
        "train_samples_per_s": train_rate,
        "machine": fingerprint(),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"machine: {describe_machine(figures['machine'])}")
    print(f"{figures['model']}, batch 32, seq {args.seq}, CPU fp32")
    print(
        f"  eval : {figures['eval_samples_per_s_median']:.1f} samples/s median of {args.repeats} "
        f"(range {min(eval_rates):.1f}-{max(eval_rates):.1f})"
    )
    print(f"  train: {train_rate:.1f} samples/s over {args.train_steps} steps")


if __name__ == "__main__":
    main()
