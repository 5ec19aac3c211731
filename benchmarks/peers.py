"""squeeze's default int8 against its peers' int8 on this CPU: optimum-cli and optimum-intel + NNCF.

Issue 29: is `squeeze quantize MODEL -o OUT` with no flags as fast as what its peers build, and
as the fastest int8 path squeeze itself can build here? Per model (the demo model, a MiniLM
fine-tuned on the movie reviews by `make demo`, and a BERT-base shape with random weights; both
at seq 128, squeeze's default --max-length):

- squeeze's default, run as a user types it (no flags, $SQUEEZE_BACKEND unset, $SQUEEZE_CACHE in
  the work folder, emptied first so the first run measures its candidates), twice: the wall time
  of the first run (builds and times every candidate) and of the second (reuses the remembered
  decision), and the candidate it chose (quantize.json's auto.chosen);
- squeeze's explicit int8 paths: `--backend onnxruntime` (dynamic), `--backend onnxruntime
  --static`, `--backend openvino` (weight-only), `--backend openvino --static`;
- optimum-cli's ONNX Runtime int8 (optimum-onnx: `optimum-cli export onnx`, then `optimum-cli
  onnxruntime quantize --avx512_vnni|--avx512|--avx2`, whichever this CPU has);
- optimum-intel + NNCF static int8 (`OVModelForSequenceClassification.from_pretrained(export=
  True)`, then `nncf.quantize` as a transformer on squeeze's calibration text, tokenized at the
  same max length), and its unquantised IR.

Each peer runs in its own virtual environment under .cache/peers/, built here on first use (torch
pinned to the CPU wheel first) and reused after; one that cannot be built, or a command of it
that fails, is skipped with its reason in the table. Every artifact is then timed here, in this
one process, with squeeze's rotating-block measurement: batch 1, the same threads and the same
input ids (attention mask ones, token type ids zeros). ONNX files run on ONNX Runtime, IR files
on OpenVINO with squeeze's settings (latency hint, f32 inference precision, as squeeze runs its
own IR); every IR is also timed at OpenVINO's own default precision (bf16 on CPUs with AMX or
AVX-512 BF16), named in its row. Each row's top-1 agreement with fp32 PyTorch is taken on the
held-out half of squeeze's built-in calibration text, what squeeze's default judges its
candidates by (a floor of 95%). Figures compare within one run only: the CPU and the share of
it other processes took meanwhile are printed with them; `--reuse` times what a run built again
(on a quieter machine, say) without building anything.

    python benchmarks/peers.py [--only demo|bert-base] [--model PATH] [--runs 100 --rounds 5]
                               [--threads 2] [--reuse] [--json] [--save FILE]
    python benchmarks/peers.py --quick     # tiny shape, few runs, peers only where built
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _cpuload import cpu_seconds, others_share  # beside this script

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / ".cache" / "demo" / "minilm-movie-reviews"
PEERS = ROOT / ".cache" / "peers"
CALIBRATION = ROOT / "src" / "squeeze" / "data" / "calibration.txt"
TORCH = "2.13.0"  # the CPU wheel; installed first, and pinned, in every peer venv
SEQ = 128  # squeeze quantize's default --max-length: what its default times and chooses at
BUSY = 0.2  # others' CPU share above which the table warns that its latencies are disturbed
VERSIONS = ("optimum", "optimum-onnx", "optimum-intel", "transformers", "nncf", "openvino",
            "onnxruntime", "onnx", "torch")  # fmt: skip
SQUEEZE_PATHS = {
    "onnxruntime dynamic": ["--backend", "onnxruntime"],
    "onnxruntime static": ["--backend", "onnxruntime", "--static"],
    "openvino weight-only": ["--backend", "openvino"],
    "openvino static": ["--backend", "openvino", "--static"],
    "openvino static+bf16": ["--backend", "openvino", "--static", "--compute", "bf16"],
    "openvino bf16": ["--backend", "openvino", "--dtype", "bf16"],
}


@dataclass(frozen=True)
class Peer:
    """A peer's venv: what pip installs (after torch), and packages removed after."""

    name: str
    packages: tuple[str, ...]
    remove: tuple[str, ...] = ()
    check: str = ""  # python that must import, or the venv is not usable


