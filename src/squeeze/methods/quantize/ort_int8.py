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
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squeeze.core.errors import Problem, ValidationError
from squeeze.core.types import StepResult
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


def quantize_dynamic_int8(
    model_in: Path,
    model_out: Path,
    *,
    per_channel: bool,
    reduce_range: bool,
    exclude: Collection[str] = (),
) -> None:
    """Dynamic int8 of ``model_in`` into ``model_out``, with external data where the input has it
    (the quantizer writes ``model_out`` plus ``<name>.data``); the nodes in ``exclude`` stay
    fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from squeeze.methods.export.storage import has_external_data

    with quiet_ort_quantizer():
        quantize_dynamic(
            str(model_in),
            str(model_out),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=reduce_range,
            nodes_to_exclude=list(exclude),
            use_external_data_format=has_external_data(model_in),
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


class _Feeds:
    """onnxruntime's CalibrationDataReader protocol over prepared input batches."""

    def __init__(self, batches: list[Mapping[str, np.ndarray]], names: set[str]) -> None:
        self._batches = iter([{k: v for k, v in b.items() if k in names} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # part of the protocol; one pass is all calibration needs
        return None


def quantize_static_int8(
    model_in: Path,
    model_out: Path,
    calibration: list[Mapping[str, np.ndarray]],
    *,
    method: str,
    per_channel: bool,
    reduce_range: bool,
    outlier_ratio: float,
    workdir: Path,
) -> list[Outlier]:
    """QDQ static int8: pre-process (shape inference + graph cleanup), calibrate, quantize.

    Activations are unsigned (U8S8), the fast combination on x86 CPUs. MatMuls whose input
    carries outliers (see :mod:`squeeze.methods.quantize.outliers`; found on the pre-processed
    graph, whose node names the quantizer sees) stay fp32; returns them.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from squeeze.methods.export.storage import has_external_data

    prepared = workdir / "preprocessed.onnx"
    external = has_external_data(model_in)
    with quiet_ort_quantizer():
        # Symbolic shape inference cannot follow transformers 5 exports ("Incomplete symbolic
        # shape inference"); ONNX shape inference and the graph clean-up still run.
        quant_pre_process(
            str(model_in), str(prepared), skip_symbolic_shape=True,
            save_as_external_data=external, all_tensors_to_one_file=True,
        )  # fmt: skip
        names = {i.name for i in onnx.load(str(prepared), load_external_data=False).graph.input}
        kept = outlier_matmuls(prepared, calibration, outlier_ratio)
        try:
            quantize_static(
                str(prepared),
                str(model_out),
                _Feeds(calibration, names),
                quant_format=QuantFormat.QDQ,
                # Only the matrix multiplies: quantizing everything also quantizes the
                # attention-mask Add, whose calibrated range spans the mask's -3.4e38, and
                # accuracy collapsed to chance (measured on the tiny order-task BERT).
                op_types_to_quantize=["MatMul", "Gemm"],
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, _CALIBRATION[method]),
                reduce_range=reduce_range,
                nodes_to_exclude=[o.node for o in kept],
                use_external_data_format=external,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        except (ValueError, RuntimeError) as e:
            raise ValidationError(f"static quantization failed: {str(e).splitlines()[0]}") from e
    return kept


def quantize(
    loaded: LoadedModel, config: QuantizeConfig, ctx: StepContext, agree: Any
) -> tuple[StepResult, Any]:
    """A validated fp32 export (fused first for dynamic int8), quantized into the output."""
    from squeeze.artifact.read import MODEL_FILE
    from squeeze.methods.export.method import ExportConfig
    from squeeze.methods.export.onnx import derive_export, write_export
    from squeeze.methods.quantize.method import calibration_feeds
    from squeeze.model.runtime import ort_forward, ort_session

    fused = config.optimize and not config.static
    fp32 = ctx.scratch / "fp32"
    fp32.mkdir()
    # Nothing runs the PyTorch model after this export's validation: free it for the quantizer.
    _, notes = write_export(loaded, fp32, ExportConfig(optimize=fused), release=True)
    target = ctx.out / MODEL_FILE
    feeds, source = calibration_feeds(loaded, config, ctx)
    if config.static:
        kept = quantize_static_int8(
            fp32 / MODEL_FILE, target, feeds, method=config.calibration_method,
            per_channel=config.per_channel, reduce_range=config.reduce_range,
            outlier_ratio=config.outlier_ratio, workdir=ctx.scratch,
        )  # fmt: skip
        notes.append(f"calibrated on {source} ({config.calibration_method})")
    else:
        kept = outlier_matmuls(fp32 / MODEL_FILE, feeds, config.outlier_ratio)
        quantize_dynamic_int8(
            fp32 / MODEL_FILE, target, per_channel=config.per_channel,
            reduce_range=config.reduce_range, exclude=[o.node for o in kept],
        )  # fmt: skip
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
        "fused_before_quantization": fused,
        "outlier_ratio": config.outlier_ratio,
        "kept_fp32": [{"node": o.node, "ratio": round(o.ratio, 2)} for o in kept],
    }
    derive_export(fp32, ctx.out, {"dtype": "int8", "quantization": quantization})
    return StepResult(notes=notes), ort_forward(ort_session(target))


def static_int8_only(config: QuantizeConfig) -> list[Problem]:
    """The check of backends that calibrate int8 and round int4 weights without data."""
    if config.dtype == "int4" and config.static:
        return [
            Problem("{static} is int8 calibration; int4 weight-only quantization needs no data")
        ]
    return []


def only_onnxruntime_static(config: QuantizeConfig) -> list[Problem]:
    """The other backends' check: calibration (``static``) is ONNX Runtime's alone."""
    if config.static:
        return [Problem("{static} is int8 calibration for {backend} onnxruntime or openvino")]
    return []
