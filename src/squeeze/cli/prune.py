"""``squeeze prune``: magnitude or structured pruning with an accuracy gate for CI.

Its method options are the fields of ``MagnitudePruneConfig`` and ``StructuredPruneConfig``
(generated, so the command and a recipe step take the same parameters with the same defaults).
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer

from squeeze.cli._options import (
    ModelArg,
    OutOpt,
    StepFlags,
    choice_parser,
    with_data_options,
    with_fields,
    with_options,
)
from squeeze.cli._render import emit, metric_rows, new_table, report_and_gate, say
from squeeze.core.fmt import fmt_bytes, fmt_count
from squeeze.data.spec import DataSpec
from squeeze.methods.prune.magnitude import MagnitudePruneConfig
from squeeze.methods.prune.structured import StructuredPruneConfig

METHODS = {"magnitude": MagnitudePruneConfig, "structured": StructuredPruneConfig}
Method = Enum("Method", {name: name for name in METHODS}, type=str)  # --method's choices


@with_data_options(required=False)
@with_fields(*METHODS.values())
@with_options(StepFlags)
def prune(
    model: ModelArg,
    data: DataSpec | None,
    output: OutOpt,
    method: Annotated[
        Method,
        typer.Option(
            help="magnitude (zeros) or structured (removal).",
            parser=choice_parser(Method, "method"),
        ),
    ],
    given: dict[str, Any],
    flags: StepFlags,
) -> None:
    """Prune MODEL and save it to -o with a summary (prune.json).

    magnitude zeros the smallest weights of the transformer blocks (smaller when zipped, not
    faster); structured removes heads, FFN neurons and layers (fewer parameters, faster). With
    --data, accuracy is measured before and after on held-out data and --finetune-steps recovers
    it on the training part. An embedder is scored by its task metric and its fidelity to the
    original, and recovers by distilling the original's sentence embeddings of the training
    text (--embedding-loss; no labels needed).
    """
    from squeeze.core.config import build, fields_of
    from squeeze.core.errors import ConfigError, Problem
    from squeeze.engine.runner import run_step

    cls = METHODS[method.value]
    own = {f.name for f in fields_of(cls)}
    stray = [name for name in given if name not in own]
    if stray:
        # Fields, rendered as flags by the CLI's one namer (cli/main.py), like every other error.
        fields = ", ".join(f"{{{name}}}" for name in stray)
        other = next(m for m in METHODS if m != method.value)
        raise ConfigError([Problem(f"{fields} go with {{method}} {other}")])
    result = run_step(model, build(cls, given), output, flags.step_options(data))
    report_and_gate(result, flags.json_output, _render, output)


def _render(result: Any) -> None:
    table = new_table(f"squeeze prune ({result.method})", ("", "before", "after", "change"))
    before, after = result.before, result.after or result.before

    def row(name: str, key: str, fmt: Any) -> None:
        b, a = before[key], after[key]
        table.add_row(
            name, fmt(b), fmt(a) if result.after else "-", f"{a / b:.2f}x" if result.after else ""
        )

    row("parameters", "params_total", fmt_count)
    row("non-zero", "params_nonzero", fmt_count)
    row("weights on disk", "bytes_on_disk", fmt_bytes)
    row("zipped (deflate)", "bytes_compressed", fmt_bytes)
    for metric_row in metric_rows(result):
        table.add_row(*metric_row)
    emit(table)
    sparsity = result.details.get("sparsity")
    extra = f"sparsity {sparsity:.1%} of block weights, " if sparsity is not None else ""
    if result.details.get("loads_with_plain_transformers", True):
        say(f"{extra}{result.seconds:.1f} s; output loads with plain transformers and squeeze")
        return
    # Said plainly: transformers' size-mismatch report and RuntimeError do not say why.
    for line in (
        f"{extra}{result.seconds:.1f} s; plain transformers cannot load the output: "
        "AutoModel*.from_pretrained fails, as its per-layer shapes are only in squeeze.json",
        f"use it with squeeze.load({str(result.out)!r}) in Python, or deploy it with "
        f"`squeeze export {result.out} -o OUT` (ONNX; --format openvino for OpenVINO IR)",
    ):
        say(line, indent=4)  # wrapped at spaces: paths and the command stay whole to copy