PEER_ONNX = Peer(
    "optimum-onnx",
    ("optimum-onnx==0.1.0", "transformers<4.58", "onnxruntime"),
    check="import optimum.onnxruntime, onnxruntime",
)
# torchvision comes with optimum-intel; PyPI's wheel is built against CUDA torch, so beside the
# CPU torch its operators fail to register and transformers then cannot import AutoProcessor
# (optimum.intel's imports fail). Text models do not need it: it is removed.
PEER_INTEL = Peer(
    "optimum-intel",
    ("optimum-intel[openvino]==2.2.0", "nncf", "transformers<5.6"),
    remove=("torchvision",),
    check="from optimum.intel import OVModelForSequenceClassification; import nncf",
)

# optimum-intel's export, then NNCF static int8 on the texts given, run by the peer's venv.
PEER_INTEL_SCRIPT = """
import json, sys, time
from pathlib import Path

import nncf
import openvino as ov
from optimum.intel import OVModelForSequenceClassification
from transformers import AutoTokenizer

model, out, texts, max_length = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
texts = json.loads(Path(texts).read_text())
start = time.perf_counter()
exported = OVModelForSequenceClassification.from_pretrained(model, export=True, compile=False)
exported.save_pretrained(out / "fp")
export_s = time.perf_counter() - start
tokenizer = AutoTokenizer.from_pretrained(model)
names = [port.any_name for port in exported.model.inputs]
samples = []
for text in texts:
    encoded = tokenizer(text, truncation=True, max_length=max_length, return_tensors="np")
    samples.append({name: encoded[name] for name in names})
quantized = nncf.quantize(exported.model, nncf.Dataset(samples),
                          model_type=nncf.ModelType.TRANSFORMER, subset_size=len(samples))
(out / "int8").mkdir(parents=True, exist_ok=True)
# weights as they are, as optimum-intel's save_pretrained (and squeeze) save them
ov.save_model(quantized, str(out / "int8" / "openvino_model.xml"), compress_to_fp16=False)
print(json.dumps({"export_s": export_s, "total_s": time.perf_counter() - start,
                  "inputs": names, "calibration_texts": len(samples)}))
"""


@dataclass
class Row:
    """One timed variant: the file it runs, on which runtime; or why it was skipped."""

    name: str
    group: str  # reference, squeeze or peer
    path: str | None = None
    runtime: str = ""  # torch, onnxruntime, openvino f32, openvino default
    skipped: str | None = None
    note: str = ""
    p50_ms: float | None = None
    p90_ms: float | None = None
    bytes_on_disk: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _squeeze_command() -> list[str]:
    """The `squeeze` script beside this interpreter (the venv's), else `python -m squeeze`."""
    script = Path(sys.executable).with_name("squeeze")
    return [str(script)] if script.exists() else [sys.executable, "-m", "squeeze"]


def _env(**extra: str) -> dict[str, str]:
    """The environment for every command: offline, no pinned squeeze backend."""
    env = {k: v for k, v in os.environ.items() if k != "SQUEEZE_BACKEND"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    return {**env, **extra}


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "no output")[:300]


