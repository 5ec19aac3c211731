"""Distillation losses, students and the refusals that protect a run from a wrong pairing."""

from __future__ import annotations

import json

import pytest
import torch

from squeeze.core.errors import CheckpointError, ConfigError
from squeeze.data.spec import DataSpec
from squeeze.engine.runner import run_step
from squeeze.engine.step import StepOptions
from squeeze.methods.distill.loss import (
    attention_loss,
    hidden_loss,
    layer_map,
    logit_kd,
    projection,
)
from squeeze.methods.distill.method import DistillConfig
from squeeze.methods.distill.student import build_student, distill_module, even_layers
from squeeze.model.checkpoint import load
from squeeze.model.tiny import build_tiny, tiny_config


def test_layer_choices():
    assert even_layers(12, 6) == [0, 2, 4, 6, 8, 10]
    assert even_layers(6, 3) == [0, 2, 4] and even_layers(2, 1) == [0]
    assert layer_map(1, 2) == [0, 2]
    assert layer_map(6, 12) == [0, 2, 4, 6, 8, 10, 12]
    assert layer_map(4, 4) == [0, 1, 2, 3, 4]


def test_logit_kd_is_kl_times_t_squared_and_ignores_padding():
    torch.manual_seed(0)
    teacher = torch.randn(4, 3)
    assert float(logit_kd(teacher, teacher, 2.0)) == pytest.approx(0.0, abs=1e-6)
    student = torch.randn(4, 3)
    p = torch.softmax(teacher / 2, -1)
    expected = (p * (p.log() - torch.log_softmax(student / 2, -1))).sum(-1).mean() * 4
    assert float(logit_kd(student, teacher, 2.0)) == pytest.approx(float(expected), rel=1e-5)

    lm_teacher, lm_student = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    garbage = lm_student.clone()
    garbage[0, 3:] = 100.0  # padded positions: must not count
    assert float(logit_kd(garbage, lm_teacher, 1.0, mask)) == pytest.approx(
        float(logit_kd(lm_student, lm_teacher, 1.0, mask)), rel=1e-6
    )
    # A vocabulary padded to a larger size is compared over the shared part.
    wider = torch.cat([lm_student, torch.zeros(2, 5, 3)], -1)
    assert float(logit_kd(wider, lm_teacher, 1.0, mask)) == pytest.approx(
        float(logit_kd(lm_student, lm_teacher, 1.0, mask)), rel=1e-6
    )


def test_hidden_and_attention_losses_map_layers():
    mask = torch.ones(2, 4)
    teacher = tuple(torch.full((2, 4, 8), float(i)) for i in range(5))  # embeddings + 4 layers
    student = (teacher[0], teacher[2], teacher[4])  # 2 layers that match 2 and 4 exactly
    assert float(hidden_loss(student, teacher, mask)) == 0.0
    assert float(hidden_loss((teacher[0], teacher[1], teacher[4]), teacher, mask)) == pytest.approx(
        1.0 / 3
    )

    t_maps = tuple(torch.softmax(torch.randn(2, 4, 4, 4), -1) for _ in range(4))
    # A student with 2 heads whose average equals the teacher's average over 4.
    s_maps = tuple(m.view(2, 2, 2, 4, 4).mean(2) for m in (t_maps[1], t_maps[3]))
    assert float(attention_loss(s_maps, t_maps, mask)) == pytest.approx(0.0, abs=1e-7)
    assert float(attention_loss(s_maps[::-1], t_maps, mask)) > 0


def test_projection_kinds():
    assert projection(32, 32, "none", 0) is None
    with pytest.raises(ConfigError, match="needs projection learned or fixed"):
        projection(64, 32, "none", 0)
    learned, fixed = projection(64, 32, "learned", 0), projection(64, 32, "fixed", 0)
    assert learned.weight.shape == (32, 64) and learned.weight.requires_grad
    assert not fixed.weight.requires_grad
    torch.testing.assert_close(learned.weight, fixed.weight)  # same seeded start


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0}, "temperature must be > 0"),
        ({"kd_weight": -1}, ">= 0"),
        ({"kd_weight": 0, "task_weight": 0}, "at least one"),
        ({"projection": "pca"}, "projection must be one of"),
    ],
)
def test_bad_distill_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DistillConfig(**kwargs)


