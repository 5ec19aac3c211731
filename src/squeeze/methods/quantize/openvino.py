"""The ``openvino`` backend: OpenVINO IR compressed or quantized by NNCF.

- int8, weight-only (default): ``nncf.compress_weights`` INT8_ASYM, per output channel;
  activations stay float.
- int8 ``static``: ``nncf.quantize`` with ``ModelType.TRANSFORMER`` on calibration batches,
  int8 weights and activations (fast on CPUs with VNNI or AMX).
- int4: ``nncf.compress_weights`` INT4_ASYM (INT4_SYM with ``symmetric``) in groups of
  ``block_size``, every layer (``ratio=1``); NNCF keeps the embeddings and the last layer
  int8, as its defaults do.
- ``compute`` bf16 (int8, int4): the layers left in floating point compute in bf16 (the
  manifest's ``inference_precision``), as OpenVINO does by default on CPUs with bf16; f32 (the
  default) keeps them exact.
- bf16: the IR with fp16-stored weights, computed in bf16 (the manifest's
  ``inference_precision``, which squeeze's runtime applies; other OpenVINO callers set
  ``INFERENCE_PRECISION_HINT`` to bf16, the CPU plugin's default where the CPU has bf16). Fast
  on CPUs with AMX or AVX512-BF16; elsewhere OpenVINO computes it in f32.

Each starts from the validated plain ONNX export (``squeeze.methods.export.openvino``); the result
is compared with the original like every quantization.
"""

from __future__ import annotations

from collections.abc import Collection
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
    if config.dtype == "bf16":
        return _bf16(loaded, ctx)
    import contextlib
    import io
    import logging

    from squeeze.artifact.read import OPENVINO_FILE
    from squeeze.methods.export.method import ExportConfig
    from squeeze.methods.export.openvino import write_ir_export
    from squeeze.methods.quantize.method import calibration_feeds
    from squeeze.model.runtime import no_telemetry, openvino_session, ort_forward

    with no_telemetry():
        import nncf
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
    update = {"dtype": config.dtype, "quantization": quantization}
    if config.compute != "f32":
        update["inference_precision"] = config.compute
        notes += _bf16_notes()
    _, export_notes = write_ir_export(
        loaded, ctx.out, ctx.scratch, ExportConfig(), transform=transform, update=update,
        release=True,
    )  # fmt: skip
    forward = ort_forward(openvino_session(ctx.out / OPENVINO_FILE, precision=config.compute))
    return StepResult(notes=[*export_notes, *notes]), forward


def bf16_problem(isa: Collection[str] | None = None) -> str | None:
    """Why a CPU (this one, or one with flags ``isa``) cannot compute in bf16: OpenVINO then
    runs a bf16 IR in f32. None when it can."""
    from squeeze.measure.machine import BF16_FLAGS, cpu_flags

    if set(cpu_flags() if isa is None else isa) & set(BF16_FLAGS):
        return None
    which = "this CPU" if isa is None else "the target CPU"
    return f"{which} has no bf16 arithmetic ({' or '.join(BF16_FLAGS)})"


def _bf16_notes() -> list[str]:
    missing = bf16_problem()
    if missing is None:
        return []
    return [
        f"{missing}: OpenVINO computes this IR's bf16 parts in f32 here, so its speed here is "
        "not what a CPU with bf16 gets"
    ]


def _bf16(loaded: LoadedModel, ctx: StepContext) -> tuple[StepResult, Any]:
    from squeeze.artifact.read import OPENVINO_FILE
    from squeeze.methods.export.method import ExportConfig
    from squeeze.methods.export.openvino import write_ir_export
    from squeeze.model.runtime import openvino_session, ort_forward

    update = {
        "dtype": "bf16",
        "inference_precision": "bf16",
        "quantization": {"backend": "openvino", "mode": "bf16 compute, fp16 weights"},
    }
    _, notes = write_ir_export(
        loaded, ctx.out, ctx.scratch, ExportConfig(), update=update, release=True,
        half_weights=True,
    )  # fmt: skip
    notes += _bf16_notes()
    forward = ort_forward(openvino_session(ctx.out / OPENVINO_FILE, precision="bf16"))
    return StepResult(notes=notes), forward


register_backend(
    Backend(
        name="openvino",
        dtypes=("int8", "int4", "bf16"),
        default_for=(),
        produces="openvino",
        quantize=_quantize,
        help="OpenVINO IR: int8 weight-only or static and int4 weight-only through NNCF; bf16",
        check=static_int8_only,
    )
)
