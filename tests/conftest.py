"""Shared fixtures: tiny seeded models of every family, the order task, a trained classifier.

Everything is built offline from configs, once per session, so the suite needs no hub access
and stays fast. The hub is switched off before transformers is imported.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread, here and in every squeeze subprocess (they inherit it): the tiny models
# gain nothing from more, and on a busy 2-core machine (a CI runner, a second job, this suite's
# own concurrent subprocesses) OpenMP threads spinning against each other made each step 10-40x
# slower (30 steps of the tiny GPT-2: 40 s with 2 threads, 1.1 s with 1). Set before torch loads;
# a developer's own OMP_NUM_THREADS wins. Tests of thread settings pass them explicitly.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The default int8/int4 backend is measured on the machine (fastest wins): tests that check
# what a quantization wrote pin ONNX Runtime, as a CI runner would with $SQUEEZE_BACKEND; the
# tests of the measured default unset it (tests/cli/test_measured_default.py).
os.environ["SQUEEZE_BACKEND"] = "onnxruntime"

from pathlib import Path

import pytest

from squeeze.core.types import Task
from squeeze.model.tiny import (
    FAMILIES,
    LM_TASK,
    MORE_FAMILIES,
    NO_SPEC_FAMILIES,
    build_tiny,
    write_order_task,
)


@pytest.fixture(autouse=True, scope="session")
def _own_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """squeeze's default cache (measured choices, artifacts) in a folder of the session's, never
    the developer's ~/.cache/squeeze."""
    os.environ["SQUEEZE_CACHE"] = str(tmp_path_factory.mktemp("squeeze-cache"))


@pytest.fixture(scope="session")
def tiny_classifiers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An untrained (seeded) two-label sequence classifier per family: the core five, the other
    families with a spec, and families without one."""
    root = tmp_path_factory.mktemp("classifiers")
    families = (*FAMILIES, *MORE_FAMILIES, *NO_SPEC_FAMILIES)
    return {family: build_tiny(family, root / family) for family in families}


@pytest.fixture(scope="session")
def tiny_lms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each family with its language-model head (masked for encoders, causal for decoders)."""
    root = tmp_path_factory.mktemp("lms")
    return {family: build_tiny(family, root / family, task=LM_TASK[family]) for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_embedders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each family as a sentence-transformers embedder: the bare model plus modules.json and the
    pooling config (mean pooling and normalisation for encoders, the last token for decoders)."""
    root = tmp_path_factory.mktemp("embedders")
    return {family: build_tiny(family, root / family, task=Task.EMBEDDING) for family in FAMILIES}


@pytest.fixture(scope="session")
def order_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 sentences of the order task (which of a/b comes first), CSV text,label."""
    return write_order_task(tmp_path_factory.mktemp("data") / "order.csv", 3000, seed=0)


@pytest.fixture(scope="session")
def trained_classifier(tmp_path_factory: pytest.TempPathFactory, order_csv: Path) -> Path:
    """A tiny BERT fine-tuned on the train split of the order task, saved as an HF folder."""
    from squeeze.data.spec import DataSpec
    from squeeze.methods.finetune import finetune
    from squeeze.train.loop import TrainConfig

    base = build_tiny("bert", tmp_path_factory.mktemp("base") / "bert", task=Task.MASKED_LM)
    out = tmp_path_factory.mktemp("trained") / "bert-order"
    finetune(
        str(base),
        DataSpec(str(order_csv)),
        out,
        config=TrainConfig(epochs=10, lr=3e-3, batch_size=32, warmup_ratio=0.05),
        max_length=32,
    )
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` run only where CUDA is available."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def two_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two int8 candidates for the measured default where a test's subject is not the candidate
    list (each candidate is a build; the full list is tested in tests/cli/test_auto_cli.py)."""
    from squeeze.methods.quantize import auto

    two = (("onnxruntime dynamic", "onnxruntime", {}), ("openvino weight-only", "openvino", {}))
    monkeypatch.setitem(auto.CANDIDATES, "int8", two)