def _run(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> tuple[bool, float, str]:
    """Run a command, its output kept in ``log``: (succeeded, wall seconds, stdout or reason)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env or _env(), check=False)
    seconds = time.perf_counter() - start
    log.write_text(f"$ {' '.join(command)}\n# exit {done.returncode}, {seconds:.1f} s\n"
                   f"## stdout\n{done.stdout}\n## stderr\n{done.stderr}")  # fmt: skip
    if done.returncode != 0:
        reason = f"exit {done.returncode}: {_last_line(done.stderr or done.stdout)} (log: {log})"
        return False, seconds, reason
    return True, seconds, done.stdout


# ---- peer venvs -------------------------------------------------------------------------------


def _ensure_venv(peer: Peer, root: Path) -> tuple[Path | None, str]:
    """The peer venv's python, built once (torch's CPU wheel first, then pinned) and reused
    where its ready-stamp is; (None, why) where it cannot be built."""
    venv = root / peer.name
    python = venv / "bin" / "python"
    stamp = venv / ".peers-ready"
    if stamp.is_file() and python.exists():
        return python, "reused"
    shutil.rmtree(venv, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    pin = root / "torch-pin.txt"
    pin.write_text(f"torch=={TORCH}\n")
    log = root / f"{peer.name}.build.log"  # one log a step: .build.0.log, .build.1.log, ...
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [*pip, f"torch=={TORCH}"],
        [*pip, "-c", str(pin), *peer.packages],
    ]
    if peer.remove:
        steps.append([str(python), "-m", "pip", "uninstall", "-y", "-q", *peer.remove])
    if peer.check:
        steps.append([str(python), "-c", peer.check])
    _log(
        f"building the {peer.name} venv at {venv} (a few minutes; logs {log.with_suffix('.*.log')})"
    )
    for i, step in enumerate(steps):
        ok, _, out = _run(step, log.with_suffix(f".{i}.log"))
        if not ok:
            return None, f"venv {peer.name} could not be built: {out}"
    stamp.write_text(_freeze(python))
    return python, "built"


def _freeze(python: Path) -> str:
    done = subprocess.run([str(python), "-m", "pip", "freeze", "--disable-pip-version-check"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return done.stdout


def _versions(python: Path) -> dict[str, str]:
    """The peer venv's versions of the packages that decide its speed."""
    versions = {}
    for line in _freeze(python).splitlines():
        name, sep, version = line.partition("==")
        if sep and name.lower() in VERSIONS:
            versions[name.lower()] = version
    return versions


def _quantize_flag() -> str:
    """optimum-cli's quantization preset for this CPU's best instruction set."""
    from squeeze.measure.machine import cpu_flags

    flags = cpu_flags()
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def _peer_onnx(python: Path, model: Path, work: Path) -> list[Row]:
    """optimum-cli export onnx, then optimum-cli onnxruntime quantize for this CPU."""
    cli = str(python.with_name("optimum-cli"))
    flag = _quantize_flag()
    name = f"optimum-cli onnxruntime int8 (--{flag})"
    shutil.rmtree(work, ignore_errors=True)
    ok, export_s, out = _run(
        [cli, "export", "onnx", "--model", str(model), "--task", "text-classification",
         str(work / "onnx")],
        work / "export.log",
    )  # fmt: skip
    if not ok:
        return [Row(name, "peer", skipped=f"optimum-cli export onnx failed, {out}")]
    ok, quantize_s, out = _run(
        [cli, "onnxruntime", "quantize", "--onnx_model", str(work / "onnx"), f"--{flag}", "-o",
         str(work / "int8")],
        work / "quantize.log",
    )  # fmt: skip
    files = sorted((work / "int8").glob("*.onnx")) if ok else []
    if not files:
        return [Row(name, "peer", skipped=f"optimum-cli onnxruntime quantize failed, {out}")]
    note = f"export {export_s:.0f} s + quantize {quantize_s:.0f} s"
    return [Row(name, "peer", str(files[0]), "onnxruntime", note=note)]


