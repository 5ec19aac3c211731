"""The step types a handler sees: the options a command shares, its data, its context.

They sit below the registry and the runner, so a handler imports them and never the runner
that calls it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from squeeze.core.errors import ConfigError, DataError, Problem
from squeeze.core.types import Evaluation, ProgressFactory, no_progress
from squeeze.data.encoding import Encoded, encode_for
from squeeze.data.spec import DataSpec, evaluation_part, held_out_part, local_file
from squeeze.data.spec import training_part as training_spec


@dataclass(frozen=True)
class StepOptions:
    """How to run one step; the command-level options every method shares.

    Attributes:
        data: The dataset: training part for recovery, distillation and calibration; its
            held-out test part for the metric.
        eval_data: Held-out data for the metric instead of the test part of ``data``.
        calibration_data: Calibration samples instead of the training part of ``data``.
        max_length: Tokens per example; None: the default the model holds (see
            :func:`_fit_lengths`).
        max_accuracy_drop: The gate (points); nothing is written when the drop is larger.
        gate_on: What the gate judges: ``point`` (the drop) or ``upper`` (the upper end of its
            95% paired interval).
        min_fidelity: An embedder's gate: the output's mean cosine to the input's embeddings
            of the held-out texts must be at least this (needs no labels).
        measure: Score the input before and the output after (with data). Sweeps turn it off:
            they measure every variant once, in its deployed format.
        bench: BenchSettings to time input and output together after writing, at the length
            examples are cut to (its ``seq_len`` is set from ``max_length``); None: no timing.
        resume: Continue an interrupted (resumable) run from its checkpoint beside the output.
        overwrite: Replace an existing output.
        trust_remote_code: Allow checkpoints' own Python code.
        device: Where PyTorch runs.
        progress: Opens progress bars (the CLI passes rich ones).
        decisions: Where measured choices are remembered (the default quantization backend's,
            per model shape and machine): a folder in squeeze's cache; None measures every
            time and remembers nothing.
        target: The fingerprint of the machine the output is for (``squeeze bench
            --fingerprint`` there), when it is not this one: the default quantization backend
            then chooses by that machine's rules instead of timing here.
    """

    data: DataSpec | None = None
    eval_data: DataSpec | None = None
    calibration_data: DataSpec | None = None
    max_length: int | None = None
    max_accuracy_drop: float | None = None
    gate_on: str = "point"
    min_fidelity: float | None = None
    measure: bool = True
    bench: Any = None
    resume: bool = False
    overwrite: bool = False
    trust_remote_code: bool = False
    device: str = "cpu"
    progress: ProgressFactory = no_progress
    decisions: Path | None = None
    target: dict[str, Any] | None = None

    def files(self) -> list[Path | None]:
        """The local data files this step reads: inputs no output may touch."""
        return [local_file(s) for s in (self.data, self.eval_data, self.calibration_data)]

    def given(self) -> set[str]:
        """Which datasets exist, for a method's ``data_problem``."""
        names = {"data": self.data, "calibration_data": self.calibration_data}
        return {name for name, spec in names.items() if spec is not None}


class StepData:
    """The datasets of one step, read and encoded on first use (once per model).

    Parts: ``training`` (the training split), ``held_out`` (``eval_data`` or the test split,
    never tuned on), ``validation`` (for keeping the best checkpoint) and ``calibration``.
    """

    def __init__(self, options: StepOptions, notes: list[str]) -> None:
        self._options = options
        self._notes = notes
        self._cache: dict[tuple[Any, ...], Encoded] = {}

    @property
    def given(self) -> bool:
        return self._options.data is not None

    def _encode(self, model: Any, spec: DataSpec, *, labels: bool = True) -> Encoded:
        key = (id(model), spec, labels)
        if key not in self._cache:
            encoded, dataset = encode_for(
                model, spec, max_length=self._options.max_length, labels=labels
            )
            self._notes += [n for n in dataset.notes if n not in self._notes]
            self._cache[key] = encoded
        return self._cache[key]

    def _data(self) -> DataSpec:
        if self._options.data is None:
            raise ConfigError(Problem("this step needs {data}"))
        return self._options.data

    def training(self, model: Any, *, labels: bool = True) -> Encoded:
        """The training split; with ``labels`` False its text alone (an embedder's distillation
        reads no labels)."""
        return self._encode(model, training_spec(self._data()), labels=labels)

    def held_out_spec(self) -> DataSpec:
        return self._options.eval_data or evaluation_part(training_spec(self._data()))

    def held_out(self, model: Any) -> Encoded:
        return self._encode(model, self.held_out_spec())

    def validation(self, model: Any, *, labels: bool = True) -> Encoded | None:
        """The validation split, or None (with a note) when the data has none."""
        try:
            return self._encode(
                model, held_out_part(training_spec(self._data()), "validation"), labels=labels
            )
        except DataError as e:
            self._notes.append(f"no validation split ({e}); kept the last step instead of the best")
            return None

    def calibration(self, model: Any, samples: int) -> tuple[Encoded, str]:
        """Text to calibrate on (its labels, if any, are not read), and what it is: the
        calibration data, else data's training part, else squeeze's built-in calibration
        text."""
        if self._options.calibration_data is None and not self.given:
            from squeeze.data.calibration import NAME, builtin_calibration
            from squeeze.data.encoding import encode_dataset

            key = (id(model), NAME, samples)
            if key not in self._cache:
                self._cache[key], _ = encode_dataset(
                    model, builtin_calibration(samples), max_length=self._options.max_length,
                    labels=False,
                )  # fmt: skip
            return self._cache[key], f"{len(self._cache[key])} texts of {NAME}"
        spec = self._options.calibration_data or training_spec(self._data())
        encoded = self._encode(model, replace(spec, max_samples=samples), labels=False)
        return encoded, f"{len(encoded)} examples"


@dataclass
class StepContext:
    """What a handler may use besides its model and config.

    Attributes:
        source: The input's path or hub id (to load a fresh copy).
        out: The temporary output folder; handlers that produce files write them here.
        scratch: A temporary folder for intermediate files, removed afterwards.
        data: The step's datasets (``StepData``).
        device: Where PyTorch runs.
        trust_remote_code: Allow checkpoints' own Python code.
        measure: Whether the runner measures the metric (handlers may add their own figures).
        checkpoint_dir: Where a resumable method keeps its training state.
        resume: Continue from ``checkpoint_dir``.
        max_length: Tokens per example (what a latency target is timed at).
        metric_before: The input's metric on the held-out data (when measured).
        max_accuracy_drop: The step's gate, for handlers that choose among candidates.
        gate_on: What that gate judges (``point`` or ``upper``).
        min_fidelity: An embedder's fidelity floor, for handlers that choose among candidates.
        progress: Opens progress bars.
        decisions: Where measured choices are remembered (``StepOptions.decisions``).
        target: The deployment machine's fingerprint (``StepOptions.target``).
    """

    source: str
    out: Path
    scratch: Path
    data: StepData
    device: str = "cpu"
    trust_remote_code: bool = False
    measure: bool = True
    checkpoint_dir: Path | None = None
    resume: bool = False
    max_length: int = 128
    metric_before: Evaluation | None = None
    max_accuracy_drop: float | None = None
    gate_on: str = "point"
    min_fidelity: float | None = None
    progress: ProgressFactory = no_progress
    decisions: Path | None = None
    target: dict[str, Any] | None = None
