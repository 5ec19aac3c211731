"""Training checkpoints that a stopped run resumes from exactly where it was.

Accelerate's ``save_state`` holds the model, optimizer, scheduler, gradient scaler and every RNG
(Python, NumPy, torch, CUDA, per process); squeeze adds what its loop knows: the step, the
evaluation history and the best weights so far. A checkpoint is written to a temporary folder
and renamed into place, so an interruption while saving leaves the previous one intact.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squeeze.core.errors import ConfigError, OutputExistsError, Problem
from squeeze.core.types import Evaluation, Metric

LAST = "last"
STATE_FILE = "trainer_state.json"
BEST_FILE = "best.safetensors"


@dataclass
class LoopState:
    """The loop's own progress, restored alongside Accelerate's state."""

    step: int = 0
    samples_seen: int = 0
    elapsed_s: float = 0.0
    eval_s: float = 0.0
    history: list[dict[str, Any]] | None = None
    best_step: int | None = None
    best_eval: Evaluation | None = None
    best_state: dict[str, Any] | None = None


def checkpoint_dir_for(out: str | Path) -> Path:
    """Where a run writing ``out`` keeps its resumable checkpoint: a visible sibling."""
    out = Path(out)
    return out.with_name(f"{out.name}.checkpoint")


def check_resume(folder: Path, *, resume: bool, overwrite: bool) -> bool:
    """Decide whether to resume from ``folder``; refuse to silently discard an interrupted run.

    Returns True when there is a checkpoint to resume from.

    Raises:
        OutputExistsError: a checkpoint exists and neither --resume nor --overwrite was given.
        ConfigError: --resume without a checkpoint to resume from.
    """
    exists = (folder / LAST / STATE_FILE).is_file()
    if resume:
        if not exists:
            raise ConfigError(
                Problem(f"{{resume}}: no checkpoint at {folder}; run without {{resume}}")
            )
        return True
    if folder.exists():
        if not overwrite:
            raise OutputExistsError(
                Problem(
                    f"an interrupted run left a checkpoint at {folder}; pass {{resume}} to "
                    "continue it or {overwrite} to start over"
                )
            )
        shutil.rmtree(folder)
    return False


def save(accelerator: Any, folder: Path, state: LoopState, fingerprint: dict[str, Any]) -> None:
    """Write a checkpoint of the whole run to ``folder/last`` (every process takes part)."""
    tmp = folder / f"{LAST}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        from safetensors.torch import save_file

        if state.best_state is not None:
            save_file(state.best_state, str(tmp / BEST_FILE))
        meta = {
            "fingerprint": fingerprint,
            "step": state.step,
            "samples_seen": state.samples_seen,
            "elapsed_s": state.elapsed_s,
            "eval_s": state.eval_s,
            "history": state.history or [],
            "best_step": state.best_step,
            "best_eval": state.best_eval.to_dict() if state.best_eval else None,
        }
        (tmp / STATE_FILE).write_text(json.dumps(meta, indent=2))
        last = folder / LAST
        shutil.rmtree(last, ignore_errors=True)
        tmp.rename(last)
    accelerator.wait_for_everyone()


def _evaluation(data: dict[str, Any] | None) -> Evaluation | None:
    if data is None:
        return None
    n = data["n_samples"]
    metrics = tuple(Metric(name, value, n) for name, value in data["metrics"].items())
    return Evaluation(metrics=metrics, n_samples=n, elapsed_s=data["elapsed_s"])


def load(accelerator: Any, folder: Path, fingerprint: dict[str, Any]) -> LoopState:
    """Restore a run from ``folder/last`` into the prepared objects and return the loop's state.

    Raises:
        ConfigError: the checkpoint belongs to a run with other settings or data.
    """
    last = folder / LAST
    meta = json.loads((last / STATE_FILE).read_text())
    if meta["fingerprint"] != fingerprint:
        changed = sorted(
            key
            for key in set(meta["fingerprint"]) | set(fingerprint)
            if meta["fingerprint"].get(key) != fingerprint.get(key)
        )
        raise ConfigError(
            Problem(
                f"the checkpoint at {folder} is from a run with other settings "
                f"({', '.join(changed)}); "
                "resume with the same options, or pass {overwrite} to start over"
            )
        )
    accelerator.load_state(str(last))
    best_state = None
    if (last / BEST_FILE).is_file():
        from safetensors.torch import load_file

        best_state = load_file(str(last / BEST_FILE))
    return LoopState(
        step=meta["step"],
        samples_seen=meta["samples_seen"],
        elapsed_s=meta["elapsed_s"],
        eval_s=meta["eval_s"],
        history=meta["history"],
        best_step=meta["best_step"],
        best_eval=_evaluation(meta["best_eval"]),
        best_state=best_state,
    )
