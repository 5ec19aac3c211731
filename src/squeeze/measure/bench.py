"""Benchmark checkpoints and ONNX exports: each path becomes a timing target.

``bench_models`` times several models (or one model on several runtimes) in one process with
identical settings and inputs, so their figures can be compared directly; each result carries
its settings, so a later run can repeat them (``settings_of``).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from squeeze.core.errors import ConfigError, Problem, UnsupportedError, did_you_mean
from squeeze.core.types import ProgressFactory, SizeStats, no_progress
from squeeze.measure.latency import (
    BenchResult,
    BenchSettings,
    Target,
    measure,
    process_peak_rss_bytes,
    synthetic_inputs,
)

# tensorrt: an ONNX export on ONNX Runtime's TensorRT provider (CUDA).
RUNTIMES = ("torch", "onnxruntime", "tensorrt", "openvino")
_HALF = {"fp16": "float16", "bf16": "bfloat16"}


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """TF32 matmuls for one call (``tf32``), restored after, so fp32 targets timed in the same
    rotation stay fp32."""
    import torch

    if precision != "tf32":
        yield
        return
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    matmul.fp32_precision = "tf32"
    try:
        yield
    finally:
        matmul.fp32_precision = before


def torch_runtime_label(precision: str, compiled: bool) -> str:
    """'torch', 'torch fp16', 'torch bf16 compiled': what a PyTorch row was timed as."""
    parts = ["torch"] + ([precision] if precision != "fp32" else []) + (["compiled"] * compiled)
    return " ".join(parts)


def check_compile(device: str) -> None:
    """Raises: UnsupportedError where inductor cannot build kernels (no C++ compiler on CPU)."""
    if not device.startswith("cuda") and not (shutil.which("g++") or shutil.which("c++")):
        raise UnsupportedError(
            [Problem("{compile} on the CPU needs a C++ compiler (g++) for inductor's kernels")]
        )


def torch_target(
    name: str, loaded: Any, device: str, precision: str = "fp32", compiled: bool = False
) -> Target:
    """A PyTorch model timed in ``precision`` (cast in place), through ``torch.compile`` with
    ``compiled``; CUDA runs are synchronised and report torch's peak allocated memory. An
    embedder is timed up to its pooled embedding."""
    import torch

    from squeeze.model.pooling import pool

    names = loaded.input_names
    cuda = device.startswith("cuda")
    model = loaded.model
    if precision in _HALF:
        model.to(getattr(torch, _HALF[precision]))
    if compiled:
        check_compile(device)
        model = torch.compile(model)

    def prepare(inputs: dict[str, Any]) -> dict[str, Any]:
        return {k: torch.from_numpy(inputs[k]).to(device) for k in names}

    pooling = loaded.pooling

    def run(tensors: dict[str, Any]) -> None:
        with torch.inference_mode(), matmul_precision(precision):
            output = model(**tensors)
            if pooling is not None:
                # An embedder's output is the pooled embedding: its exports pool inside the
                # graph, so the PyTorch time includes it too, to compare like with like.
                pool(output.last_hidden_state, tensors["attention_mask"], pooling)

    # On CUDA: this model's weights plus the peak its runs allocate above what was resident
    # before its block (other models of the comparison share the device and its counters).
    weights = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    resident = [0]

    def peak() -> int:
        if not cuda:
            return process_peak_rss_bytes()
        return weights + torch.cuda.max_memory_allocated(device) - resident[0]

    def reset() -> None:
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
            resident[0] = torch.cuda.memory_allocated(device)

    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    return Target(name, torch_runtime_label(precision, compiled), run, prepare, sync, peak, reset)


def export_target(name: str, exported: Any, runtime: str, device: str) -> Target:
    """An ONNX Runtime session (CPU, CUDA or TensorRT) or an OpenVINO compiled model.

    On CUDA the peak is not measured: ONNX Runtime's CUDA arena is outside torch's counters,
    and the process RSS says nothing about GPU memory.
    """
    names = exported.input_names

    def prepare(inputs: dict[str, Any]) -> dict[str, Any]:
        return {k: inputs[k] for k in names}

    # session.run returns host arrays, so every timed run includes the device round trip.
    return Target(
        name,
        runtime,
        lambda feed: exported.session.run(None, feed),
        prepare,
        peak_memory=(lambda: None) if device.startswith("cuda") else process_peak_rss_bytes,
    )


def frame_ids(tokenizer: Any) -> list[int]:
    """The ids that open and close a sequence ([CLS] ... [SEP], or <s> ... </s>)."""
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return [i for i in (first, last) if i is not None]


def _static_shape(manifest: dict[str, Any]) -> tuple[int, int] | None:
    batch, seq = manifest["inputs"][0]["shape"]
    return (batch, seq) if isinstance(batch, int) else None


def check_seq(models: Sequence[str], seq_len: int, *, trust_remote_code: bool = False) -> None:
    """Refuse a timed length beyond a model's position table before anything is loaded or
    exported: the model would fail on it with a tensor-size error. A timed length is an exact
    shape, so it is refused, never cut (unlike a max length: ``squeeze.data.encoding.fit_length``).

    Raises:
        ConfigError: naming ``{seq_len}``, the model and its limit.
    """
    from squeeze.artifact import Artifact
    from squeeze.model.arch import check_length, find_spec

    for model in models:
        config = Artifact.of(model).config(trust_remote_code=trust_remote_code)
        if config is not None:
            try:
                check_length(config, find_spec(config), seq_len, field="seq_len")
            except ConfigError as e:
                raise ConfigError(e.problems, where=model) from None


def bench_models(
    models: Sequence[str],
    settings: BenchSettings,
    *,
    runtimes: Sequence[str] = (),
    exports: Mapping[str, Mapping[str, Path]] | None = None,
    trust_remote_code: bool = False,
    progress: ProgressFactory = no_progress,
    labels: Mapping[str, str] | None = None,
) -> tuple[list[BenchResult], list[str]]:
    """Benchmark each model on each requested runtime in one rotating measurement.

    ``labels``: what to call a model in progress and results where its path says little (a
    sweep's variants, whose paths are cache entries).

    A checkpoint runs on ``torch``; an export folder on its own runtime (``onnxruntime`` or
    ``openvino``). A checkpoint timed on an export runtime is timed through the export its
    caller built (``exports[model][runtime]``): measuring builds nothing.

    Returns:
        The results (one per model and runtime) and notes for the reader.

    Raises:
        ConfigError: a runtime that cannot run that model, shapes a static export forbids, or
            a sequence longer than a model's position table (before any work).
    """
    import torch

    from squeeze.artifact import Artifact
    from squeeze.measure.machine import other_isa_note

    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        raise ConfigError(
            [Problem(f"unknown {{runtime}} {', '.join(unknown)}; choose {', '.join(RUNTIMES)}"
                     f"{did_you_mean(unknown[0], RUNTIMES)}")]
        )  # fmt: skip
    check_seq(models, settings.seq_len, trust_remote_code=trust_remote_code)
    threads = settings.threads or torch.get_num_threads()
    notes: list[str] = []
    targets: list[Target] = []
    sizes: list[SizeStats] = []
    tokenizers: list[Any] = []
    for model in models:
        artifact = Artifact.of(model)
        elsewhere = other_isa_note(artifact.chosen_for(), model)
        if elsewhere is not None:
            notes.append(elsewhere)
        own = artifact.runtime
        wanted = list(runtimes) or [own]
        if artifact.export is not None:
            runnable = {own, "tensorrt"} if own == "onnxruntime" else {own}
            if set(wanted) - runnable:
                raise ConfigError(
                    [Problem(f"{model} is an {own} export; it runs on {{runtime}} "
                             f"{' or '.join(sorted(runnable))}")]
                )  # fmt: skip
            built = {r: artifact for r in wanted}
        else:
            built = {r: Artifact.of(f) for r, f in (exports or {}).get(model, {}).items()}
        on_exports = [r for r in wanted if r != "torch"]
        if set(on_exports) - set(built):
            raise ConfigError(
                [Problem(f"{model} is a checkpoint; to time it on {{runtime}} "
                         f"{', '.join(on_exports)}, export it first (squeeze export)")]
            )  # fmt: skip
        if "torch" in wanted:
            run = artifact.open(device=settings.device, trust_remote_code=trust_remote_code)
            loaded = run.loaded
            label = (labels or {}).get(model, model)
            targets.append(
                torch_target(label, loaded, settings.device, settings.precision, settings.compile)
            )
            sizes.append(artifact.size_stats(loaded))
            tokenizers.append((run.tokenizer, loaded.config.vocab_size, run.input_names))
        for runtime in on_exports:
            run = built[runtime].open(
                device=settings.device, threads=threads, tensorrt=runtime == "tensorrt"
            )
            static = _static_shape(run.exported.manifest)
            if static and (settings.batch_sizes != (static[0],) or settings.seq_len != static[1]):
                raise ConfigError(
                    [
                        Problem(
                            f"{model} was exported with static shapes {static[0]}x{static[1]}; "
                            f"bench it with {{batch_sizes}} {static[0]} {{seq_len}} {static[1]}"
                        )
                    ]
                )
            label = (labels or {}).get(model, model)
            targets.append(export_target(label, run.exported, runtime, settings.device))
            sizes.append(built[runtime].size_stats())
            tokenizers.append((run.tokenizer, len(run.tokenizer), run.input_names))

    tokenizer, vocab, _ = tokenizers[0]
    names = sorted({name for _, _, input_names in tokenizers for name in input_names})
    special = frame_ids(tokenizer)
    vocab = min(v for _, v, _ in tokenizers)

    def inputs_for(batch: int) -> dict[str, Any]:
        return synthetic_inputs(
            names, batch, settings.seq_len, vocab_size=vocab, special_ids=special
        )

    results = measure(targets, inputs_for, settings, threads, progress=progress)
    if settings.device.startswith("cuda") and any(
        not t.runtime.startswith("torch") for t in targets
    ):
        notes.append("peak GPU memory is torch's allocator only: ONNX Runtime's is not counted")
    for result, size in zip(results, sizes, strict=True):
        result.extra = {"size": asdict(size), "settings": asdict(settings)}
    return results, notes


def settings_of(result: BenchResult) -> BenchSettings:
    """The settings a result was measured with, to measure another model the same way."""
    recorded = dict(result.extra["settings"])
    recorded["batch_sizes"] = tuple(recorded["batch_sizes"])
    return BenchSettings(**recorded)
