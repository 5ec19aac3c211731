"""squeeze: compress trained Hugging Face transformer checkpoints and measure what it cost.

The public API is imported lazily (``squeeze.load`` pulls in torch and transformers only when
first used) so that ``squeeze --help`` and ``import squeeze`` stay instant. Functions named like
a submodule (``evaluate``, ``train``, ``finetune``) are not re-exported here: once the submodule
is imported, Python binds the module to that attribute, so ``squeeze.measure.evaluate`` would change
meaning. Import them from their modules (``from squeeze.measure.evaluate import evaluate``).
"""

from __future__ import annotations

import importlib
from typing import Any

from squeeze.core import __version__

_API = {
    "load": "squeeze.model.checkpoint",
    "save": "squeeze.model.checkpoint",
    "size_stats": "squeeze.model.sizes",
    # A checkpoint or export, opened, sized and described the one way.
    "Artifact": "squeeze.artifact",
    "load_dataset": "squeeze.data.examples",
    "DataSpec": "squeeze.data.spec",
    "TrainConfig": "squeeze.train.config",
    # The step engine: a method's config, run on a checkpoint as its command does.
    "run_step": "squeeze.engine.runner",
    "StepOptions": "squeeze.engine.step",
    "MagnitudePruneConfig": "squeeze.methods.prune.magnitude",
    "StructuredPruneConfig": "squeeze.methods.prune.structured",
    "DistillConfig": "squeeze.methods.distill.method",
    "QuantizeConfig": "squeeze.methods.quantize.method",
    "ExportConfig": "squeeze.methods.export.config",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'squeeze' has no attribute {name!r}")
