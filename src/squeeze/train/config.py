"""Training hyper-parameters: the one definition that fine-tuning, distillation and recovery
share (their CLI options and recipe keys come from these fields).

Light on purpose (no torch): the CLI builds its options from it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from squeeze.core.config import StepConfig, at_least, param, range_problem
from squeeze.core.errors import Problem

MIXED_PRECISION_CHOICES = ("auto", "no", "fp16", "bf16")
EMBEDDING_LOSSES = ("cosine", "mse")


@dataclass(frozen=True, kw_only=True)
class TrainConfig(StepConfig):
    """Hyper-parameters of one training run; defaults suit fine-tuning a small encoder.

    ``max_steps`` (optimizer steps) wins over ``epochs`` when both are set. ``eval_every``
    defaults to once per epoch.
    """

    epochs: float = param(3.0, help="Passes over the training data.")
    max_steps: int | None = param(None, help="Optimizer steps; overrides epochs.")
    lr: float = param(5e-5, help="Peak learning rate (AdamW).")
    batch_size: int = param(32, help="Examples per batch.")
    grad_accum: int = param(1, help="Batches per optimizer step.")
    warmup_ratio: float = param(0.1, help="Fraction of steps spent warming up.")
    weight_decay: float = param(0.01, help="AdamW weight decay.")
    max_grad_norm: float = param(1.0, help="Gradient clipping norm.")
    seed: int = param(0, help="Seed for initialisation and shuffling.")
    eval_every: int | None = param(None, help="Validate every N steps (default: every epoch).")
    mixed_precision: str = param(
        "auto",
        help="auto (bf16/fp16 on CUDA, off on CPU), no, fp16 or bf16.",
        choices=MIXED_PRECISION_CHOICES,
    )

    def problems(self) -> list[Problem]:
        found = [Problem("{epochs} must be > 0")] if self.epochs <= 0 else []
        found += at_least("max_steps", self.max_steps, 1)
        if self.lr <= 0:
            found.append(Problem("{lr} must be > 0"))
        found += at_least("batch_size", self.batch_size, 1)
        found += at_least("grad_accum", self.grad_accum, 1)
        found += range_problem("warmup_ratio", self.warmup_ratio, 0, 1, closed="low")
        found += at_least("eval_every", self.eval_every, 1)
        if self.max_grad_norm <= 0:
            found.append(Problem("{max_grad_norm} must be > 0"))
        return found

    def train_config(self) -> TrainConfig:
        """The training part of a config that extends this one (distillation's)."""
        from dataclasses import fields

        return TrainConfig(**{f.name: getattr(self, f.name) for f in fields(TrainConfig)})


@dataclass(frozen=True, kw_only=True)
class EmbeddingLossConfig(StepConfig):
    """How an embedder learns from its original (pruning recovery, distillation): the one
    definition its steps share.

    An embedder has no labels to recover on; it learns to give the texts of the training data
    the sentence embeddings the original gives them (no labels are read). ``cosine`` (1 - cosine
    similarity) ignores length, which a normalised embedder never uses; ``mse`` (mean squared
    error per dimension, as sentence-transformers' MSELoss) also matches the length, for
    embedders whose vectors are not normalised.
    """

    embedding_loss: str = param(
        "cosine",
        help="Embedders: distance to the original's sentence embeddings, cosine or mse.",
        choices=EMBEDDING_LOSSES,
    )
