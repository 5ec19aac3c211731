"""``squeeze bench``: latency, throughput, memory and size of a checkpoint or ONNX export."""

from __future__ import annotations

from typing import Annotated

import typer

from squeeze.cli._options import DeviceOpt, JsonOpt, QuietOpt, TrustOpt
from squeeze.cli._render import fmt_bytes, fmt_count, print_json, print_notes, progress_factory
from squeeze.cli._render import stdout as console
from squeeze.errors import ConfigError


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated integers like 1,8, not '{text}'") from None


def bench(
    models: Annotated[
        list[str],
        typer.Argument(help="Checkpoint folders, hub ids or `squeeze export` folders."),
    ],
    device: DeviceOpt = "cpu",
    backend: Annotated[
        str | None,
        typer.Option(
            help="torch, onnxruntime or both (torch,onnxruntime); default: torch for a "
            "checkpoint, onnxruntime for an export."
        ),
    ] = None,
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1",
    seq: Annotated[int, typer.Option(help="Tokens per sequence.")] = 128,
    threads: Annotated[
        int | None, typer.Option(help="Intra-op threads (default: torch's, = cores).")
    ] = None,
    runs: Annotated[int, typer.Option(help="Timed runs per model and batch size.")] = 30,
    warmup: Annotated[int, typer.Option(help="Untimed runs before each timed block.")] = 5,
    rounds: Annotated[
        int, typer.Option(help="Rotating rounds the runs are spread over (fairness).")
    ] = 3,
    trust_remote_code: TrustOpt = False,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Measure latency (p50, p90, mean, spread), throughput, peak memory, parameters and size.

    Several models (or --backend torch,onnxruntime) are measured together in rotating blocks
    with identical inputs and threads, so their figures compare like with like.
    """
    from rich.table import Table

    from squeeze.bench.latency import BenchSettings
    from squeeze.bench.machine import describe_machine
    from squeeze.bench.run import bench_models
    from squeeze.device import resolve_device

    settings = BenchSettings(
        batch_sizes=_int_list(batch, "--batch"),
        seq_len=seq,
        threads=threads,
        runs=runs,
        warmup=warmup,
        rounds=rounds,
        device=resolve_device(device),
    )
    backends = tuple(backend.split(",")) if backend else ()
    results, notes = bench_models(
        models,
        settings,
        backends=backends,
        trust_remote_code=trust_remote_code,
        progress=progress_factory(quiet),
    )
    if json_output:
        print_json({"results": [r.to_dict() for r in results], "notes": notes})
        return
    machine = results[0].machine
    table = Table(title=f"squeeze bench · {describe_machine(machine)}", title_justify="left")
    for column in ("model", "backend", "batch", "seq", "p50 ms", "p90 ms", "mean ± sd ms",
                   "samples/s", "params", "size", "peak mem"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("model", "backend") else "right")
    for result in results:
        size = result.extra["size"]
        for lat in result.latencies:
            table.add_row(
                result.name, result.backend, str(lat.batch), str(lat.seq_len),
                f"{lat.p50_ms:.2f}", f"{lat.p90_ms:.2f}",
                f"{lat.mean_ms:.2f} ± {lat.stdev_ms:.2f}", f"{lat.throughput_per_s:.1f}",
                fmt_count(size["params_total"]), fmt_bytes(size["bytes_on_disk"]),
                fmt_bytes(result.peak_memory_bytes),
            )  # fmt: skip
    console.print(table)
    runs_done = len(results[0].latencies[0].samples_ms)
    console.print(
        f"{runs_done} timed runs per row after {settings.warmup} warm-up runs per block, "
        f"{settings.rounds} rotating rounds, {results[0].latencies[0].threads} threads, "
        f"device {settings.device}. peak mem: process RSS high-water mark on CPU (includes "
        "loading), allocated memory on CUDA."
    )
    print_notes(notes)
