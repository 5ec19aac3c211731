"""``quantize_checkpoint``: quantize with the chosen backend, validate, measure, save or refuse.

The one implementation behind ``squeeze quantize``. int8 goes through a validated fp32 ONNX
export (fused first, so attention becomes QAttention) and ONNX Runtime's quantizer; fp16/bf16
cast the PyTorch checkpoint. Every result is compared with the original on the same inputs
(logit distance, top-1 agreement) and, with data, scored on held-out examples in the format that
is deployed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from squeeze.checkpoint import (
    atomic_output,
    check_output,
    load,
    resolve_local,
    size_stats,
    weight_bytes,
    write_checkpoint,
)
from squeeze.data import (
    DataSpec,
    Encoded,
    batches,
    encode_for,
    evaluation_part,
    training_part,
)
from squeeze.errors import UnsupportedError
from squeeze.evaluate import evaluate_forward
from squeeze.export.onnx import (
    MANIFEST_FILE,
    MODEL_FILE,
    ExportConfig,
    export_onnx,
    onnx_size_stats,
    validation_batches,
)
from squeeze.gate import Gated, GateMissed
from squeeze.quantize.config import QuantizeConfig
from squeeze.quantize.ort_int8 import quantize_dynamic_int8, quantize_static_int8
from squeeze.quantize.validate import Agreement, agreement
from squeeze.runtime import Forward, ort_forward, ort_session, torch_forward
from squeeze.types import Evaluation, LoadedModel, ProgressFactory, Task, no_progress

SUMMARY_FILE = "quantize.json"
_HALF = {"fp16": "float16", "bf16": "bfloat16"}


@dataclass
class QuantizeResult(Gated):
    """What quantization did, measured."""

    out: Path
    config: dict[str, Any]
    backend: str
    backend_default: bool
    before: dict[str, int]
    after: dict[str, int]
    agreement: Agreement
    seconds: float
    metric_before: Evaluation | None = None
    metric_after: Evaluation | None = None
    max_accuracy_drop: float | None = None
    onnx_agreement: Agreement | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "config": self.config,
            "onnx_agreement": self.onnx_agreement.to_dict() if self.onnx_agreement else None,
            "backend": self.backend,
            "backend_default": self.backend_default,
            "before": self.before,
            "after": self.after,
            "size_ratio": self.before["bytes_on_disk"] / max(self.after["bytes_on_disk"], 1),
            "agreement": self.agreement.to_dict(),
            **self.gate_fields(),
            "seconds": self.seconds,
            "notes": self.notes,
        }


def _comparison_batches(loaded: LoadedModel, held_out: Encoded | None) -> list[dict[str, Any]]:
    """Inputs for the agreement check: up to 256 held-out examples, else probe sentences."""
    if held_out is None:
        return list(validation_batches(loaded, ExportConfig()).values())
    return [b.inputs for _, b in zip(range(8), batches(held_out, 32), strict=False)]


def _derive_export(exported: Any, folder: Path, manifest_update: dict[str, Any]) -> Forward:
    """Finish an export folder whose model.onnx was derived from ``exported``'s: copy the
    tokenizer and config, write the updated manifest, and open the new model."""
    for item in exported.out.iterdir():
        if item.name not in (MODEL_FILE, MANIFEST_FILE):
            shutil.copy2(item, folder / item.name)
    manifest = {**exported.manifest, **manifest_update}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return ort_forward(ort_session(folder / MODEL_FILE))


def _int8_onnx(
    source: str,
    tmp: Path,
    work: Path,
    config: QuantizeConfig,
    calibration: Encoded | None,
    trust_remote_code: bool,
) -> tuple[Forward, list[str]]:
    """Export (validated), quantize into ``tmp`` as an export folder; return its forward."""
    fused = config.optimize and not config.static
    exported = export_onnx(
        source, work / "fp32", config=ExportConfig(optimize=fused),
        trust_remote_code=trust_remote_code,
    )  # fmt: skip
    notes = list(exported.notes)
    target = tmp / MODEL_FILE
    if config.static:
        longest = max(len(ids) for ids in calibration.features["input_ids"])
        feeds = [b.inputs for b in batches(calibration, 16, pad_to=longest)]
        quantize_static_int8(
            exported.onnx_path, target, feeds, method=config.calibration_method,
            per_channel=config.per_channel, workdir=work,
        )  # fmt: skip
        notes.append(
            f"calibrated on {len(calibration)} training examples ({config.calibration_method})"
        )
    else:
        quantize_dynamic_int8(exported.onnx_path, target, per_channel=config.per_channel)
    quantization = {
        "backend": "onnxruntime",
        "mode": "static QDQ" if config.static else "dynamic",
        "per_channel": config.per_channel,
        "fused_before_quantization": fused,
    }
    return _derive_export(exported, tmp, {"dtype": "int8", "quantization": quantization}), notes


def _fp16_onnx(source: str, folder: Path, work: Path, trust_remote_code: bool) -> Forward:
    """An fp16 ONNX export for GPU providers, beside the fp16 checkpoint.

    onnxruntime's float16 converter keeps float32 inputs and outputs (``keep_io_types``), so the
    file drops into the same serving code; the CPU provider runs it too, which is how it is
    validated here.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    exported = export_onnx(
        source, work / "fp32", config=ExportConfig(), trust_remote_code=trust_remote_code
    )
    folder.mkdir()
    half = convert_float_to_float16(onnx.load(str(exported.onnx_path)), keep_io_types=True)
    onnx.save(half, str(folder / MODEL_FILE))
    quantization = {"backend": "onnxruntime", "mode": "fp16 weights and compute"}
    return _derive_export(exported, folder, {"dtype": "float16", "quantization": quantization})


