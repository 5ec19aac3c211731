"""Ways to run a model: a PyTorch module or an ONNX Runtime session, behind one signature.

A *forward* maps numpy input arrays to numpy logits. Evaluation, export validation and
benchmarks all take forwards, so a model and its ONNX export go through identical code.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from squeeze.core.errors import CheckpointError, Problem, UnsupportedError, first_line
from squeeze.model.pooling import Pooling, pool

Forward = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@contextlib.contextmanager
def no_telemetry() -> Iterator[None]:
    """OpenVINO's and NNCF's usage telemetry declined while they set it up (``import nncf``,
    ``openvino.convert_model``).

    Both send usage events unless a consent file says no; without a network (these machines,
    many CI runners) the sending process they fork from a thread can hang in getaddrinfo, and
    Python then waits for it at exit forever (nncf 3.4, openvino-telemetry 2025). Both decline in
    CI (``CI=true``; NNCF also ``NNCF_CI``), so squeeze says so while they decide, and restores
    the environment after: nothing else squeeze runs reads those variables differently.
    """
    saved = {name: os.environ.get(name) for name in ("CI", "NNCF_CI")}
    os.environ.update(CI="true", NNCF_CI="1")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def torch_forward(model: Any, device: str = "cpu", pooling: Pooling | None = None) -> Forward:
    """Wrap a transformers module as a forward returning float32 logits on the CPU, or, with
    ``pooling`` (an embedder), its pooled sentence embeddings."""
    import torch

    def forward(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            tensors = {k: torch.from_numpy(v).to(device) for k, v in inputs.items()}
            if pooling is None:
                return model(**tensors).logits.float().cpu().numpy()
            hidden = model(**tensors).last_hidden_state
            return pool(hidden.float(), tensors["attention_mask"], pooling).cpu().numpy()

    return forward


def ort_providers(device: str, *, tensorrt: bool = False, int8: bool = False) -> list[Any]:
    """Execution providers for ``device``; CUDA (and TensorRT) only where onnxruntime-gpu
    provides them. TensorRT builds fp16 engines (int8 ones for a QDQ int8 graph, ``int8``) and
    falls back to CUDA, then the CPU, for nodes it cannot take.

    Raises:
        UnsupportedError: CUDA or TensorRT asked for where this onnxruntime build lacks it.
    """
    import onnxruntime as ort

    if device == "cpu" and not tensorrt:
        return ["CPUExecutionProvider"]
    if device == "cpu":
        raise UnsupportedError(
            Problem("TensorRT runs on CUDA; pass {device} cuda, or use {runtime} onnxruntime")
        )
    available = ort.get_available_providers()
    wanted = "TensorrtExecutionProvider" if tensorrt else "CUDAExecutionProvider"
    if wanted not in available:
        raise UnsupportedError(
            Problem(
                f"onnxruntime {ort.__version__} here has no {wanted} "
                f"({', '.join(available)}); pip install 'squeeze[gpu]' (onnxruntime-gpu"
                + (" with TensorRT" if tensorrt else "")
                + ") or use {device} cpu"
            )
        )
    index = int(device.partition(":")[2] or 0)
    cuda = ("CUDAExecutionProvider", {"device_id": index})
    if not tensorrt:
        return [cuda, "CPUExecutionProvider"]
    options = {"device_id": index, "trt_fp16_enable": True, "trt_int8_enable": int8}
    return [("TensorrtExecutionProvider", options), cuda, "CPUExecutionProvider"]


def ort_session(
    path: str | os.PathLike[str],
    *,
    device: str = "cpu",
    threads: int | None = None,
    tensorrt: bool = False,
) -> Any:
    """An ONNX Runtime session with a fixed intra-op thread count (recorded in every figure).

    Raises:
        CheckpointError: the file is missing or not a loadable ONNX model.
    """
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: ORT warns about every unused initializer
    # ORT's idle worker threads spin-wait by default and took a core from PyTorch blocks measured
    # in the same process: on 2 cores, BERT-base fp32 PyTorch read 134-158 ms with spinning and
    # a steady 127-129 ms without, while ONNX Runtime's own latency did not change (59 ms).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        providers = ort_providers(device, tensorrt=tensorrt, int8=tensorrt and _is_qdq(path))
        return ort.InferenceSession(str(path), options, providers=providers)
    except (
        ort_errors.Fail,
        ort_errors.InvalidGraph,
        ort_errors.InvalidProtobuf,
        ort_errors.NoSuchFile,
    ) as e:
        name = Path(path).name
        raise CheckpointError(f"{name} is not a loadable ONNX model ({first_line(e)})") from e


def _is_qdq(path: str | os.PathLike[str]) -> bool:
    """Whether a graph carries QuantizeLinear nodes (static int8), which TensorRT runs as int8."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(node.op_type == "QuantizeLinear" for node in graph.node)


def ort_forward(session: Any) -> Forward:
    """Wrap an ONNX Runtime session (first output = logits) as a forward."""
    wanted = {i.name for i in session.get_inputs()}

    def forward(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        feed = {k: v for k, v in inputs.items() if k in wanted}
        return np.asarray(session.run(None, feed)[0], dtype=np.float32)

    return forward


class OpenVINOSession:
    """An OpenVINO compiled model behind the part of ONNX Runtime's session API squeeze uses
    (``get_inputs()[i].name``, ``run(None, feed)[0]``), so evaluation, validation and benchmarks
    run IR exports through the code that runs ONNX ones.

    Inference precision is the export's (its manifest's ``inference_precision``), f32 unless
    bf16 was asked for: on CPUs with AMX or AVX-512 BF16, OpenVINO otherwise runs an fp32 model
    in bf16, which is a different model (logits off by ~1e-2) chosen silently.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, threads: int | None = None, precision: str = "f32"
    ) -> None:
        import openvino as ov

        self.precision = precision
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self._compiled = ov.Core().compile_model(str(path), "CPU", config)
        except RuntimeError as e:
            name = Path(path).name
            raise CheckpointError(
                f"{name} is not a loadable OpenVINO model ({first_line(e)})"
            ) from e
        self._request = self._compiled.create_infer_request()
        self._inputs = [SimpleNamespace(name=port.any_name) for port in self._compiled.inputs]

    def get_inputs(self) -> list[Any]:
        return self._inputs

    def run(self, output_names: Any, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        result = self._request.infer(dict(feed))
        # The request reuses its output buffers: copy before the next call overwrites them.
        return [np.array(result[self._compiled.output(0)])]


def openvino_session(
    path: str | os.PathLike[str],
    *,
    device: str = "cpu",
    threads: int | None = None,
    precision: str = "f32",
) -> OpenVINOSession:
    """Raises: UnsupportedError for a device other than the CPU."""
    if device != "cpu":
        raise UnsupportedError(
            Problem("OpenVINO exports run on the CPU here; use {device} cpu, or an ONNX export")
        )
    return OpenVINOSession(path, threads=threads, precision=precision)


def export_session(
    path: Path,
    *,
    device: str = "cpu",
    threads: int | None = None,
    tensorrt: bool = False,
    precision: str = "f32",
) -> Any:
    """A session for an exported graph, by its file: ``.xml`` OpenVINO IR (computing in
    ``precision``), else ONNX (on TensorRT with ``tensorrt``)."""
    if Path(path).suffix == ".xml":
        return openvino_session(path, device=device, threads=threads, precision=precision)
    return ort_session(path, device=device, threads=threads, tensorrt=tensorrt)
