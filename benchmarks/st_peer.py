"""The peer for squeeze's sentence embedders: sentence-transformers' own backends, timed alike.

The README compares squeeze's compressed all-MiniLM-L6-v2 with what sentence-transformers itself
offers for CPU inference: PyTorch, its OpenVINO backend, and OpenVINO static int8 from
``export_static_quantized_openvino_model``. This script measures those in the same way squeeze
measures its models (fixed threads; per backend a warm-up then timed runs, in blocks whose order
rotates over rounds so clock drift favours no one) and saves each backend's embeddings, so the
caller can score them against squeeze's own (mean cosine).

It runs in a separate virtual environment, never squeeze's: sentence-transformers' OpenVINO extra
pins its own transformers and optimum. It must not import squeeze. To create that environment (a
CPU torch first, and the same torch named again so the extra cannot swap it for a CUDA build;
optimum-intel's torchvision dependency is a CUDA build on PyPI whose failing import breaks
transformers, and nothing here needs it, so it is removed)::

    python3 -m venv PEER
    PEER/bin/pip install torch==2.13.0
    PEER/bin/pip install torch==2.13.0 'huggingface-hub<1.22' \\
        'sentence-transformers[openvino]==6.3.0' datasets==5.0.1
    PEER/bin/pip uninstall -y torchvision

Then, with a sentence-transformers model folder and one held-out text per line::

    PEER/bin/python benchmarks/st_peer.py --model MODEL_DIR --texts TEXTS --out OUT \\
        [--calib CALIB_TEXTS] [--threads 2] [--runs 100] [--rounds 5] [--warmup 10] \\
        [--backends torch,openvino,openvino-f32,openvino-int8,openvino-int8-f32]

It writes OUT/peer.json (versions, CPU, threads, per backend: latency, precision, notes) and
OUT/<backend>.npy (float32 [texts, dim], from ``encode`` at batch 32) and prints a table. The
model folder is copied to a temporary folder first: OpenVINO files are written beside the copy,
never into the original (which may be an installed package).

Offline notes: the Hugging Face hub is never contacted (``HF_HUB_OFFLINE``). Static int8 needs
calibration text: sentence-transformers' default is the hub's nyu-mll/glue sst2, unreachable
offline, but ``export_static_quantized_openvino_model`` also takes a local dataset folder, which
this script builds from ``--calib`` (texts that must not be among ``--texts``). Without
``--calib`` the int8 backends are skipped with a note saying so.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from importlib import metadata, util
from pathlib import Path
from typing import Any

from _cpuload import cpu_seconds, others_share  # beside this script (its venv has no squeeze)

BACKENDS = {
    "torch": "PyTorch fp32",
    "openvino": "OpenVINO, the CPU plugin's default inference precision",
    "openvino-f32": "OpenVINO, INFERENCE_PRECISION_HINT pinned to f32",
    "openvino-int8": "OpenVINO static int8 (NNCF), the CPU plugin's default precision elsewhere",
    "openvino-int8-f32": "OpenVINO static int8 (NNCF), f32 pinned for the ops left unquantised",
}
INT8_SUFFIX = "qint8_quantized"
FP_FILE = "openvino/openvino_model.xml"
INT8_FILE = f"openvino/openvino_model_{INT8_SUFFIX}.xml"
# Layers whose runtime precision decides the speed: the report counts them per precision.
COMPUTE_LAYERS = {"FullyConnected", "MatMul", "ScaledAttn"}
VERSIONED = (
    "sentence-transformers", "transformers", "torch", "openvino", "optimum", "optimum-intel",
    "nncf", "datasets", "tokenizers", "numpy",
)  # fmt: skip
EXIT_BAD_INPUT = 3
EXIT_UNSUPPORTED = 4


def _fail(message: str, code: int) -> None:
    """One line on stderr, then exit: the caller's fix is in the line."""
    print(f"st_peer: {message}", file=sys.stderr)
    raise SystemExit(code)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Read and check the arguments before anything is imported or loaded."""
    parser = argparse.ArgumentParser(
        prog="st_peer.py",
        description="Time sentence-transformers' own CPU backends (run with the peer venv).",
    )
    parser.add_argument("--model", type=Path, required=True, help="sentence-transformers folder")
    parser.add_argument("--texts", type=Path, required=True, help="held-out texts, one a line")
    parser.add_argument("--out", type=Path, required=True, help="folder for peer.json and .npy")
    parser.add_argument("--calib", type=Path, help="int8 calibration texts, one a line")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100, help="timed calls per backend in all")
    parser.add_argument("--rounds", type=int, default=5, help="blocks per backend, rotating")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls before each block")
    parser.add_argument("--batch-size", type=int, default=32, help="for the saved embeddings")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in args.backends if b not in BACKENDS]
    if unknown or not args.backends:
        parser.error(
            f"--backends takes some of {', '.join(BACKENDS)}; got {', '.join(unknown) or 'none'}"
        )
    if len(set(args.backends)) != len(args.backends):
        parser.error("--backends names a backend twice")
    for name in ("threads", "runs", "rounds", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    if args.runs < args.rounds:
        parser.error("--runs must be at least --rounds (each round times at least one call)")
    return args


def _read_texts(path: Path, flag: str) -> list[str]:
    """Non-empty lines of a text file; a missing, unreadable or empty file is the caller's fix."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{flag} {path} cannot be read ({exc}); give a UTF-8 file, one text a line",
              EXIT_BAD_INPUT)  # fmt: skip
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        _fail(f"{flag} {path} has no text; give one text a line", EXIT_BAD_INPUT)
    return texts


