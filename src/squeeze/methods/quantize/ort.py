"""The ``onnxruntime`` backend: ONNX Runtime's quantizers, producing an export folder.

int8 (the default for int8: base install, no data needed, fastest on AVX2-only CPUs; on VNNI/AMX
CPUs OpenVINO's static int8 beat it, which ``--backend auto`` finds) is dynamic or static QDQ
(``squeeze.methods.quantize.ort_int8``); int4 is weight-only MatMulNBits
(``squeeze.methods.quantize.ort_int4``).

Embedders keep this default. Measured on all-MiniLM-L6-v2 (mean cosine to the fp32 embeddings of
1035 held-out movie reviews; 2-core Xeon with AVX-512 VNNI and AMX): dynamic int8 0.9904. Its
error is spread over every MatMul (FFN input, FFN output, attention each cost 0.002-0.004), so
no speed-neutral option lifts it far: 7-bit weights off (``reduce_range``) 0.9917; embeddings
fp32 0.9909 (and 2.5x larger); the last layer fp32 0.9908. Keeping the FFN outputs fed by the
largest peaks fp32 (``outlier_ratio`` 7: four of six) gives 0.9942 for 15-50% more latency and
30% more bytes. OpenVINO's static int8 (``--backend openvino --static``) reaches 0.9975 and ran
twice as fast at batch 32 on that CPU, but needs the extra and calibration text; ``auto`` finds
it where it wins. ONNX Runtime's static QDQ keeps 0.925 only: its fixed calibrated ranges clip
the FFN outputs' peaks (0.988 with those six MatMuls fp32).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from squeeze.core.types import StepResult
from squeeze.engine.registry import Backend, register_backend
from squeeze.methods.quantize import ort_int4, ort_int8

if TYPE_CHECKING:
    from squeeze.engine.step import StepContext
    from squeeze.methods.quantize.method import QuantizeConfig
    from squeeze.model.loaded import LoadedModel


def _quantize(
    loaded: LoadedModel, config: QuantizeConfig, ctx: StepContext, agree: Any
) -> tuple[StepResult, Any]:
    """A validated fp32 export (fused for dynamic int8, plain for static int8 and int4),
    quantized into the output."""
    from squeeze.artifact.read import MODEL_FILE
    from squeeze.methods.export.method import ExportConfig
    from squeeze.methods.export.onnx import derived_export
    from squeeze.model.runtime import ort_forward, ort_session

    module = ort_int4 if config.dtype == "int4" else ort_int8
    fused = module is ort_int8 and config.optimize and not config.static
    # Nothing runs the PyTorch model after this export's validation: free it for the quantizer.
    export, quantize = ExportConfig(optimize=fused), partial(module.quantize, loaded, config, ctx)
    _, notes = derived_export(loaded, ctx.out, ctx.scratch, export, quantize, release=True)
    return StepResult(notes=notes), ort_forward(ort_session(ctx.out / MODEL_FILE))


register_backend(
    Backend(
        name="onnxruntime",
        dtypes=("int8", "int4"),
        default_for=(),
        produces="onnx",
        quantize=_quantize,
        help="ONNX Runtime: int8 dynamic (fused, QAttention) or static QDQ; int4 weight-only "
        "MatMulNBits",
        check=ort_int8.static_int8_only,
    )
)
