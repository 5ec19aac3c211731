"""Students: where they come from, whether they can learn from this teacher, and what trains.

Three sources: any compatible checkpoint (``--student``), a shallower copy of the teacher
initialised from its own layers as in DistilBERT (``--student-layers``), or a pruned teacher
recovering its accuracy (``--from-pruned``; magnitude-pruned zeros stay zero while it trains).
"""

from __future__ import annotations

import json
from typing import Any

import torch

from squeeze.core.config import literal
from squeeze.core.errors import CheckpointError, ConfigError, Problem, UnsupportedError
from squeeze.core.types import Task
from squeeze.methods.distill.loss import projection
from squeeze.methods.prune.recovery import PRUNE_SUMMARY
from squeeze.model.arch import ArchSpec, layer_list, spec_for
from squeeze.model.checkpoint import load, resolve_local
from squeeze.model.loaded import LoadedModel
from squeeze.model.pooling import has_sentence_files
from squeeze.model.shapes import keep_layers


def describe_student(config: Any) -> str:
    """The student of a distillation config, for tables."""
    if config.student_layers is not None:
        return f"{config.student_layers} of the teacher's layers"
    return str(config.student or config.from_pruned)


def even_layers(total: int, keep: int) -> list[int]:
    """``keep`` of ``total`` layers spread evenly from the bottom (DistilBERT kept every other)."""
    return [i * total // keep for i in range(keep)]


def layer_copy_spec(model_config: Any) -> ArchSpec:
    """The spec a layer-copy student is cut with; refuses families without separate layers."""
    spec = spec_for(model_config, "a layer-copy student ({student_layers})")
    if spec.shared_layers:
        raise UnsupportedError(
            Problem(
                f"{spec.family} reuses one block's weights for all its layers, so there are "
                "no layers to copy; give a smaller checkpoint as {student}"
            )
        )
    return spec


def _copy_of_teacher(teacher: LoadedModel, layers: int, device: str) -> tuple[LoadedModel, str]:
    spec = layer_copy_spec(teacher.config)
    total = len(layer_list(teacher.model, spec))
    if layers >= total:
        raise ConfigError(
            Problem(f"{{student_layers}} {layers} must be below the teacher's {total} layers")
        )
    student = load(teacher.path or teacher.source, task=teacher.task, device=device)
    keep = even_layers(total, layers)
    keep_layers(student.model, spec, keep)
    if student.shapes is not None:
        student.shapes = [student.shapes[i] for i in keep]
    return student, f"student: the teacher's layers {keep} of {total}, initialised from them"


def _magnitude_masks(student: LoadedModel) -> dict[str, Any] | None:
    """Where a magnitude-pruned checkpoint has zeros, which training must keep."""
    summary = json.loads((student.path / PRUNE_SUMMARY).read_text())
    if summary.get("method") != "magnitude":
        return None
    from squeeze.methods.prune.magnitude import prunable_weights

    config = summary.get("config", {})
    weights = prunable_weights(student, config.get("include", ()), config.get("exclude", ()))
    return {name: weight.detach() != 0 for name, weight in weights.items()}


def _check_compatible(teacher: LoadedModel, student: LoadedModel, name: str) -> None:
    """The student must read the same token ids and predict over the same labels."""
    if teacher.tokenizer.get_vocab() != student.tokenizer.get_vocab():
        raise ConfigError(
            f"{name} uses a different tokenizer from the teacher; distillation needs both to read "
            "the same token ids (pick a student of the same model family)"
        )
    if teacher.task is Task.SEQUENCE_CLASSIFICATION:
        t_labels = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
        s_labels = [student.config.id2label[i] for i in range(student.config.num_labels)]
        if t_labels != s_labels:
            raise ConfigError(
                f"{name} predicts labels {s_labels}, the teacher {t_labels}; give a student with "
                "the teacher's labels or a base model (it gets a new head)"
            )
    if teacher.task is Task.EMBEDDING and _width(student) != _width(teacher):
        raise ConfigError(
            f"{name} embeds in {_width(student)} dimensions, the teacher in {_width(teacher)}; "
            "embedding distillation compares the two vectors, so give a student of the "
            "teacher's width (or cut one with --student-layers)"
        )


def build_student(
    config: Any, teacher: LoadedModel, *, trust_remote_code: bool = False, device: str
) -> tuple[LoadedModel, dict[str, Any] | None, list[str]]:
    """Load or derive the student; return it, masks to keep (magnitude-pruned), and notes.

    Raises:
        ConfigError: a student that cannot learn from this teacher (tokenizer, labels, depth).
        CheckpointError: a from_pruned folder that is not a squeeze prune output.
    """
    if config.student_layers is not None:
        student, note = _copy_of_teacher(teacher, config.student_layers, device)
        student.pooling = teacher.pooling  # as the teacher was loaded (options included)
        return student, None, [note]
    path = config.student or config.from_pruned
    local = resolve_local(path)
    if config.from_pruned is not None and (local is None or not (local / PRUNE_SUMMARY).is_file()):
        raise CheckpointError(
            Problem(
                f"{{from_pruned}} {literal(str(path))} is not a squeeze prune output (no "
                f"{PRUNE_SUMMARY}); pass it as {{student}} instead"
            )
        )
    from squeeze.model.checkpoint import detect_task, read_config

    detected = detect_task(read_config(path, trust_remote_code=trust_remote_code))
    classify = teacher.task is Task.SEQUENCE_CLASSIFICATION
    new_head = classify and detected is not Task.SEQUENCE_CLASSIFICATION
    labels = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
    student = load(
        path,
        task=teacher.task,
        trust_remote_code=trust_remote_code,
        allow_new_weights=new_head,
        label_names=labels if new_head else None,
        device=device,
    )
    _check_compatible(teacher, student, path)
    notes = list(student.notes)
    if teacher.task is Task.EMBEDDING and (local is None or not has_sentence_files(local)):
        student.pooling = teacher.pooling
        notes.append("the student has no sentence-transformers files: it pools as the teacher")
    masks = _magnitude_masks(student) if config.from_pruned is not None else None
    if masks is not None:
        notes.append("magnitude-pruned student: its zeros are kept while it trains")
    return student, masks, notes


def _width(loaded: LoadedModel) -> int:
    config = loaded.config
    return getattr(config, "hidden_size", None) or config.dim  # DistilBERT calls it dim


class DistillModule(torch.nn.Module):
    """What trains: the student plus a projection into the teacher's width.

    The training loop sees one module whose forward is the student's (returning its hidden
    states, projected, and attention maps when the loss needs them), so Accelerate, DDP,
    checkpoints and the best-weights copy cover the projection too. The teacher stays outside,
    frozen.
    """

    def __init__(self, student: LoadedModel, proj: Any, config: Any) -> None:
        super().__init__()
        self.student = student.model
        self.projection = proj
        self._inputs = set(student.input_names)
        self._config = config

    def forward(self, **inputs: Any) -> Any:
        outputs = self.student(
            **{k: v for k, v in inputs.items() if k in self._inputs or k == "labels"},
            output_hidden_states=self._config.needs_hidden,
            output_attentions=self._config.needs_attentions,
        )
        if self.projection is not None:
            outputs.hidden_states = tuple(self.projection(h) for h in outputs.hidden_states)
        return outputs


def distill_module(
    student: LoadedModel, teacher: LoadedModel, config: Any, seed: int
) -> DistillModule:
    """Wrap the student for training against ``teacher``.

    Raises:
        ConfigError: hidden-state matching across different widths without a projection.
    """
    proj = None
    if config.needs_hidden:
        proj = projection(_width(student), _width(teacher), config.projection, seed)
    if config.needs_attentions:
        # Fused attention kernels never materialise the maps.
        for loaded in (student, teacher):
            loaded.model.set_attn_implementation("eager")
    return DistillModule(student, proj, config)


def teacher_outputs(teacher: LoadedModel, config: Any, inputs: dict[str, Any]) -> Any:
    """The frozen teacher's forward on a batch (no graph kept)."""
    with torch.no_grad():
        return teacher.model(
            **{k: v for k, v in inputs.items() if k in teacher.input_names},
            output_hidden_states=config.needs_hidden,
            output_attentions=config.needs_attentions,
        )
