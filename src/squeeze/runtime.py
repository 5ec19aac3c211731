"""Ways to run a model: a PyTorch module or an ONNX Runtime session, behind one signature.

A *forward* maps numpy input arrays to numpy logits. Evaluation, export validation and
benchmarks all take forwards, so a model and its ONNX export go through identical code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from squeeze.errors import CheckpointError, Problem, UnsupportedError

Forward = Callable[[Mapping[str, np.ndarray]], np.ndarray]


def torch_forward(model: Any, device: str = "cpu") -> Forward:
    """Wrap a transformers module as a forward returning float32 logits on the CPU."""
    import torch

    def forward(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            tensors = {k: torch.from_numpy(v).to(device) for k, v in inputs.items()}
            return model(**tensors).logits.float().cpu().numpy()

    return forward


def ort_providers(device: str) -> list[str]:
    """Execution providers for ``device``; CUDA only where onnxruntime-gpu provides it.

    Raises:
        UnsupportedError: CUDA asked for but this onnxruntime build has no CUDA provider.
    """
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise UnsupportedError(
            [
                Problem(
                    f"onnxruntime {ort.__version__} here has no CUDA provider "
                    f"({', '.join(ort.get_available_providers())}); install onnxruntime-gpu or use "
                    "{device} cpu"
                )
            ]
        )
    index = int(device.partition(":")[2] or 0)
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]  # type: ignore[list-item]


def ort_session(
    path: str | os.PathLike[str], *, device: str = "cpu", threads: int | None = None
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
        return ort.InferenceSession(str(path), options, providers=ort_providers(device))
    except (
        ort_errors.Fail,
        ort_errors.InvalidGraph,
        ort_errors.InvalidProtobuf,
        ort_errors.NoSuchFile,
    ) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{Path(path).name} is not a loadable ONNX model ({first})") from e


def ort_forward(session: Any) -> Forward:
    """Wrap an ONNX Runtime session (first output = logits) as a forward."""
    wanted = {i.name for i in session.get_inputs()}

    def forward(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        feed = {k: v for k, v in inputs.items() if k in wanted}
        return np.asarray(session.run(None, feed)[0], dtype=np.float32)

    return forward
