"""int4 weight-only ONNX: ONNX Runtime's MatMulNBits quantizer, block-wise round to nearest.

Every constant-weight MatMul becomes ``MatMulNBits`` (4-bit weights in blocks of
``block_size`` along the input dimension, one scale and, unless symmetric, one zero point per
block) and every embedding Gather becomes ``GatherBlockQuantized``; activations stay float. It
is the CPU's 4-bit path for decoders (what onnxruntime-genai deploys), and works on encoders
too. ``accuracy_level`` 4 lets the CPU kernel quantize each activation block to int8 and use
integer dot products (VNNI/AMX where the CPU has them); 0 computes in fp32.

The graph is the plain export, not the fused one: fused Attention keeps the q/k/v weights
inside one operator the quantizer does not rewrite, so fusing first would leave the largest
projections in fp32. Classification heads stay fp32 (tiny, sensitive, often narrower than a
block). A language model's vocabulary projection is rounded to 8 bits (MatMulNBits ``bits=8``,
NNCF's default for the last layer too): it is the largest matrix of a small decoder (32000 x
768 in a 110M Llama), so fp32 made int4 larger than int8 (161 vs 129 MiB), while 4 bits cut
top-1 agreement with the original from 68% to 28% (random weights); 8 bits: 94.5 MiB, 61%. It
computes at accuracy level 4 whatever ``accuracy_level`` the 4-bit layers get.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from squeeze.engine.step import StepContext
    from squeeze.methods.quantize.method import QuantizeConfig
    from squeeze.model.loaded import LoadedModel

_QUANTIZED_OPS = {"MatMulNBits": "MatMul", "GatherBlockQuantized": "Gather"}


# Module names of classification heads (RoBERTa's is classifier.dense/out_proj; Llama's and
# GPT-2's sequence heads are `score`).
CLASSIFICATION_HEADS = frozenset({"classifier", "pre_classifier", "pooler", "score"})
# Module names of vocabulary projections: rounded to 8 bits, not 4 (NNCF's default for the last
# layer too). ONNX Runtime's quantizer rounds embedding lookups to 4 bits only.
VOCABULARY_HEADS = frozenset({"lm_head", "cls", "vocab_projector"})


def _matmuls_in(model: Any, modules: frozenset[str]) -> list[str]:
    """MatMul nodes of the named modules, by the module path the tracer puts in node names
    (``/model/classifier/out_proj/MatMul``)."""
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul" and modules & set(n.name.split("/"))
    ]


def _gemms_as_matmuls(model: Any) -> None:
    """Rewrite each Gemm with a constant weight as MatMul (+ Add of its bias), in place.
    MatMulNBits rewrites only MatMul, and GPT-2's Conv1D layers trace to Gemm
    (``addmm``); a transposed weight (``transB``) is stored transposed instead."""
    import onnx
    from onnx import helper, numpy_helper

    weights = {t.name: t for t in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = (
            attrs.get("transA", 0) == 0 and attrs.get("alpha", 1.0) == attrs.get("beta", 1.0) == 1.0
        )
        if node.op_type != "Gemm" or node.input[1] not in weights or not plain:
            nodes.append(node)
            continue
        weight = node.input[1]
        if attrs.get("transB", 0):
            transposed = numpy_helper.from_array(
                numpy_helper.to_array(weights[weight]).T.copy(), f"{weight}_t"
            )
            model.graph.initializer.append(transposed)
            weight = transposed.name
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        product = f"{node.output[0]}_matmul" if bias else node.output[0]
        nodes.append(
            helper.make_node(
                "MatMul", [node.input[0], weight], [product], name=f"{node.name}_MatMul"
            )
        )
        if bias:
            nodes.append(
                helper.make_node("Add", [product, bias], [node.output[0]], name=f"{node.name}_Add")
            )
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)


def _transposed_weights_as_constants(model: Any) -> None:
    """Give each MatMul that multiplies by ``Transpose(initializer)`` a transposed copy of the
    initializer instead, in place. A tied vocabulary projection (GPT-2's and
    any tied decoder's ``lm_head``) traces to exactly that, which MatMulNBits skips as a
    non-constant weight; the Transpose, left without readers, is dropped."""
    from onnx import helper, numpy_helper

    weights = {t.name: t for t in model.graph.initializer}

    def swaps_2d(node: Any) -> bool:
        perm = [helper.get_attribute_value(a) for a in node.attribute if a.name == "perm"]
        return len(weights[node.input[0]].dims) == 2 and perm in ([], [[1, 0]])

    transposes = {
        n.output[0]: n
        for n in model.graph.node
        if n.op_type == "Transpose" and n.input[0] in weights and swaps_2d(n)
    }
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in transposes:
            source = transposes[node.input[1]].input[0]
            name = f"{source}_transposed"
            if name not in weights:
                array = numpy_helper.to_array(weights[source]).T.copy()
                weights[name] = numpy_helper.from_array(array, name)
                model.graph.initializer.append(weights[name])
            node.input[1] = name
    read = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    unread = [n for n in model.graph.node if n.output[0] in transposes and n.output[0] not in read]
    for node in unread:
        model.graph.node.remove(node)


def quantize_int4(
    model_in: Path,
    model_out: Path,
    *,
    block_size: int,
    symmetric: bool,
    accuracy_level: int,
) -> dict[str, Any]:
    """MatMulNBits int4 of ``model_in`` (weights beside it or inline) into ``model_out``, with
    external data where the input has it; returns what was quantized and what was kept."""
    import numpy as np
    import onnx
    import onnx.version_converter
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )
    from onnxruntime.quantization.quant_utils import QuantFormat

    from squeeze.methods.export.storage import has_external_data
    from squeeze.methods.quantize.ort_int8 import quiet_ort_quantizer

    external = has_external_data(model_in)
    model = onnx.load(str(model_in))
    _gemms_as_matmuls(model)
    _transposed_weights_as_constants(model)
    # GatherBlockQuantized's int4 types need opset 21; the quantizer only relabels the opset,
    # which leaves opset-17 operators (ReduceMean with an axes attribute, in Llama's RMSNorm)
    # invalid, so convert the graph properly first.
    if any(o.domain in ("", "ai.onnx") and o.version < 21 for o in model.opset_import):
        model = onnx.version_converter.convert_version(model, 21)
    kept = _matmuls_in(model, CLASSIFICATION_HEADS)
    eight = _matmuls_in(model, VOCABULARY_HEADS)

    def rounded(model: Any, bits: int, ops: tuple[str, ...], level: int, **nodes: Any) -> Any:
        algo = DefaultWeightOnlyQuantConfig(
            block_size=block_size,
            is_symmetric=symmetric,
            accuracy_level=level,
            quant_format=QuantFormat.QOperator,
            op_types_to_quantize=ops,
            bits=bits,
        )
        quantizer = MatMulNBitsQuantizer(model, algo_config=algo, **nodes)
        quantizer.process()
        return quantizer.model

    # It logs a line per node at INFO through the root logger's children.
    # Blocks of zeros (unused embedding rows) divide by a zero scale, which it then masks.
    with quiet_ort_quantizer(), np.errstate(divide="ignore", invalid="ignore"):
        result = rounded(
            model, 4, ("MatMul", "Gather"), accuracy_level, nodes_to_exclude=kept + eight
        )
        if eight:
            # Always level 4: ONNX Runtime 1.32's 8-bit MatMulNBits at level 0 (fp32 compute)
            # took 141.8 ms per 8-token step of GPT-2 small against 14.1 ms for the whole
            # model at level 4 (2-core Xeon); 8-bit weights with int8 activations lose little.
            result = rounded(result.model, 8, ("MatMul",), 4, nodes_to_include=eight)
        result.save_model_to_file(str(model_out), use_external_data_format=external)
    ops = Counter(n.op_type for n in result.model.graph.node)
    return {
        "quantized": {_QUANTIZED_OPS[op]: ops[op] for op in _QUANTIZED_OPS if ops[op]},
        "eight_bit": eight,
        "kept_fp32": kept,
    }


def quantize(
    loaded: LoadedModel,
    config: QuantizeConfig,
    ctx: StepContext,
    exported: Path,
    manifest: dict[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """Weight-only int4 of the validated plain fp32 export in ``exported`` into the output: the
    manifest's update and the notes (``squeeze.methods.export.onnx.derived_export``'s
    ``derive``)."""
    from squeeze.artifact.read import MODEL_FILE
    from squeeze.core.errors import Problem, UnsupportedError

    done = quantize_int4(
        exported / MODEL_FILE,
        ctx.out / MODEL_FILE,
        block_size=config.block_size,
        symmetric=config.symmetric,
        accuracy_level=config.accuracy_level,
    )
    if not done["quantized"].get("MatMul"):
        why = (
            f"MatMulNBits found no constant-weight MatMul in the {loaded.family} export, so "
            "nothing would change; use {dtype} int8"
        )
        raise UnsupportedError([Problem(why)])
    counts = ", ".join(f"{n} {op}" for op, n in done["quantized"].items())
    zero_points = "symmetric" if config.symmetric else "with zero points"
    note = (
        f"int4 in blocks of {config.block_size} ({zero_points}, accuracy level "
        f"{config.accuracy_level}): {counts}"
    )
    if done["eight_bit"]:
        note += "; the vocabulary projection in 8 bits"
    if done["kept_fp32"]:
        note += f"; {len(done['kept_fp32'])} classification-head MatMul(s) kept fp32"
    quantization = {
        "backend": "onnxruntime",
        "mode": "weight-only MatMulNBits",
        "block_size": config.block_size,
        "symmetric": config.symmetric,
        "accuracy_level": config.accuracy_level,
        **done,
    }
    return {"dtype": "int4", "quantization": quantization}, [note]
