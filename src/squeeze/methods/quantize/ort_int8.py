"""int8 with ONNX Runtime's own quantizer: dynamic, or static QDQ calibrated on real samples.

Facts this relies on (onnxruntime 1.32, transformers 5): quantizing the optimizer's fused graph
turns Attention into QAttention, faster than unfused int8; ``quantize_dynamic`` on that graph
fails shape inference unless ``DefaultTensorType`` is FLOAT; ORT dynamic int8 also quantizes the
word-embedding Gather, so the file shrinks about 4x (torch's dynamic int8 keeps embeddings fp32).

Large models: an fp32 export with external data (``model.onnx.data``) is quantized into one with
external data too. ``quantize_dynamic`` holds the whole fp32 graph and its int8 copy, so the
PyTorch weights are freed before it runs (once the fp32 export is validated nothing needs them:
the agreement reference is computed before the step starts).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squeeze.core.errors import Problem, ValidationError
from squeeze.methods.quantize.outliers import PERCENTILE, Outlier, outlier_matmuls

if TYPE_CHECKING:
    import numpy as np

    from squeeze.engine.step import StepContext
    from squeeze.methods.quantize.method import QuantizeConfig
    from squeeze.model.loaded import LoadedModel

_CALIBRATION = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


@contextlib.contextmanager
def quiet_ort_quantizer() -> Iterator[None]:
    """The quantizer logs a warning per unquantized node and prints progress."""
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


class _Feeds:
    """onnxruntime's CalibrationDataReader protocol over prepared input batches."""

    def __init__(self, batches: list[Mapping[str, np.ndarray]], names: set[str]) -> None:
        self._batches = iter([{k: v for k, v in b.items() if k in names} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # part of the protocol; one pass is all calibration needs
        return None


def quantize_int8(
    model_in: Path,
    model_out: Path,
    feeds: list[Mapping[str, np.ndarray]],
    config: QuantizeConfig,
    workdir: Path,
) -> list[Outlier]:
    """Dynamic int8 of ``model_in`` into ``model_out``, or static QDQ calibrated on ``feeds``;
    with external data where the input has it (the quantizer writes ``model_out`` plus
    ``<name>.data``). MatMuls whose input carries outliers on ``feeds`` (see
    :mod:`squeeze.methods.quantize.outliers`) stay fp32; returns them.

    Static pre-processes the graph first (shape inference + graph cleanup; the outliers are
    found on that graph, whose node names the quantizer sees) and quantizes activations
    unsigned (U8S8), the fast combination on x86 CPUs.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    from squeeze.methods.export.storage import has_external_data

    external = has_external_data(model_in)
    options: dict[str, Any] = {
        "weight_type": QuantType.QInt8,
        "per_channel": config.per_channel,
        "reduce_range": config.reduce_range,
        "use_external_data_format": external,
        "extra_options": {"DefaultTensorType": onnx.TensorProto.FLOAT},
    }
    if not config.static:
        kept = outlier_matmuls(model_in, feeds, config.outlier_ratio)
        with quiet_ort_quantizer():
            quantize_dynamic(
                str(model_in), str(model_out), nodes_to_exclude=[o.node for o in kept], **options
            )
        return kept
    prepared = workdir / "preprocessed.onnx"
    with quiet_ort_quantizer():
        # Symbolic shape inference cannot follow transformers 5 exports ("Incomplete symbolic
        # shape inference"); ONNX shape inference and the graph clean-up still run.
        quant_pre_process(
            str(model_in), str(prepared), skip_symbolic_shape=True,
            save_as_external_data=external, all_tensors_to_one_file=True,
        )  # fmt: skip
        names = {i.name for i in onnx.load(str(prepared), load_external_data=False).graph.input}
        kept = outlier_matmuls(prepared, feeds, config.outlier_ratio)
        try:
            quantize_static(
                str(prepared),
                str(model_out),
                _Feeds(feeds, names),
                quant_format=QuantFormat.QDQ,
                # Only the matrix multiplies: quantizing everything also quantizes the
                # attention-mask Add, whose calibrated range spans the mask's -3.4e38, and
                # accuracy collapsed to chance (measured on the tiny order-task BERT).
                op_types_to_quantize=["MatMul", "Gemm"],
                activation_type=QuantType.QUInt8,
                calibrate_method=CalibrationMethod[_CALIBRATION[config.calibration_method]],
                nodes_to_exclude=[o.node for o in kept],
                **options,
            )
        except (ValueError, RuntimeError) as e:
            raise ValidationError(f"static quantization failed: {str(e).splitlines()[0]}") from e
    return kept


def quantize(
    loaded: LoadedModel,
    config: QuantizeConfig,
    ctx: StepContext,
    exported: Path,
    manifest: dict[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """int8 of the validated fp32 export in ``exported`` into the output: the manifest's update
    and the notes (``squeeze.methods.export.onnx.derived_export``'s ``derive``)."""
    from squeeze.artifact.read import MODEL_FILE
    from squeeze.methods.quantize.method import calibration_feeds

    feeds, source = calibration_feeds(loaded, config, ctx)
    kept = quantize_int8(exported / MODEL_FILE, ctx.out / MODEL_FILE, feeds, config, ctx.scratch)
    notes = [f"calibrated on {source} ({config.calibration_method})"] if config.static else []
    if kept:
        notes.append(
            f"{len(kept)} MatMul(s) kept fp32: their input peaks at {kept[-1].ratio:.0f}-"
            f"{kept[0].ratio:.0f}x its {PERCENTILE:g}th percentile on {source} (outlier_ratio "
            f"{config.outlier_ratio:g})"
        )
    quantization = {
        "backend": "onnxruntime",
        "mode": "static QDQ" if config.static else "dynamic",
        "per_channel": config.per_channel,
        "reduce_range": config.reduce_range,
        "fused_before_quantization": manifest["optimized"],
        "outlier_ratio": config.outlier_ratio,
        "kept_fp32": [{"node": o.node, "ratio": round(o.ratio, 2)} for o in kept],
    }
    return {"dtype": "int8", "quantization": quantization}, notes


def static_int8_only(config: QuantizeConfig) -> list[Problem]:
    """The check of backends that calibrate int8 and take their other dtypes without data."""
    if config.dtype != "int8" and config.static:
        return [Problem(f"{{static}} is int8 calibration; {config.dtype} needs no data")]
    return []


def only_onnxruntime_static(config: QuantizeConfig) -> list[Problem]:
    """The other backends' check: calibration (``static``) is ONNX Runtime's alone."""
    if config.static:
        return [Problem("{static} is int8 calibration for {backend} onnxruntime or openvino")]
    return []
