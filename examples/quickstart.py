"""squeeze's Python API end to end, offline, in a few seconds.

Builds a tiny BERT and the order task (does 'a' come before 'b'?), fine-tunes a classifier on the
train split, saves it, reloads it and scores it on the test split it never saw. Swap the paths for
your own checkpoint and data file to do the same on a real model.

    python examples/quickstart.py [WORKDIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import squeeze
from squeeze.core.types import Task
from squeeze.data.encoding import encode
from squeeze.data.spec import DataSpec
from squeeze.measure.evaluate import evaluate
from squeeze.methods.finetune import finetune
from squeeze.model.tiny import build_tiny, write_order_task


def main(workdir: Path) -> float:
    data_file = write_order_task(workdir / "order.csv", 3000)
    base = build_tiny("bert", workdir / "tiny-bert", task=Task.MASKED_LM)

    result = finetune(
        str(base),
        DataSpec(str(data_file)),  # a single file: train on its train split, validate on its own
        workdir / "tiny-bert-order",
        config=squeeze.TrainConfig(epochs=10, lr=3e-3, warmup_ratio=0.05),
        max_length=32,
    )
    print(f"trained {result.train.steps} steps at {result.train.samples_per_s:.0f} samples/s")

    model = squeeze.load(result.out)
    test = squeeze.load_dataset(DataSpec(str(data_file), split="test"))
    encoded = encode(test, model.tokenizer, input_names=model.input_names, max_length=32,
                     label2id=model.config.label2id)  # fmt: skip
    accuracy = evaluate(model, encoded).primary
    print(f"test {accuracy.name}: {accuracy.value:.3f} on {accuracy.n_samples} held-out sentences")
    return accuracy.value


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