def _half_torch(loaded: LoadedModel, tmp: Path, dtype: str) -> Forward:
    import torch

    loaded.model.to(getattr(torch, _HALF[dtype]))
    write_checkpoint(loaded, tmp)
    return torch_forward(loaded.model)


def _in_transformers(loaded: LoadedModel, tmp: Path, config: QuantizeConfig) -> Forward:
    """torchao or bitsandbytes through transformers; validated by reloading what was saved."""
    from squeeze.arch import ffn_width
    from squeeze.quantize.in_transformers import (
        check_4bit_widths,
        quantization_config,
        quantize_in_transformers,
    )

    if config.dtype == "int4":
        check_4bit_widths(loaded.config, ffn_width(loaded.config, loaded.family))
    if config.chosen_backend == "torch" and loaded.family.conv1d:
        raise UnsupportedError(
            f"torchao int8 quantizes nn.Linear layers and {loaded.family.family} keeps its "
            "weights in Conv1D, so nothing would change; use --backend onnxruntime or bitsandbytes"
        )
    quantization = quantization_config(config.dtype, config.chosen_backend, config.bnb_4bit_type)
    quantize_in_transformers(loaded, tmp, quantization)
    return torch_forward(load(tmp).model)


def quantize_checkpoint(
    source: str,
    out: str | Path,
    config: QuantizeConfig,
    *,
    data: DataSpec | None = None,
    eval_data: DataSpec | None = None,
    calibration_data: DataSpec | None = None,
    max_length: int = 128,
    max_accuracy_drop: float | None = None,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    progress: ProgressFactory = no_progress,
) -> QuantizeResult:
    """Quantize ``source`` into ``out`` and report size, agreement and (with data) accuracy.

    Raises:
        ConfigError: a gate or static calibration without data.
        UnsupportedError: a model whose head squeeze cannot score or export.
    """
    from squeeze.errors import ConfigError

    if max_accuracy_drop is not None and data is None:
        raise ConfigError("--max-accuracy-drop needs --data")
    calibration_spec = calibration_data or (training_part(data) if data is not None else None)
    if config.static and calibration_spec is None:
        raise ConfigError("--static needs calibration data: --calibration-data SPEC or --data SPEC")
    local = resolve_local(source)
    check_output(out, overwrite=overwrite, inputs=[local])
    start = time.perf_counter()
    loaded = load(source, trust_remote_code=trust_remote_code)
    if loaded.task not in (Task.SEQUENCE_CLASSIFICATION, Task.CAUSAL_LM, Task.MASKED_LM):
        raise UnsupportedError(f"cannot validate a {loaded.task.value} model's outputs")
    notes = list(loaded.notes)
    backend = config.chosen_backend
    if config.backend is None:
        notes.append(
            f"backend {backend} chosen for {config.dtype} (the default; --backend to change)"
        )

    reference = torch_forward(loaded.model)
    held_out = calibration = None
    metric_before = None
    if data is not None:
        spec = eval_data or evaluation_part(data)
        held_out, dataset = encode_for(loaded, spec, max_length=max_length)
        notes += dataset.notes
        metric_before = evaluate_forward(reference, held_out, loaded.task, progress=progress)
    if config.static:
        limited = DataSpec(
            **{**asdict(calibration_spec), "max_samples": config.calibration_samples}
        )
        calibration, _ = encode_for(loaded, limited, max_length=max_length)
    compare = _comparison_batches(loaded, held_out)
    expected = [reference(b) for b in compare]  # before half precision changes the model in place
    token_level = loaded.task is not Task.SEQUENCE_CLASSIFICATION

    summary = QuantizeResult(
        out=Path(out),
        config=asdict(config),
        backend=backend,
        backend_default=config.backend is None,
        before=asdict(size_stats(loaded)),
        after={},
        agreement=Agreement(0, 0, 0, 0),
        seconds=0.0,
        metric_before=metric_before,
        max_accuracy_drop=max_accuracy_drop,
        notes=notes,
    )
    try:
        with (
            tempfile.TemporaryDirectory(prefix="squeeze-quantize-") as work,
            atomic_output(out, overwrite=overwrite, inputs=[local]) as tmp,
        ):
            if backend == "onnxruntime":
                forward, step_notes = _int8_onnx(
                    source, tmp, Path(work), config, calibration, trust_remote_code
                )
                summary.notes += step_notes
                summary.after = asdict(onnx_size_stats(tmp))
            elif config.dtype in _HALF:
                if config.dtype == "fp16":
                    onnx_forward = _fp16_onnx(source, tmp / "onnx", Path(work), trust_remote_code)
                    summary.onnx_agreement = agreement(
                        expected, onnx_forward, compare, token_level=token_level
                    )
                    summary.notes.append(
                        f"also wrote an fp16 ONNX export to {Path(out) / 'onnx'} (top-1 agreement "
                        f"{summary.onnx_agreement.top1_agreement:.2%}, max |Δlogit| "
                        f"{summary.onnx_agreement.max_abs_diff:.3g}, on the CPU provider)"
                    )
                forward = _half_torch(loaded, tmp, config.dtype)
                summary.after = asdict(size_stats(loaded, tmp))
            else:
                forward = _in_transformers(loaded, tmp, config)
                # Packed 4-bit tensors count two weights per element: report the model's own
                # parameter count and the bytes actually written.
                summary.after = {**summary.before, "bytes_on_disk": weight_bytes(tmp)}
            summary.agreement = agreement(expected, forward, compare, token_level=token_level)
            if held_out is not None:
                summary.metric_after = evaluate_forward(
                    forward, held_out, loaded.task, progress=progress
                )
            if summary.after["bytes_on_disk"] >= summary.before["bytes_on_disk"]:
                summary.notes.append(
                    f"the result is not smaller ({summary.after['bytes_on_disk']} vs "
                    f"{summary.before['bytes_on_disk']} bytes): fixed costs such as graph "
                    "constants outweigh the weights in a model this small"
                )
            summary.seconds = time.perf_counter() - start
            if not summary.passed:
                raise GateMissed(summary)
            (tmp / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2))
    except GateMissed:
        summary.notes.append(f"nothing was written to {out}: the accuracy gate failed")
    return summary
