"""A stopped training run resumes exactly where it was; several processes share the batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from squeeze.core.errors import ConfigError, OutputExistsError
from squeeze.core.types import Evaluation, Metric
from squeeze.data.encoding import encode
from squeeze.data.examples import load_dataset
from squeeze.data.spec import DataSpec
from squeeze.model.checkpoint import load
from squeeze.train.loop import TrainConfig, _micro_batches, train
from squeeze.train.resume import check_resume


def _data(loaded, order_csv, n=96):
    dataset = load_dataset(DataSpec(str(order_csv), split="train", max_samples=n))
    return encode(
        dataset, loaded.tokenizer, input_names=loaded.input_names, max_length=32,
        label2id=loaded.config.label2id,
    )  # fmt: skip


class Interrupted(Exception):
    pass


def _run(source, order_csv, scores, checkpoint_dir=None, stop_at=None, resume=False):
    """10 steps with dropout (the tiny BERT's 0.1), evaluation every 2 and a best-weights copy;
    optionally killed at a step."""
    loaded = load(source)
    data = _data(loaded, order_csv)
    scores = iter(scores)

    def scripted_eval():
        return Evaluation((Metric("accuracy", next(scores), 8),), 8, 0.0)

    def on_step(state):
        if state.step == stop_at:
            raise Interrupted

    if resume:  # evaluations before the checkpoint were already consumed
        for _ in range(2):
            next(scores)
    config = TrainConfig(max_steps=10, batch_size=16, lr=1e-2, eval_every=2)
    result = train(
        loaded.model, loaded.task, data, config, evaluate_fn=scripted_eval, on_step=on_step,
        checkpoint_dir=checkpoint_dir, save_every=4, resume=resume,
    )  # fmt: skip
    return loaded.model.state_dict(), result


@pytest.mark.parametrize(
    ("scores", "best"),
    [([0.5, 0.6, 0.7, 0.8, 0.9], 10), ([0.5, 0.9, 0.6, 0.7, 0.8], 4)],
    ids=["best-at-the-end", "best-before-the-checkpoint"],
)
def test_resumed_run_equals_an_uninterrupted_one(
    scores, best, tiny_classifiers, order_csv, tmp_path
):
    source = tiny_classifiers["bert"]
    expected, straight = _run(source, order_csv, scores)
    folder = tmp_path / "ckpt"
    with pytest.raises(Interrupted):
        _run(source, order_csv, scores, folder, stop_at=7)
    assert (folder / "last" / "trainer_state.json").is_file()
    assert (folder / "last" / "best.safetensors").is_file()
    got, resumed = _run(source, order_csv, scores, folder, resume=True)

    assert resumed.resumed_from == 4 and resumed.steps == 10
    assert resumed.best_step == straight.best_step == best
    assert [h["step"] for h in resumed.history] == [2, 4, 6, 8, 10]
    assert resumed.samples_seen == straight.samples_seen
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0)


def test_a_checkpoint_from_other_settings_is_refused(tiny_classifiers, order_csv, tmp_path):
    loaded = load(tiny_classifiers["bert"])
    data = _data(loaded, order_csv)
    folder = tmp_path / "ckpt"
    train(loaded.model, loaded.task, data, TrainConfig(max_steps=3, batch_size=16),
          checkpoint_dir=folder, save_every=1)  # fmt: skip
    with pytest.raises(ConfigError, match="other settings \\(lr\\)"):
        train(loaded.model, loaded.task, data, TrainConfig(max_steps=3, batch_size=16, lr=1e-3),
              checkpoint_dir=folder, resume=True)  # fmt: skip


def test_check_resume_guards_interrupted_runs(tmp_path):
    folder = tmp_path / "out.checkpoint"
    assert check_resume(folder, resume=False, overwrite=False) is False
    with pytest.raises(ConfigError, match="no checkpoint"):
        check_resume(folder, resume=True, overwrite=False)
    (folder / "last").mkdir(parents=True)
    (folder / "last" / "trainer_state.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="pass resume to continue"):
        check_resume(folder, resume=False, overwrite=False)
    assert check_resume(folder, resume=True, overwrite=False) is True
    assert check_resume(folder, resume=False, overwrite=True) is False and not folder.exists()


def test_processes_split_the_batch_stream_and_resume_skips(tiny_classifiers, order_csv):
    loaded = load(tiny_classifiers["bert"])
    data = _data(loaded, order_csv, n=80)  # 5 batches of 16 per epoch: ranks alternate epochs

    def ids(stream, n):
        return [tuple(next(stream).inputs["input_ids"][:, 1]) for _ in range(n)]

    single = ids(_micro_batches(data, 16, seed=3), 12)
    rank0 = ids(_micro_batches(data, 16, seed=3, rank=0, world=2), 6)
    rank1 = ids(_micro_batches(data, 16, seed=3, rank=1, world=2), 6)
    assert rank0 == single[0::2] and rank1 == single[1::2]
    assert ids(_micro_batches(data, 16, seed=3, skip=7), 5) == single[7:12]
    assert ids(_micro_batches(data, 16, seed=3, skip=6, rank=1, world=2), 3) == single[7:12:2]
    assert np.unique([len(b) for b in single]).tolist() == [16]
