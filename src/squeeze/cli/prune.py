"""``squeeze prune``: magnitude or structured pruning with an accuracy gate for CI."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer

from squeeze.cli._options import (
    BatchSizeOpt,
    DeviceOpt,
    EvalDataOpt,
    JsonOpt,
    MaxDropOpt,
    MaxLengthOpt,
    ModelArg,
    OutOpt,
    OverwriteOpt,
    QuietOpt,
    TrustOpt,
    optional_data_spec,
    with_data_options,
)
from squeeze.cli._render import (
    fmt_bytes,
    fmt_count,
    print_notes,
    progress_factory,
    report_and_gate,
)
from squeeze.cli._render import stdout as console
from squeeze.data import DataSpec
from squeeze.errors import ConfigError


class Method(str, Enum):
    magnitude = "magnitude"
    structured = "structured"


@with_data_options(required=False)
def prune(
    model: ModelArg,
    data: DataSpec | None,
    output: OutOpt,
    method: Annotated[Method, typer.Option(help="magnitude (zeros) or structured (removal).")],
    sparsity: Annotated[
        float | None, typer.Option(help="magnitude: fraction of block weights to zero.")
    ] = None,
    scope: Annotated[
        str, typer.Option(help="magnitude: global (one threshold) or layer (per matrix).")
    ] = "global",
    include: Annotated[
        list[str] | None, typer.Option(help="magnitude: also prune params matching (fnmatch).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="magnitude: never prune params matching (fnmatch).")
    ] = None,
    schedule: Annotated[
        str, typer.Option(help="magnitude: oneshot, or cubic over --finetune-steps (Zhu & Gupta).")
    ] = "oneshot",
    heads: Annotated[float, typer.Option(help="structured: fraction of heads to remove.")] = 0.0,
    ffn: Annotated[
        float, typer.Option(help="structured: fraction of FFN neurons to remove.")
    ] = 0.0,
    layers: Annotated[int, typer.Option(help="structured: whole layers to drop.")] = 0,
    importance: Annotated[
        str | None,
        typer.Option(help="structured: magnitude, or taylor (data-driven; default with --data)."),
    ] = None,
    eval_data: EvalDataOpt = None,
    finetune_steps: Annotated[
        int, typer.Option(min=0, help="Recovery fine-tuning steps on --data after pruning.")
    ] = 0,
    lr: Annotated[float, typer.Option(help="Recovery learning rate.")] = 5e-5,
    batch_size: BatchSizeOpt = 32,
    max_length: MaxLengthOpt = 128,
    max_accuracy_drop: MaxDropOpt = None,
    device: DeviceOpt = "cpu",
    overwrite: OverwriteOpt = False,
    trust_remote_code: TrustOpt = False,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Prune MODEL and save it to -o with a summary (prune.json).

    magnitude zeros the smallest weights of the transformer blocks (smaller when zipped, not
    faster); structured removes heads, FFN neurons and layers (fewer parameters, faster). With
    --data, accuracy is measured before and after on held-out data and --finetune-steps recovers
    it on the training part.
    """
    from squeeze.device import resolve_device
    from squeeze.prune.magnitude import MagnitudePruneConfig
    from squeeze.prune.run import prune_checkpoint
    from squeeze.prune.structured import StructuredPruneConfig
    from squeeze.train import TrainConfig

    config: Any
    structural = {"--heads": heads, "--ffn": ffn, "--layers": layers, "--importance": importance}
    if method is Method.magnitude:
        given = [flag for flag, value in structural.items() if value]
        if given:
            raise ConfigError(f"{', '.join(given)} go with --method structured")
        if sparsity is None:
            raise ConfigError("--method magnitude needs --sparsity, e.g. --sparsity 0.5")
        config = MagnitudePruneConfig(
            sparsity=sparsity,
            scope=scope,
            include=tuple(include or ()),
            exclude=tuple(exclude or ()),
        )
    else:
        if sparsity is not None or include or exclude:
            raise ConfigError("--sparsity, --include and --exclude go with --method magnitude")
        chosen = importance or ("taylor" if data is not None else "magnitude")
        config = StructuredPruneConfig(heads=heads, ffn=ffn, layers=layers, importance=chosen)
    result = prune_checkpoint(
        model,
        output,
        config,
        data=data,
        eval_data=optional_data_spec(data, eval_data),
        finetune_steps=finetune_steps,
        train_config=TrainConfig(lr=lr, batch_size=batch_size, warmup_ratio=0.05),
        schedule=schedule,
        max_length=max_length,
        max_accuracy_drop=max_accuracy_drop,
        overwrite=overwrite,
        trust_remote_code=trust_remote_code,
        device=resolve_device(device),
        progress=progress_factory(quiet),
    )
    report_and_gate(result, json_output, _render, output)


def _render(result: Any) -> None:
    from rich.table import Table

    table = Table(title=f"squeeze prune ({result.method})", title_justify="left")
    for column in ("", "before", "after", "change"):
        table.add_column(column, justify="left" if not column else "right")
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
    if result.metric_before is not None:
        mb, ma = result.metric_before.primary, result.metric_after.primary
        table.add_row(
            mb.name, f"{mb.value:.4f}", f"{ma.value:.4f}", f"{0.0 - result.drop_points:+.2f} pts"
        )
    console.print(table)
    extra = (
        f"sparsity {result.sparsity:.1%} of block weights, " if result.sparsity is not None else ""
    )
    loads = (
        "plain transformers and squeeze" if result.plain_transformers else "squeeze (squeeze.json)"
    )
    console.print(f"{extra}{result.seconds:.1f} s; output loads with {loads}")
    print_notes(result.notes)