def test_a_distillation_names_exactly_one_student(tiny_classifiers, order_csv, tmp_path):
    with pytest.raises(ConfigError, match="one of student, student_layers or from_pruned"):
        DistillConfig(student="x", student_layers=2)
    with pytest.raises(ConfigError, match="one of student, student_layers or from_pruned"):
        run_step(tiny_classifiers["bert"], DistillConfig(), tmp_path / "s",
                 StepOptions(data=DataSpec(str(order_csv))))  # fmt: skip


@pytest.mark.parametrize("family", ["bert", "distilbert", "gpt2", "llama"])
def test_student_layers_copies_the_teachers_layers(family, tiny_classifiers):
    teacher = load(tiny_classifiers[family])
    student, masks, notes = build_student(DistillConfig(student_layers=1), teacher, device="cpu")
    assert masks is None and "layers [0] of 2" in notes[0]
    assert student.config.num_hidden_layers == 1
    t_state, s_state = teacher.model.state_dict(), student.model.state_dict()
    assert len(s_state) < len(t_state)
    for name, value in s_state.items():  # every kept tensor is the teacher's own
        torch.testing.assert_close(value, t_state[name])
    with pytest.raises(ConfigError, match="below the teacher's 2 layers"):
        build_student(DistillConfig(student_layers=2), teacher, device="cpu")


def test_mismatched_tokenizer_is_refused(tiny_classifiers, tmp_path):
    teacher = load(tiny_classifiers["bert"])
    other = load(tiny_classifiers["bert"])
    other.tokenizer.add_tokens(["zebra"])
    other.model.save_pretrained(tmp_path / "other")
    other.tokenizer.save_pretrained(tmp_path / "other")
    with pytest.raises(ConfigError, match="different tokenizer from the teacher"):
        build_student(DistillConfig(student=str(tmp_path / "other")), teacher, device="cpu")


def test_mismatched_labels_are_refused_and_a_base_model_gets_the_teachers(
    tiny_classifiers, tiny_lms, tmp_path
):
    teacher = load(tiny_classifiers["bert"])
    three = build_tiny("bert", tmp_path / "three", label_names=("x", "y", "z"))
    with pytest.raises(ConfigError, match="predicts labels"):
        build_student(DistillConfig(student=str(three)), teacher, device="cpu")
    student, _, notes = build_student(
        DistillConfig(student=str(tiny_lms["bert"])), teacher, device="cpu"
    )
    assert student.config.id2label == teacher.config.id2label
    assert any("newly initialised" in n for n in notes)


def test_wider_student_with_hidden_matching_needs_a_projection(tiny_classifiers, tmp_path):
    teacher = load(tiny_classifiers["bert"])
    wide = build_tiny("bert", tmp_path / "wide", config=tiny_config("bert", hidden=64))
    student, _, _ = build_student(DistillConfig(student=str(wide)), teacher, device="cpu")
    with pytest.raises(ConfigError, match="hidden size 64 differs from the teacher's 32"):
        distill_module(student, teacher, DistillConfig(hidden_weight=1.0), seed=0)
    module = distill_module(
        student, teacher, DistillConfig(hidden_weight=1.0, projection="learned"), seed=0
    )
    inputs = teacher.tokenizer(["a w1 b"], return_tensors="pt")
    outputs = module(**{k: inputs[k] for k in teacher.input_names})
    assert outputs.hidden_states[-1].shape[-1] == 32  # projected into the teacher's width
    assert {n.split(".")[0] for n, _ in module.named_parameters()} == {"student", "projection"}


def test_from_pruned_needs_a_prune_output_and_keeps_magnitude_zeros(tiny_classifiers, tmp_path):
    from squeeze.methods.prune.magnitude import MagnitudePruneConfig

    teacher = load(tiny_classifiers["bert"])
    with pytest.raises(CheckpointError, match="not a squeeze prune output"):
        build_student(
            DistillConfig(from_pruned=str(tiny_classifiers["bert"])), teacher, device="cpu"
        )
    pruned = tmp_path / "sparse"
    run_step(tiny_classifiers["bert"], MagnitudePruneConfig(sparsity=0.5), pruned)
    _, masks, notes = build_student(DistillConfig(from_pruned=str(pruned)), teacher, device="cpu")
    assert "zeros are kept" in notes[-1]
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    assert abs(kept / total - 0.5) < 0.01
    assert json.loads((pruned / "prune.json").read_text())["method"] == "magnitude"
