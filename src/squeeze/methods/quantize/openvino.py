"""The ``openvino`` backend: OpenVINO IR compressed or quantized by NNCF.

- int8, weight-only (default): ``nncf.compress_weights`` INT8_ASYM, per output channel;
  activations stay float.
- int8 ``static``: ``nncf.quantize`` with ``ModelType.TRANSFORMER`` on calibration batches,
  int8 weights and activations (fast on CPUs with VNNI or AMX).
- int4: ``nncf.compress_weights`` INT4_ASYM (INT4_SYM with ``symmetric``) in groups of
  ``block_size``, every layer (``ratio=1``); NNCF keeps the embeddings and the last layer
  int8, as its defaults do.

Each starts from the validated plain ONNX export (``squeeze.methods.export.openvino``); the result
is compared with the original like every quantization.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from squeeze.core.types import StepResult
from squeeze.engine.registry import Backend, register_backend
from squeeze.methods.quantize.ort_int8 import static_int8_only

if TYPE_CHECKING:
    from squeeze.engine.step import StepContext
    from squeeze.methods.quantize.method import QuantizeConfig
    from squeeze.model.loaded import LoadedModel


def _quantize(
    loaded: LoadedModel, config: QuantizeConfig, ctx: StepContext, agree: Any
) -> tuple[StepResult, Any]:
    import contextlib
    import io
    import logging

    import nncf

    from squeeze.artifact.read import OPENVINO_FILE
    from squeeze.methods.export.method import ExportConfig
    from squeeze.methods.export.openvino import write_ir_export
    from squeeze.methods.quantize.method import calibration_feeds
    from squeeze.model.runtime import openvino_session, ort_forward

    modes, notes = nncf.CompressWeightsMode, []
    if config.dtype == "int4":
        mode = modes.INT4_SYM if config.symmetric else modes.INT4_ASYM
        recorded = {"mode": f"weight-only {mode.value}", "group_size": config.block_size}
        compress = partial(
            nncf.compress_weights, mode=mode, group_size=config.block_size, ratio=1.0
        )
    elif not config.static:
        recorded = {"mode": f"weight-only {modes.INT8_ASYM.value}"}
        compress = partial(nncf.compress_weights, mode=modes.INT8_ASYM)
    else:
        feeds, source = calibration_feeds(loaded, config, ctx)
        names = set(loaded.input_names)
        dataset = nncf.Dataset([{k: v for k, v in f.items() if k in names} for f in feeds])
        recorded, notes = {"mode": "static int8 (NNCF, transformer)"}, [f"calibrated on {source}"]
        compress = partial(
            nncf.quantize,
            calibration_dataset=dataset,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(feeds),
        )

    def transform(model: Any) -> Any:
        # NNCF logs statistics tables at INFO and draws its own progress bars on stdout, which
        # would break --json; squeeze's progress covers the step.
        logging.getLogger("nncf").setLevel(logging.WARNING)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return compress(model)

    quantization = {"backend": "openvino", **recorded}
    _, export_notes = write_ir_export(
        loaded, ctx.out, ctx.scratch, ExportConfig(), transform=transform,
        update={"dtype": config.dtype, "quantization": quantization}, release=True,
    )  # fmt: skip
    forward = ort_forward(openvino_session(ctx.out / OPENVINO_FILE))
    return StepResult(notes=[*export_notes, *notes]), forward


register_backend(
    Backend(
        name="openvino",
        dtypes=("int8", "int4"),
        default_for=(),
        produces="openvino",
        quantize=_quantize,
        help="OpenVINO IR through NNCF: int8 weight-only or static, int4 weight-only",
        check=static_int8_only,
    )
)