def _check_environment(args: argparse.Namespace) -> None:
    """Stop with the fix when this Python lacks what the chosen backends need."""
    if util.find_spec("sentence_transformers") is None:
        _fail(f"sentence_transformers is not importable by {sys.executable}; run with the peer "
              "venv: PEER/bin/python benchmarks/st_peer.py ... (how to create it: this "
              "script's docstring)", EXIT_UNSUPPORTED)  # fmt: skip
    needs = {
        "optimum": any(b.startswith("openvino") for b in args.backends),
        "datasets": args.calib is not None and any("int8" in b for b in args.backends),
    }
    for module, needed in needs.items():
        if needed and util.find_spec(module) is None:
            _fail(f"{module} is missing for {', '.join(args.backends)}; install it in the "
                  "peer venv (see this script's docstring)", EXIT_UNSUPPORTED)  # fmt: skip


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _cpu() -> dict[str, Any]:
    """The CPU's name and the flags that decide OpenVINO's default precision and int8 kernels."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:  # not Linux: the name platform gives, no flags
        pass
    wanted = ("amx", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f")
    return {
        "model_name": fields.get("model name") or platform.processor() or "unknown",
        "flags": sorted(f for f in fields.get("flags", "").split() if f.startswith(wanted)),
        "logical_cpus": os.cpu_count(),
    }


def _ov_precision(model: Any) -> dict[str, Any]:
    """What the compiled OpenVINO model really runs: its precision hint, threads, compute layers."""
    compiled = model[0].auto_model.request
    layers: collections.Counter[str] = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].value in COMPUTE_LAYERS:
            layers[info["runtimePrecision"].value] += 1
    return {
        "precision": compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
        "ov_threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
        "compute_layer_precisions": dict(layers),
    }


def _prepare(st: Any, folder: Path, args: argparse.Namespace, work: Path) -> dict[str, str]:
    """Export OpenVINO (and int8) files into the model copy; the backends it could not build."""
    if not any(b.startswith("openvino") for b in args.backends):
        return {}
    if not (folder / FP_FILE).exists():
        st.SentenceTransformer(str(folder), device="cpu", backend="openvino").save_pretrained(
            str(folder)
        )
    int8 = [b for b in args.backends if "int8" in b]
    if not int8:
        return {}
    if args.calib is None:
        reason = (
            "needs --calib: export_static_quantized_openvino_model calibrates on the hub's "
            "nyu-mll/glue sst2 by default, unreachable offline; a local dataset folder works"
        )
        return dict.fromkeys(int8, reason)
    from optimum.intel import OVQuantizationConfig

    calib = _read_texts(args.calib, "--calib")
    data = work / "calibration"
    data.mkdir()
    with (data / "train.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": text}) + "\n" for text in calib)
    model = st.SentenceTransformer(str(folder), device="cpu", backend="openvino")
    try:
        st.export_static_quantized_openvino_model(
            model, OVQuantizationConfig(num_samples=len(calib)), str(folder),
            dataset_name=str(data), dataset_config_name="default", dataset_split="train",
            column_name="text", file_suffix=INT8_SUFFIX,
        )  # fmt: skip
    except Exception as exc:  # a peer that cannot build int8 still reports the rest
        first = (str(exc).splitlines() or [""])[0]
        return dict.fromkeys(int8, f"int8 export failed: {type(exc).__name__}: {first}")
    return {}


def _load(st: Any, name: str, folder: Path, threads: int) -> Any:
    """One backend from the prepared copy, its OpenVINO threads pinned like PyTorch's."""
    if name == "torch":
        return st.SentenceTransformer(str(folder), device="cpu", backend="torch")
    ov_config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads}
    if name.endswith("-f32"):
        ov_config["INFERENCE_PRECISION_HINT"] = "f32"
    kwargs = {"ov_config": ov_config, "file_name": INT8_FILE if "int8" in name else FP_FILE}
    return st.SentenceTransformer(
        str(folder), device="cpu", backend="openvino", model_kwargs=kwargs
    )


