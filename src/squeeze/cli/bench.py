"""``squeeze bench``: latency, throughput, memory and size of a checkpoint or ONNX export."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from squeeze.cli._options import DeviceOpt, JsonOpt, QuietOpt, TrustOpt
from squeeze.cli._render import emit, new_table, print_json, print_notes, progress_factory, say
from squeeze.core.errors import ConfigError
from squeeze.core.fmt import fmt_bytes, fmt_count

if TYPE_CHECKING:
    from squeeze.measure.latency import BenchResult, BenchSettings


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated integers like 1,8, not '{text}'") from None


def bench(
    models: Annotated[
        list[str] | None,
        typer.Argument(help="Checkpoint folders, hub ids or `squeeze export` folders."),
    ] = None,
    device: DeviceOpt = "cpu",
    runtime: Annotated[
        str | None,
        typer.Option(
            help="torch, onnxruntime, tensorrt (ONNX on ORT's TensorRT provider, CUDA), openvino, "
            "or several (torch,onnxruntime); default: torch for a checkpoint, the export's own "
            "runtime for an export."
        ),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(help="PyTorch targets: fp32, tf32 (CUDA matmuls), fp16 or bf16."),
    ] = "fp32",
    compile_model: Annotated[
        bool,
        typer.Option("--compile", help="PyTorch targets: run through torch.compile (inductor)."),
    ] = False,
    list_backends: Annotated[
        bool,
        typer.Option(
            "--backends",
            help="List what this machine can run (runtimes, GPU providers, quantizers) and why "
            "not the rest, then exit.",
        ),
    ] = False,
    fingerprint_file: Annotated[
        Path | None,
        typer.Option(
            "--fingerprint",
            help="Write this machine's fingerprint (CPU, instruction-set flags, cores) to FILE "
            "and exit: on the deployment machine, for `squeeze quantize --target FILE` on the "
            "machine that builds the model.",
            metavar="FILE",
        ),
    ] = None,
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1",
    seq: Annotated[
        int | None,
        typer.Option(
            help="Tokens per sequence (default: 128, or the fewest positions of the models "
            "where fewer; one beyond a model's positions is refused).",
        ),
    ] = None,
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

    Several models (or --runtime torch,onnxruntime) are measured together in rotating blocks
    with identical inputs and threads, so their figures compare like with like. On CUDA every
    run is synchronised and the peak is torch's allocated GPU memory.
    """
    from squeeze.artifact import Artifact
    from squeeze.core.device import resolve_device
    from squeeze.data.encoding import default_length
    from squeeze.measure.bench import bench_models, check_seq
    from squeeze.measure.latency import BenchSettings

    if list_backends:
        _render_backends(json_output)
        return
    if fingerprint_file is not None:
        _write_fingerprint(fingerprint_file, json_output)
        return
    if not models:
        raise ConfigError("give one or more models to bench, or --backends to list runtimes")
    if seq is None:
        seq = min(default_length(Artifact.of(m).positions(trust_remote_code=trust_remote_code))
                  for m in models)  # fmt: skip
    settings = BenchSettings(
        batch_sizes=_int_list(batch, "--batch"),
        seq_len=seq,
        threads=threads,
        runs=runs,
        warmup=warmup,
        rounds=rounds,
        device=resolve_device(device),
        precision=precision,
        compile=compile_model,
    )
    runtimes = tuple(runtime.split(",")) if runtime else ()
    check_seq(models, seq, trust_remote_code=trust_remote_code)  # before any export is built
    with tempfile.TemporaryDirectory(prefix="squeeze-bench-") as tmp:
        exports, notes = _temporary_exports(models, runtimes, Path(tmp), trust_remote_code)
        results, bench_notes = bench_models(
            models,
            settings,
            runtimes=runtimes,
            exports=exports,
            trust_remote_code=trust_remote_code,
            progress=progress_factory(quiet),
        )
    notes += bench_notes
    if json_output:
        print_json({"results": [r.to_dict() for r in results], "notes": notes})
        return
    _render_tables(results, settings)
    print_notes(notes)