def _calibration_texts(n: int) -> list[str]:
    """squeeze's built-in calibration text (comments skipped), ``n`` lines spread over it."""
    lines = [line for line in CALIBRATION.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("# ")]  # fmt: skip
    if n < len(lines):
        lines = [lines[i * len(lines) // n] for i in range(n)]
    return lines


def _peer_intel(python: Path, model: Path, work: Path, seq: int, texts: int) -> list[Row]:
    """optimum-intel's IR export and NNCF static int8 on squeeze's calibration text."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "texts.json").write_text(json.dumps(_calibration_texts(texts)))
    (work / "quantize.py").write_text(PEER_INTEL_SCRIPT)
    ok, _, out = _run(
        [str(python), str(work / "quantize.py"), str(model), str(work), str(work / "texts.json"),
         str(seq)],
        work / "quantize.log",
    )  # fmt: skip
    names = ("optimum-intel IR, unquantised", "optimum-intel + NNCF static int8")
    if not ok:
        return [Row(n, "peer", skipped=f"optimum-intel export + nncf.quantize failed, {out}")
                for n in names]  # fmt: skip
    report = json.loads(out.strip().splitlines()[-1])
    note = (f"export {report['export_s']:.0f} s, +NNCF on {report['calibration_texts']} texts "
            f"{report['total_s'] - report['export_s']:.0f} s")  # fmt: skip
    rows = []
    for name, folder in zip(names, ("fp", "int8"), strict=True):
        xml = str(work / folder / "openvino_model.xml")
        for runtime in ("openvino f32", "openvino default"):
            rows.append(Row(name, "peer", xml, runtime, note=note if folder == "int8" else ""))
    return rows


# ---- squeeze ----------------------------------------------------------------------------------


def _artifact_file(out: Path) -> Path:
    """The graph a squeeze export folder runs (its manifest's file)."""
    manifest = json.loads((out / "manifest.json").read_text())
    return out / manifest["file"]


def _squeeze_quantize(
    model: Path, out: Path, flags: list[str], cache: Path, seq: int
) -> tuple[dict[str, Any] | None, float, str]:
    """``squeeze quantize MODEL -o OUT [flags]`` as a user runs it: (quantize.json, wall s,
    reason where it failed)."""
    shutil.rmtree(out, ignore_errors=True)
    length = ["--max-length", str(seq)] if seq != SEQ else []  # the default otherwise: no flag
    command = [*_squeeze_command(), "quantize", str(model), "-o", str(out), *length, *flags]
    _log("squeeze " + " ".join(command[len(_squeeze_command()) :]))
    ok, seconds, out_text = _run(command, out.with_name(out.name + ".log"),
                                 _env(SQUEEZE_CACHE=str(cache)))  # fmt: skip
    if not ok:
        return None, seconds, f"squeeze quantize failed, {out_text}"
    return json.loads((out / "quantize.json").read_text()), seconds, ""


def _squeeze_rows(model: Path, work: Path, seq: int, cache: Path) -> tuple[list[Row], dict]:
    """squeeze's default twice (measured, then remembered), then each explicit int8 path."""
    runs: dict[str, Any] = {}
    rows: list[Row] = []
    for attempt in ("first", "second"):
        summary, seconds, reason = _squeeze_quantize(model, work / f"default-{attempt}", [],
                                                     cache, seq)  # fmt: skip
        auto = (summary or {}).get("auto") or {}
        runs[attempt] = {
            "wall_s": round(seconds, 1),
            "failed": reason or None,
            "chosen": auto.get("chosen") or (summary or {}).get("backend"),
            "remembered": auto.get("remembered"),
            "squeeze_seconds": (summary or {}).get("seconds"),
            "candidates": {c["label"]: round(c["p50_ms"], 3) for c in auto.get("candidates", [])},
        }
        remembered = f" (remembered {auto['remembered']})" if auto.get("remembered") else ""
        _log(f"default quantize ({attempt}): {seconds:.1f} s, chose {runs[attempt]['chosen']}"
             + remembered)  # fmt: skip
    first = runs["first"]
    out = work / "default-first"
    if first["failed"]:
        rows.append(Row("squeeze default", "squeeze", skipped=first["failed"]))
    else:
        runtime = _squeeze_runtime(_artifact_file(out))
        rows.append(Row(f"squeeze default (chose {first['chosen']})", "squeeze",
                        str(_artifact_file(out)), runtime, extra={"default": True}))  # fmt: skip
    for label, flags in SQUEEZE_PATHS.items():
        name = f"squeeze {label} (`{' '.join(flags)}`)"
        summary, seconds, reason = _squeeze_quantize(model, work / label.replace(" ", "-"),
                                                     flags, cache, seq)  # fmt: skip
        if summary is None:
            rows.append(Row(name, "squeeze", skipped=reason))
            continue
        path = _artifact_file(work / label.replace(" ", "-"))
        note = f"built in {seconds:.0f} s"
        if path.suffix == ".xml":
            rows.append(Row(name, "squeeze", str(path), _squeeze_runtime(path), note=note))
            rows.append(Row(name, "squeeze", str(path), "openvino default", note="as above"))
        else:
            rows.append(Row(name, "squeeze", str(path), "onnxruntime", note=note))
    return rows, runs


# ---- timing -----------------------------------------------------------------------------------


class _OpenVINODefault:
    """An IR compiled with OpenVINO's own defaults (latency hint, threads) and no precision
    pinned: bf16 on CPUs with AMX or AVX-512 BF16. Copies each output like squeeze's session."""

    def __init__(self, path: str, threads: int) -> None:
        import openvino as ov

        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        self._compiled = ov.Core().compile_model(path, "CPU", config)
        self._request = self._compiled.create_infer_request()
        precision = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = (
            precision.to_string() if hasattr(precision, "to_string") else str(precision)
        )
        self.input_names = [port.any_name for port in self._compiled.inputs]

    def run(self, _: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self._request.infer(feed)
        return [np.array(result[self._compiled.output(0)])]


def _squeeze_runtime(path: Path) -> str:
    """How squeeze runs one of its artifacts: an IR in its manifest's inference precision."""
    if path.suffix != ".xml":
        return "onnxruntime"
    manifest = json.loads((path.parent / "manifest.json").read_text())
    return f"openvino {manifest.get('inference_precision', 'f32')}"


def _export_target(row: Row, threads: int) -> tuple[Any, Callable[[dict], np.ndarray]]:
    """A timing target for an ONNX file or an IR, fed only the inputs its graph takes, and its
    logits for a batch (the agreement check)."""
    from squeeze.measure.latency import Target
    from squeeze.model.runtime import OpenVINOSession, ort_session

    assert row.path is not None
    if row.runtime.startswith("openvino default"):
        session: Any = _OpenVINODefault(row.path, threads)
        names = session.input_names
        row.runtime = f"openvino default ({session.precision})"
    elif row.runtime.startswith("openvino"):  # "openvino f32"/"openvino bf16": as squeeze runs it
        session = OpenVINOSession(row.path, threads=threads, precision=row.runtime.split()[-1])
        names = [i.name for i in session.get_inputs()]
    else:
        session = ort_session(row.path, threads=threads)
        names = [i.name for i in session.get_inputs()]

    def prepare(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: inputs[name] for name in names}

    target = Target(f"{row.name} [{row.runtime}]", row.runtime,
                    lambda feed: session.run(None, feed), prepare)  # fmt: skip
    return target, lambda inputs: np.asarray(session.run(None, prepare(inputs))[0], np.float32)


def _size(path: Path) -> int:
    """Bytes of a model's weights and graph: the file and its external data or .bin."""
    if path.is_dir():  # a checkpoint
        return sum(p.stat().st_size for p in path.glob("*.safetensors"))
    extra = (
        [path.with_suffix(".bin")]
        if path.suffix == ".xml"
        else list(path.parent.glob(path.name + ".data"))
        + list(path.parent.glob(path.stem + ".onnx_data"))
    )
    return path.stat().st_size + sum(p.stat().st_size for p in extra if p.is_file())


def _time_rows(
    model: Path, rows: list[Row], args: argparse.Namespace
) -> tuple[dict[str, Any], float | None]:
    """Every row timed in one rotating measurement with identical inputs; the machine and the
    share of the CPU others took meanwhile."""
    from squeeze.artifact import Artifact
    from squeeze.measure.bench import frame_ids, torch_target
    from squeeze.measure.latency import BenchSettings, measure, synthetic_inputs
    from squeeze.model.runtime import torch_forward

    runnable = Artifact.of(str(model)).open(device="cpu")
    loaded = runnable.loaded
    targets, logits = [], []
    for row in rows:
        if row.skipped is not None:
            continue
        if row.runtime == "torch":
            targets.append(torch_target(row.name, loaded, "cpu"))
            logits.append(torch_forward(loaded.model))
            continue
        try:
            target, forward = _export_target(row, args.threads)
        except Exception as e:  # a peer's file this runtime cannot load: skip it, say why
            row.skipped = f"could not be loaded: {_last_line(str(e))}"
            continue
        targets.append(target)
        logits.append(forward)
    timed = [r for r in rows if r.skipped is None]
    vocab = min(loaded.config.vocab_size, len(runnable.tokenizer))
    special = frame_ids(runnable.tokenizer)
    names = ("input_ids", "attention_mask", "token_type_ids")

    def inputs_for(batch: int) -> dict[str, np.ndarray]:
        return synthetic_inputs(names, batch, args.seq, vocab_size=vocab, special_ids=special)

    settings = BenchSettings(batch_sizes=(1,), seq_len=args.seq, threads=args.threads,
                             runs=args.runs, warmup=args.warmup, rounds=args.rounds)  # fmt: skip
    _log(f"timing {len(targets)} variants: {args.runs} runs over {args.rounds} rounds each")
    start = cpu_seconds()
    results = measure(targets, inputs_for, settings, args.threads)
    others = others_share(start, cpu_seconds())
    for row, result in zip(timed, results, strict=True):
        latency = result.latencies[0]
        row.p50_ms, row.p90_ms = latency.p50_ms, latency.p90_ms
    for row in rows:
        if row.path is not None:
            row.bytes_on_disk = _size(Path(row.path))
    if args.agreement_texts:
        _agreement(timed, logits, runnable.tokenizer, args)
    return results[0].machine if results else {}, others


def _agreement(
    rows: list[Row], logits: list[Callable[[dict], np.ndarray]], tokenizer: Any,
    args: argparse.Namespace,
) -> None:  # fmt: skip
    """Each row's top-1 agreement with the first (fp32 PyTorch) and its largest logit
    difference, on squeeze's held-out built-in texts (what squeeze's default checks its
    candidates on), in padded batches of 32 at the timed max length."""
    from squeeze.data.calibration import builtin_held_out
    from squeeze.measure.latency import torch_threads

    texts = [e.text for e in builtin_held_out().examples][: args.agreement_texts]
    _log(f"agreement with fp32 PyTorch on {len(texts)} held-out built-in texts")
    outputs: list[list[np.ndarray]] = [[] for _ in rows]
    with torch_threads(args.threads):
        for first in range(0, len(texts), 32):
            encoded = tokenizer(texts[first : first + 32], padding=True, truncation=True,
                                max_length=args.seq, return_tensors="np")  # fmt: skip
            ids = encoded["input_ids"].astype(np.int64)
            feed = {
                "input_ids": ids,
                "attention_mask": encoded["attention_mask"].astype(np.int64),
                "token_type_ids": np.asarray(
                    encoded.get("token_type_ids", np.zeros_like(ids)), np.int64
                ),
            }
            for out, forward in zip(outputs, logits, strict=True):
                out.append(forward(feed))
    reference = np.concatenate(outputs[0])
    for row, out in zip(rows, outputs, strict=True):
        values = np.concatenate(out)
        row.extra["agreement"] = {
            "top1": float((values.argmax(-1) == reference.argmax(-1)).mean()),
            "max_abs_diff": float(np.abs(values - reference).max()),
            "texts": len(texts),
        }


# ---- one model, the table ---------------------------------------------------------------------


def _bench_model(label: str, model: Path, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work) / label.replace(" ", "-")
    _log(f"== {label}: {model}")
    built_file = work / "built.json"  # what was built, to time again with --reuse
    if args.reuse and built_file.is_file():
        built = json.loads(built_file.read_text())
        _log(f"reusing what {built_file} lists (built {built['when']})")
    else:
        built = _build(model, work, label, args)
        built_file.write_text(json.dumps(built, indent=2))
    rows = [Row(**row) for row in built["rows"]]
    machine, others = _time_rows(model, rows, args)
    return {
        "model": label,
        "path": str(model),
        "seq": args.seq,
        "rows": [asdict(r) for r in rows],
        "default_quantize": built["default_quantize"],
        "peer_versions": built["peer_versions"],
        "built": built["when"],
        "machine": machine,
        "others_cpu_share": others,
        "verdict": _verdict(rows),
    }


def _build(model: Path, work: Path, label: str, args: argparse.Namespace) -> dict[str, Any]:
    """squeeze's artifacts (its default twice) and each peer's, as rows still to time."""
    rows = [Row("fp32 PyTorch (input)", "reference", str(model), "torch")]
    cache = Path(args.work) / "squeeze-cache"  # $SQUEEZE_CACHE: the decisions a user's keeps
    squeeze_rows, default_runs = _squeeze_rows(model, work / "squeeze", args.seq, cache)
    rows += squeeze_rows
    versions: dict[str, dict[str, str]] = {}
    builds: dict[Peer, Callable[[Path], list[Row]]] = {
        PEER_ONNX: lambda python: _peer_onnx(python, model, work / PEER_ONNX.name),
        PEER_INTEL: lambda python: _peer_intel(
            python, model, work / PEER_INTEL.name, args.seq, args.calibration_texts
        ),
    }
    for peer, build in builds.items():
        python, why = _peer_python(peer, args)
        if python is None:
            rows.append(Row(peer.name, "peer", skipped=why))
            continue
        versions[peer.name] = _versions(python)
        _log(f"{peer.name}: building its artifacts of {label}")
        try:
            rows += build(python)
        except Exception as e:  # a peer's output not as expected: skip it, say why
            rows.append(Row(peer.name, "peer", skipped=f"{type(e).__name__}: {_last_line(str(e))}"))
    return {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "rows": [asdict(r) for r in rows],
        "default_quantize": default_runs,
        "peer_versions": versions,
    }


def _peer_python(peer: Peer, args: argparse.Namespace) -> tuple[Path | None, str]:
    """The peer's venv python, built where allowed; else (None, why)."""
    root = Path(args.peers)
    if args.quick or args.no_build:
        python = root / peer.name / "bin" / "python"
        if (root / peer.name / ".peers-ready").is_file() and python.exists():
            return python, "reused"
        mode = "quick mode" if args.quick else "--no-build"
        return None, f"{mode} builds no venv, and none is ready at {root / peer.name}"
    return _ensure_venv(peer, root)


def _verdict(rows: list[Row]) -> dict[str, Any]:
    """Issue 29's done-when: squeeze's default within 5% of the fastest int8 path squeeze builds
    (as squeeze runs it), and at least as fast as optimum-intel + NNCF static int8."""
    default = next((r for r in rows if r.extra.get("default") and r.p50_ms), None)
    if default is None or default.p50_ms is None:
        return {"default_timed": False}
    # squeeze's int8 paths built by name (not the default itself, not the bf16 IR), as squeeze
    # runs them.
    ours = [r for r in rows if r.group == "squeeze" and r.p50_ms and not r.extra.get("default")
            and "--dtype bf16" not in r.name
            and not r.runtime.startswith("openvino default")]  # fmt: skip
    fastest = min(ours, key=lambda r: r.p50_ms or 0.0)
    nncf = {r.runtime: r.p50_ms for r in rows if r.name.startswith("optimum-intel + NNCF")
            and r.p50_ms}  # fmt: skip
    return {
        "default_ms": default.p50_ms,
        "fastest_squeeze": f"{fastest.name} [{fastest.runtime}]",
        "fastest_squeeze_ms": fastest.p50_ms,
        "within_5pct_of_fastest": default.p50_ms <= 1.05 * (fastest.p50_ms or 0.0),
        "nncf_ms": nncf,
        "at_least_as_fast_as_nncf": {k: default.p50_ms <= v for k, v in nncf.items()},
    }


def _markdown(report: dict[str, Any]) -> str:
    rows = [Row(**r) for r in report["rows"]]
    base = rows[0].p50_ms
    default = next((r.p50_ms for r in rows if r.extra.get("default")), None)
    lines = [
        f"### {report['model']} (seq {report['seq']}, batch 1)",
        "",
        "| variant | runs on | p50 ms | p90 ms | x fp32 | / default | MiB | top-1 agree | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        if r.p50_ms is None:
            lines.append(f"| {r.name} | | | | | | | | skipped: {r.skipped} |")
            continue
        speed = f"{base / r.p50_ms:.2f}" if base else ""
        ratio = f"{r.p50_ms / default:.2f}" if default else ""
        size = f"{r.bytes_on_disk / 2**20:.1f}" if r.bytes_on_disk else ""
        agreement = r.extra.get("agreement")
        agree = f"{agreement['top1']:.2%}" if agreement else ""
        lines.append(f"| {r.name} | {r.runtime} | {r.p50_ms:.2f} | {r.p90_ms:.2f} | {speed} | "
                     f"{ratio} | {size} | {agree} | {r.note} |")  # fmt: skip
    lines += ["", *_summary_lines(report)]
    return "\n".join(lines)


def _summary_lines(report: dict[str, Any]) -> list[str]:
    from squeeze.measure.machine import describe_machine

    runs = report["default_quantize"]
    lines = []
    if report["machine"]:
        lines.append(f"- machine: {describe_machine(report['machine'])}")
    others = report["others_cpu_share"]
    if others is not None:
        warn = " (busy: latencies disturbed)" if others > BUSY else ""
        lines.append(f"- others' CPU share while timing: {others:.0%}{warn}")
    for attempt in ("first", "second"):
        run = runs[attempt]
        how = f"reused the decision from {run['remembered']}" if run["remembered"] else "measured"
        lines.append(f"- default quantize, {attempt} run: {run['wall_s']:.1f} s wall, chose "
                     f"{run['chosen']} ({how})" + (f"; FAILED {run['failed']}" if run["failed"]
                                                   else ""))  # fmt: skip
    verdict = report["verdict"]
    if verdict.get("default_ms"):
        gap = verdict["default_ms"] / verdict["fastest_squeeze_ms"] - 1
        lines.append(f"- default vs fastest squeeze int8 ({verdict['fastest_squeeze']}): "
                     f"{gap:+.1%} ({'within' if verdict['within_5pct_of_fastest'] else 'outside'}"
                     " 5%)")  # fmt: skip
        for runtime, ms in verdict["nncf_ms"].items():
            lines.append(f"- default vs optimum-intel + NNCF static int8 [{runtime}]: "
                         f"{verdict['default_ms'] / ms - 1:+.1%}")  # fmt: skip
    for peer, versions in report["peer_versions"].items():
        lines.append(
            f"- {peer} venv: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        )
    return lines


def _models(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(label, checkpoint) per model to compare; the demo model skipped, with how to build it,
    where it is missing."""
    from squeeze.model.tiny import build_bert_shaped

    work = Path(args.work)
    if args.quick:
        return [("tiny shape", build_bert_shaped("tiny", work / "tiny" / "checkpoint"))]
    models = []
    if args.only in (None, "demo"):
        demo = Path(args.model)
        if (demo / "config.json").is_file():
            models.append(("demo " + demo.name, demo.resolve()))
        else:
            _log(f"no model at {demo}: `make demo` builds the demo model (or pass --model PATH); "
                 "skipping it")  # fmt: skip
    if args.only in (None, "bert-base"):
        checkpoint = build_bert_shaped("bert-base", work / "bert-base" / "checkpoint")
        models.append(("BERT-base shape", checkpoint.resolve()))
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("demo", "bert-base"), help="one model only")
    parser.add_argument("--model", default=str(DEMO_MODEL), help="the demo model's checkpoint")
    parser.add_argument("--seq", type=int, default=SEQ, help="tokens timed (and --max-length)")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration-texts", type=int, default=300,
                        help="NNCF's texts, from squeeze's calibration.txt")  # fmt: skip
    parser.add_argument("--work", default=str(PEERS / "work"))
    parser.add_argument("--peers", default=str(PEERS), help="where the peer venvs are kept")
    parser.add_argument("--no-build", action="store_true", help="use peer venvs only if ready")
    parser.add_argument("--keep-decisions", dest="fresh", action="store_false",
                        help="keep squeeze's remembered decisions from an earlier run")  # fmt: skip
    parser.add_argument("--reuse", action="store_true",
                        help="time what an earlier run in --work built again")  # fmt: skip
    parser.add_argument("--agreement-texts", type=int, default=256,
                        help="held-out built-in texts for top-1 agreement (0: none)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny shape, few runs, no peer build")
    parser.add_argument("--json", action="store_true", help="JSON on stdout, not markdown")
    parser.add_argument("--save", help="also write the JSON report to this file")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.warmup, args.rounds = min(args.runs, 10), min(args.warmup, 2), 2
        args.agreement_texts = min(args.agreement_texts, 32)

    if (
        args.fresh and not args.reuse
    ):  # the first default quantize of each model measures its candidates
        shutil.rmtree(Path(args.work) / "squeeze-cache" / ".decisions", ignore_errors=True)
    reports = [_bench_model(label, model, args) for label, model in _models(args)]
    report = {"models": reports, "settings": {k: v for k, v in vars(args).items()}}
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print("\n\n".join(_markdown(r) for r in reports))


if __name__ == "__main__":
    main()
