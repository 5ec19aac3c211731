"""squeeze: compress trained Hugging Face transformer checkpoints and measure what it cost.

The public API is imported lazily (``squeeze.load`` pulls in torch and transformers only when
first used) so that ``squeeze --help`` and ``import squeeze`` stay instant. Functions named like
a submodule (``evaluate``, ``train``, ``finetune``) are not re-exported here: once the submodule
is imported, Python binds the module to that attribute, so ``squeeze.evaluate`` would change
meaning. Import them from their modules (``from squeeze.evaluate import evaluate``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "load": "squeeze.checkpoint",
    "save": "squeeze.checkpoint",
    "size_stats": "squeeze.sizes",
    "load_dataset": "squeeze.data",
    "DataSpec": "squeeze.dataspec",
    "TrainConfig": "squeeze.train_config",
    # The step engine: a method's config, run on a checkpoint as its command does.
    "run_step": "squeeze.runner",
    "StepOptions": "squeeze.runner",
    "MagnitudePruneConfig": "squeeze.prune.magnitude",
    "StructuredPruneConfig": "squeeze.prune.structured",
    "DistillConfig": "squeeze.distill.method",
    "QuantizeConfig": "squeeze.quantize.method",
    "ExportConfig": "squeeze.export.method",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'squeeze' has no attribute {name!r}")