def _temporary_exports(
    models: list[str], runtimes: tuple[str, ...], root: Path, trust_remote_code: bool
) -> tuple[dict[str, dict[str, Path]], list[str]]:
    """Plain validated exports of each checkpoint for the export runtimes asked for (one per
    format: ONNX Runtime and TensorRT share the ONNX one), built before timing so that the
    bench only measures. Export folders and unknown runtimes are left to the bench to judge."""
    from squeeze.artifact import Artifact
    from squeeze.measure.bench import RUNTIMES
    from squeeze.methods.export.method import ExportConfig, export_onnx

    formats = {"onnxruntime": "onnx", "tensorrt": "onnx", "openvino": "openvino"}
    wanted = [r for r in runtimes if r in formats]
    if set(runtimes) - set(RUNTIMES) or not wanted:
        return {}, []
    exports: dict[str, dict[str, Path]] = {}
    notes = []
    for i, model in enumerate(dict.fromkeys(models)):
        if Artifact.of(model).export is not None:
            continue
        made = {
            fmt: export_onnx(model, root / str(i) / fmt, ExportConfig(format=fmt),
                             trust_remote_code=trust_remote_code).out
            for fmt in dict.fromkeys(formats[r] for r in wanted)
        }  # fmt: skip
        exports[model] = {r: made[formats[r]] for r in wanted}
        notes.append(f"exported {model} to {' and '.join(wanted)} (unoptimized) for this run")
    return exports, notes


def _write_fingerprint(path: Path, json_output: bool) -> None:
    from squeeze.measure.machine import describe_machine, write_fingerprint

    written = write_fingerprint(path)
    if json_output:
        print_json({"fingerprint": str(path), "machine": written})
        return
    say(f"wrote {path}: {describe_machine(written)}")


def _render_backends(json_output: bool) -> None:
    from squeeze.measure.backends import available_backends
    from squeeze.measure.machine import describe_machine, fingerprint

    found = available_backends()
    if json_output:
        print_json({"backends": [a.to_dict() for a in found], "machine": fingerprint()})
        return
    width = max(len(a.name) for a in found)
    for a in found:
        # Plain text wrapped under its column: a reason can name `pip install 'squeeze[gpu]'`.
        line = f"{'yes' if a.available else 'no '} {a.name.ljust(width)}  {a.why}"
        say(line, style=None if a.available else "red", indent=width + 6)
    say(f"machine: {describe_machine(fingerprint())}")


def _short(name: str) -> str:
    """A path's last part: what tells variants apart in a table."""
    return name.rstrip("/").rsplit("/", 1)[-1] or name


def _render_tables(results: list[BenchResult], settings: BenchSettings) -> None:
    from squeeze.measure.machine import describe_machine

    named = ("model", "runtime")
    columns = ("batch", "p50 ms", "p90 ms", "sd ms", "samples/s", "vs 1st")
    latency = new_table("latency", (*named, *columns), left=named)
    first = {lat.batch: lat.p50_ms for lat in results[0].latencies}
    for result in results:
        for lat in result.latencies:
            latency.add_row(
                _short(result.name), result.runtime, str(lat.batch), f"{lat.p50_ms:.2f}",
                f"{lat.p90_ms:.2f}", f"{lat.stdev_ms:.2f}", f"{lat.throughput_per_s:.1f}",
                f"{first[lat.batch] / lat.p50_ms:.2f}x",
            )  # fmt: skip
    sizes = new_table("size", (*named, "params", "non-zero", "on disk"), left=named)
    for result in results:
        size = result.extra["size"]
        sizes.add_row(
            _short(result.name), result.runtime, fmt_count(size["params_total"]),
            fmt_count(size["params_nonzero"]), fmt_bytes(size["bytes_on_disk"]),
        )  # fmt: skip
    emit(latency)
    emit(sizes)
    lat = results[0].latencies[0]
    peak = max((r.peak_memory_bytes or 0) for r in results)
    memory = "allocated CUDA memory" if settings.device.startswith("cuda") else "process RSS"
    say(
        f"seq {settings.seq_len}, {len(lat.samples_ms)} timed runs per row ({settings.warmup} "
        f"warm-up runs per block, {settings.rounds} rotating rounds), {lat.threads} threads, "
        f"{settings.device}; peak {memory} {fmt_bytes(peak)}"
    )
    say(f"machine: {describe_machine(results[0].machine)}")