def _stats(samples: list[float]) -> dict[str, Any]:
    import numpy as np

    values = np.asarray(samples)
    return {
        "median_ms": float(np.median(values)),
        "p90_ms": float(np.percentile(values, 90)),
        "min_ms": float(values.min()),
        "max_ms": float(values.max()),
        "stdev_ms": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "n": len(samples),
        "samples_ms": [round(v, 4) for v in samples],
    }


def _time_all(
    models: dict[str, Any], texts: list[str], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Batch-1 ``encode([text])`` per backend, in rounds whose backend order rotates.

    Every backend times the same texts: round r uses the r-th slice of the rotating text list,
    so no backend gets shorter sentences than another.
    """
    per_round = -(-args.runs // args.rounds)
    names = list(models)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        start = r * (per_round + args.warmup)
        for i in range(len(names)):
            name = names[(i + r) % len(names)]
            model = models[name]
            for k in range(args.warmup):
                model.encode([texts[(start + k) % len(texts)]], show_progress_bar=False)
            for k in range(per_round):
                text = texts[(start + args.warmup + k) % len(texts)]
                t0 = time.perf_counter()
                model.encode([text], show_progress_bar=False)
                samples[name].append((time.perf_counter() - t0) * 1000)
    return {name: _stats(values) for name, values in samples.items()}


def _mean_cosine(a: Any, b: Any) -> float:
    import numpy as np

    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return float(np.mean(np.sum(a * b, axis=1) / np.maximum(na * nb, 1e-12)))


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Build, time and embed with every backend; write OUT/peer.json and OUT/<backend>.npy.

    ``work`` is a scratch folder for the model copy, its OpenVINO files and the calibration set.
    """
    import numpy as np
    import sentence_transformers as st
    import torch

    texts = _read_texts(args.texts, "--texts")
    torch.set_num_threads(args.threads)
    backends: dict[str, dict[str, Any]] = {
        name: {"description": BACKENDS[name], "notes": []} for name in args.backends
    }
    folder = work / "model"
    shutil.copytree(args.model, folder)
    shipped = (folder / FP_FILE).exists()
    for name, reason in _prepare(st, folder, args, work).items():
        backends[name]["skipped"] = reason
    models: dict[str, Any] = {}
    for name, entry in backends.items():
        if "skipped" in entry:
            continue
        t0 = time.perf_counter()
        models[name] = _load(st, name, folder, args.threads)
        entry["load_s"] = round(time.perf_counter() - t0, 2)
        if name == "torch":
            entry.update(precision="f32", torch_threads=torch.get_num_threads())
            continue
        entry.update(_ov_precision(models[name]))
        if "int8" in name:
            note = f"static int8 exported here, calibrated on {args.calib} (padded to 384 tokens)"
        elif shipped:
            note = "OpenVINO IR shipped with the model"
        else:
            note = "OpenVINO IR exported here by optimum-intel"
        entry["notes"].append(note)
    before = cpu_seconds()
    latency = _time_all(models, texts, args) if models else {}
    others = others_share(before, cpu_seconds())
    args.out.mkdir(parents=True, exist_ok=True)
    embeddings: dict[str, Any] = {}
    for name, model in models.items():
        vectors = model.encode(texts, batch_size=args.batch_size, show_progress_bar=False)
        embeddings[name] = np.asarray(vectors, dtype=np.float32)
        np.save(args.out / f"{name}.npy", embeddings[name])
        backends[name].update(latency_ms=latency[name], embeddings=f"{name}.npy")
        backends[name]["dim"] = int(embeddings[name].shape[1])
    if "torch" in embeddings:
        for name, vectors in embeddings.items():
            backends[name]["mean_cosine_to_torch"] = _mean_cosine(vectors, embeddings["torch"])
    report = {
        "peer": "sentence-transformers",
        "model": str(args.model),
        "texts": str(args.texts),
        "n_texts": len(texts),
        "calibration": str(args.calib) if args.calib else None,
        "versions": _versions(),
        "cpu": _cpu(),
        "threads": args.threads,
        "others_cpu_share_while_timing": others,
        "method": {
            "latency": "wall time of model.encode([text]) (tokenise, forward, pool, normalise) at "
            "batch 1, one text per call rotating over --texts; per backend a warm-up then timed "
            "calls in each round, the backends' order rotating over rounds",
            "runs": args.runs,
            "rounds": args.rounds,
            "warmup_per_round": args.warmup,
            "embeddings": f"model.encode(all texts, batch_size={args.batch_size}), float32",
        },
        "backends": backends,
    }
    (args.out / "peer.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _print(report: dict[str, Any]) -> None:
    cpu = report["cpu"]
    print(f"sentence-transformers {report['versions']['sentence-transformers']} on "
          f"{cpu['model_name']} ({', '.join(cpu['flags']) or 'no AVX-512/AMX'}), "
          f"{report['threads']} threads, {report['n_texts']} texts, batch 1")  # fmt: skip
    others = report["others_cpu_share_while_timing"]
    if others is not None:
        print(f"  other processes used {others:.0%} of the {cpu['logical_cpus']} CPUs while timing")
    print(f"  {'backend':<18} {'precision':<9} {'median':>8} {'p90':>8} {'min':>8}  cos-to-torch")
    for name, entry in report["backends"].items():
        if "skipped" in entry:
            print(f"  {name:<18} skipped: {entry['skipped']}")
            continue
        lat = entry["latency_ms"]
        cos = entry.get("mean_cosine_to_torch")
        print(f"  {name:<18} {entry['precision']:<9} {lat['median_ms']:7.2f}ms "
              f"{lat['p90_ms']:7.2f}ms {lat['min_ms']:7.2f}ms  "
              f"{'-' if cos is None else f'{cos:.5f}'}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if not (args.model / "modules.json").is_file():
        _fail(f"--model {args.model} has no modules.json; give a sentence-transformers folder",
              EXIT_BAD_INPUT)  # fmt: skip
    texts = set(_read_texts(args.texts, "--texts"))
    if args.calib is not None:
        shared = texts.intersection(_read_texts(args.calib, "--calib"))
        if shared:
            _fail(f"--calib shares {len(shared)} texts with --texts; calibrate on other "
                  "sentences so int8 is judged on held-out text", EXIT_BAD_INPUT)  # fmt: skip
    _check_environment(args)
    with tempfile.TemporaryDirectory(prefix="st_peer_") as tmp:
        # Set before the first Hugging Face import reads them: the hub is out of reach, so fail
        # at once rather than retry it; the calibration set's datasets cache (optimum-intel puts
        # it in the hub cache) stays in the scratch folder; library logs stay quiet.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ["HF_HUB_CACHE"] = str(Path(tmp) / "hub-cache")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        report = run(args, Path(tmp))
    _print(report)


if __name__ == "__main__":
    main()
