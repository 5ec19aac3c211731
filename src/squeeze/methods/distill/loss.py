"""Distillation losses: softened logits (Hinton et al.), hidden states, attention maps (TinyBERT).

Every term is an average over real tokens only: padding never teaches anything. Layers are
matched uniformly (student layer m to teacher layer m * L / n, embeddings to embeddings), which
works for any depths, including a student cut from the teacher with ``--student-layers``.
"""

from __future__ import annotations

from typing import Any

from squeeze.core.errors import ConfigError, Problem


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher hidden-state index for each student one (index 0 is the embeddings)."""
    return [round(m * teacher_layers / student_layers) for m in range(student_layers + 1)]


def _masked_mean(values: Any, mask: Any) -> Any:
    """Mean of ``values`` (batch, seq, ...) over positions where ``mask`` (batch, seq) is 1."""
    weight = mask.to(values.dtype)
    while weight.dim() < values.dim():
        weight = weight.unsqueeze(-1)
    per_position = values.numel() // mask.numel()
    return (values * weight).sum() / (weight.sum() * per_position).clamp_min(1.0)


def logit_kd(student: Any, teacher: Any, temperature: float, mask: Any | None = None) -> Any:
    """KL(teacher || student) on temperature-softened logits, times T^2.

    ``student`` and ``teacher`` are (batch, classes) for classifiers or (batch, seq, vocab) for
    language models, where ``mask`` (batch, seq) keeps real tokens. A vocabulary padded to
    different sizes is compared over the shared part.
    """
    import torch.nn.functional as F

    width = min(student.shape[-1], teacher.shape[-1])
    log_p_student = F.log_softmax(student[..., :width].float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher[..., :width].float() / temperature, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)
    mean = kl.mean() if mask is None else _masked_mean(kl, mask)
    return mean * temperature**2


def hidden_loss(student: tuple[Any, ...], teacher: tuple[Any, ...], mask: Any) -> Any:
    """Mean squared error between mapped hidden states (already in the teacher's width)."""
    import torch.nn.functional as F

    index = layer_map(len(student) - 1, len(teacher) - 1)
    losses = [
        _masked_mean(F.mse_loss(s.float(), teacher[t].float(), reduction="none"), mask)
        for s, t in zip(student, index, strict=True)
    ]
    return sum(losses) / len(losses)


def attention_loss(student: tuple[Any, ...], teacher: tuple[Any, ...], mask: Any) -> Any:
    """Mean squared error between head-averaged attention maps of mapped layers.

    Averaging over heads lets a student with fewer heads (a pruned teacher, or another shape)
    match its teacher; rows of padding queries are left out.
    """
    import torch.nn.functional as F

    index = [t - 1 for t in layer_map(len(student), len(teacher))[1:]]
    losses = []
    for s, t in zip(student, index, strict=True):
        s_map, t_map = s.float().mean(1), teacher[t].float().mean(1)  # (batch, seq, seq)
        losses.append(_masked_mean(F.mse_loss(s_map, t_map, reduction="none"), mask))
    return sum(losses) / len(losses)


def projection(student_width: int, teacher_width: int, kind: str, seed: int) -> Any:
    """A linear map from the student's hidden width to the teacher's, or None when equal."""
    import torch

    if student_width == teacher_width:
        return None
    if kind == "none":
        raise ConfigError(
            Problem(
                f"student hidden size {student_width} differs from the teacher's "
                f"{teacher_width}: hidden-state matching needs {{projection}} learned or fixed"
            )
        )
    layer = torch.nn.Linear(student_width, teacher_width, bias=False)
    torch.nn.init.orthogonal_(layer.weight, generator=torch.Generator().manual_seed(seed))
    layer.weight.requires_grad_(kind == "learned")
    return layer
