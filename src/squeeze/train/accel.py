"""Hugging Face Accelerate behind the training loop: one process directly, several via
``accelerate launch``, with no change to squeeze's code or command line.

squeeze places models itself (``device_placement=False``): the teacher of a distillation and the
evaluation model must sit on the same device as the trained one, and under ``accelerate launch``
that is the process's own GPU, which :func:`training_device` reports before anything is loaded.
"""

from __future__ import annotations

import os
from typing import Any

from squeeze.core.device import resolve_device
from squeeze.core.errors import Problem, UnsupportedError


def launched_processes() -> int:
    """How many processes ``accelerate launch`` (or torchrun) started; 1 when run directly."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def training_device(requested: str) -> str:
    """``--device`` for a direct run; under a multi-process launch, this process's own device
    (``cuda:LOCAL_RANK`` with ``--device cuda``; the CPU, over gloo, with ``--device cpu``)."""
    if launched_processes() > 1:
        from accelerate import PartialState

        return str(PartialState(cpu=requested == "cpu").device)
    return resolve_device(requested)


def is_main_process() -> bool:
    """True for the process that writes outputs and prints (rank 0, or a direct run)."""
    return int(os.environ.get("RANK", "0")) == 0


def mixed_precision_for(setting: str, device: str) -> str:
    """Accelerate's precision name for ``--mixed-precision``; half precision needs a GPU."""
    import torch

    on_gpu = device.startswith("cuda")
    if setting in ("fp16", "bf16") and not on_gpu:
        raise UnsupportedError(
            Problem(f"{{mixed_precision}} {setting} needs a CUDA device; use 'no' on CPU")
        )
    if setting == "auto":
        if not on_gpu:
            return "no"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return setting


def make_accelerator(device: str, mixed_precision: str) -> Any:
    """A fresh Accelerator for one training run.

    Accelerate keeps its settings in process-wide state that refuses a second, different
    configuration; a library call (or a test) may train on CPU in full precision and then on a
    GPU in bf16, so that state is reset first. The distributed state itself is kept.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    return Accelerator(
        cpu=device == "cpu",
        mixed_precision=mixed_precision_for(mixed_precision, device),
        device_placement=False,
        # The schedule is built for the run's real optimizer steps, so it steps once per step.
        step_scheduler_with_optimizer=False,
    )
