"""Load and save Hugging Face checkpoints safely, and write every output atomically.

Loading goes through transformers (so hub ids work for users who are online) but turns each of
its failure modes into a one-line :class:`~squeeze.core.errors.SqueezeError`. Weights are read from
safetensors where the checkpoint has them, and remote code never runs unless asked for.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import pickle
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from squeeze.core.errors import CheckpointError, Problem, UnsupportedError, first_line
from squeeze.core.output import atomic_output
from squeeze.core.types import Task
from squeeze.model.arch import find_spec, is_decoder, spec_for
from squeeze.model.loaded import LoadedModel
from squeeze.model.pooling import (
    Pooling,
    default_pooling,
    folder_files,
    read_pooling,
    write_sentence_files,
)
from squeeze.model.shapes import apply_shapes, read_shapes, write_shapes
from squeeze.model.sizes import WEIGHT_SUFFIXES, weight_files

# The class name suffixes transformers gives each head, in the order they are tried.
TASK_BY_ARCH_SUFFIX = (
    ("ForSequenceClassification", Task.SEQUENCE_CLASSIFICATION),
    ("ForCausalLM", Task.CAUSAL_LM),
    ("LMHeadModel", Task.CAUSAL_LM),
    ("ForMaskedLM", Task.MASKED_LM),
    ("Model", Task.BASE),
)


def quiet_transformers() -> None:
    """transformers prints load reports and progress bars; squeeze reports in its own words."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _looks_local(source: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else that does not exist is a missing path."""
    return (
        source.startswith(("/", ".", "~"))
        or source.count("/") > 1
        or "\\" in source
        or source.endswith("/")
    )


@contextlib.contextmanager
def quiet_quantizer_imports() -> Iterator[None]:
    """torchao and bitsandbytes log warnings about optional GPU kernels when first imported,
    and bitsandbytes' 8-bit matmul warns on every call that it casts inputs to fp16."""
    warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def resolve_local(source: str | os.PathLike[str]) -> Path | None:
    """The checkpoint folder behind ``source``, or None when it must be a hub id.

    Raises:
        CheckpointError: the path is missing, a file, or a folder that is not a checkpoint.
    """
    text = str(source)
    path = Path(text).expanduser()
    if not path.exists():
        if _looks_local(text):
            raise CheckpointError(f"no such checkpoint folder: {text}")
        return None
    if not path.is_dir():
        raise CheckpointError(
            f"{text} is a file; point at the checkpoint folder that holds config.json"
        )
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"{text} is not a Hugging Face checkpoint (no config.json); point at the folder "
            "written by save_pretrained"
        )
    if not any(p.suffix in WEIGHT_SUFFIXES for p in path.iterdir()):
        raise CheckpointError(f"{text} holds no weights (expected model.safetensors)")
    return path


PICKLE_ENV = "SQUEEZE_ALLOW_PICKLE"
_PICKLE_REFUSED = (
    "{where} has no safetensors weights, only pickled ones (pytorch_model.bin), which can run "
    "code when loaded; convert them to safetensors, or pass squeeze --allow-pickle if you trust "
    "the checkpoint"
)


def detect_task(config: Any) -> Task:
    """The task a checkpoint was saved for, read from ``config.architectures``."""
    for arch in getattr(config, "architectures", None) or ():
        for suffix, task in TASK_BY_ARCH_SUFFIX:
            if arch.endswith(suffix):
                return task
    return Task.BASE


def set_labels(config: Any, names: Sequence[str]) -> None:
    """Give a classifier's config these class names, in id order."""
    config.num_labels = len(names)
    config.id2label = dict(enumerate(names))
    config.label2id = {name: i for i, name in enumerate(names)}


def auto_class(task: Task) -> Any:
    import transformers

    return {
        Task.SEQUENCE_CLASSIFICATION: transformers.AutoModelForSequenceClassification,
        Task.CAUSAL_LM: transformers.AutoModelForCausalLM,
        Task.MASKED_LM: transformers.AutoModelForMaskedLM,
        Task.BASE: transformers.AutoModel,
        Task.EMBEDDING: transformers.AutoModel,
    }[task]


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hub answers a TCP connection within ``timeout_s``: without network,
    huggingface_hub retries each request five times over about 25 s before it gives up."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def _go_offline() -> None:
    """Offline mode for this process (what ``HF_HUB_OFFLINE=1`` does): cached hub files still
    load, missing ones fail at once instead of after retries."""
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True


def needs_remote_code(source: str) -> UnsupportedError:
    """The refusal of a checkpoint whose model type only its own code defines."""
    return UnsupportedError(
        Problem(
            f"{source} needs custom code from its repository; pass {{trust_remote_code}} if "
            "you trust it"
        )
    )


def _load_config(source: str, local: Path | None, trust_remote_code: bool) -> Any:
    import transformers

    where = str(local) if local else source
    if local is None and not hub_reachable():
        _go_offline()
    try:
        return transformers.AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code)
    except ValueError as e:
        message = str(e)
        if "trust_remote_code" in message:
            raise needs_remote_code(source) from e
        if "does not recognize this architecture" in message or "model_type" in message:
            raise UnsupportedError(
                f"{source}: architecture not recognised by transformers "
                f"{transformers.__version__} ({first_line(e)})"
            ) from e
        raise CheckpointError(f"{source}: unreadable config.json ({first_line(e)})") from e
    except OSError as e:
        if local is None:
            raise CheckpointError(
                f"'{source}' is not a local folder and could not be fetched from the Hugging "
                "Face Hub (not available offline?); download it first or pass a local path"
            ) from e
        raise CheckpointError(f"{source}: unreadable config.json ({first_line(e)})") from e


def read_config(source: str | os.PathLike[str], *, trust_remote_code: bool = False) -> Any:
    """A checkpoint's config alone (cheap: no weights), with the same errors as :func:`load`."""
    quiet_transformers()
    return _load_config(str(source), resolve_local(source), trust_remote_code)


def _hub_files(source: str) -> Any:
    """:func:`read_pooling`'s ``fetch`` for a hub id: the file from the Hub (or its cache), or
    None when the repository lacks it or cannot be reached."""
    from transformers.utils import cached_file

    def fetch(name: str) -> Path | None:
        found = cached_file(
            source,
            name,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
        return Path(found) if found else None

    return fetch


def embedder_pooling(
    source: str, local: Path | None, config: Any, task: Task | None, options: dict[str, Any]
) -> tuple[Task | None, Pooling | None]:
    """The task and pooling of a checkpoint: a sentence-transformers folder is an embedder
    (unless another ``task`` is asked for), pooling as its files say; ``--task embedding`` on
    any other checkpoint pools as ``options`` say (mode, normalize), else by the default for its
    direction. ``options`` override what the files say."""
    found = read_pooling(folder_files(local) if local is not None else _hub_files(source))
    if task is None and found is not None:
        task = Task.EMBEDDING
    if task is not Task.EMBEDDING:
        return task, None
    if found is None:
        found = default_pooling(is_decoder(config, find_spec(config)))
    return task, replace(found, **options) if options else found


def _forward_inputs(model: Any, tokenizer: Any) -> tuple[str, ...]:
    accepted = inspect.signature(model.forward).parameters
    names = tuple(n for n in tokenizer.model_input_names if n in accepted)
    if "input_ids" not in names:
        raise UnsupportedError(f"{type(model).__name__} does not take input_ids from its tokenizer")
    return names


def load(
    source: str | os.PathLike[str],
    *,
    task: Task | None = None,
    trust_remote_code: bool = False,
    allow_new_weights: bool = False,
    label_names: list[str] | None = None,
    device: str = "cpu",
    pooling: dict[str, Any] | None = None,
) -> LoadedModel:
    """Load a checkpoint folder or hub id with its tokenizer, ready for inference.

    Args:
        source: A folder written by ``save_pretrained`` or a hub id.
        task: Which head to load; detected from the config when None.
        trust_remote_code: Allow the checkpoint's own Python code to run.
        allow_new_weights: Accept weights missing from the checkpoint (a fresh classification head
            when fine-tuning a base encoder). Otherwise a missing tensor is an error: silently
            random weights would make every later measurement meaningless.
        label_names: For a fresh classification head: its labels, in id order.
        device: Where to put the model.
        pooling: An embedder's pooling options (``mode``, ``normalize``) over what its
            sentence-transformers files say.

    Raises:
        CheckpointError: missing, not a checkpoint, corrupt, incomplete, or not reachable.
        UnsupportedError: an architecture transformers does not know, or custom code that
            was not allowed.
    """
    quiet_transformers()
    import transformers
    from safetensors import SafetensorError

    text = str(source)
    local = resolve_local(source)
    where = str(local) if local else text
    config = _load_config(text, local, trust_remote_code)
    spec = find_spec(config)
    task, found_pooling = embedder_pooling(text, local, config, task, pooling or {})
    task = task or detect_task(config)
    notes: list[str] = []
    if label_names is not None:
        set_labels(config, label_names)

    shapes = read_shapes(local) if local is not None else None
    quantized = getattr(config, "quantization_config", None) is not None
    pickle_ok = os.environ.get(PICKLE_ENV) == "1"  # squeeze --allow-pickle sets it (unsafe)
    if local is not None and not pickle_ok and not any(local.glob("*.safetensors")):
        raise CheckpointError(_PICKLE_REFUSED.format(where=text))
    # Safetensors only unless pickles were allowed: a hub repo with .bin weights alone is refused.
    formats = {} if pickle_ok else {"use_safetensors": True}
    try:
        if shapes is not None:  # rebuilt with the spec it was cut with
            family = spec_for(config, f"loading the structurally pruned {text}")
            model, info = _load_reshaped(local, config, task, family, shapes)
        else:
            # Quantized checkpoints (bitsandbytes, torchao) are placed by transformers itself.
            placement = {"device_map": device} if quantized else {}
            with quiet_quantizer_imports(), warnings.catch_warnings():
                # torch's weights-only unpickler warns about the protocol of every old pickle.
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                model, info = auto_class(task).from_pretrained(
                    where,
                    config=config,
                    trust_remote_code=trust_remote_code,
                    output_loading_info=True,
                    **placement,
                    **formats,
                )
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{text}: refused to unpickle its weights: the file holds objects other than tensors, "
            "which could run code; do not use this checkpoint, or convert it to safetensors where "
            "you trust it"
        ) from e
    except (SafetensorError, OSError, RuntimeError, EOFError) as e:
        if isinstance(e, OSError) and e.errno is not None:  # the OS refused to read it
            from squeeze.core.faults import os_fault

            raise os_fault(e) from e
        if not pickle_ok and "safetensors" in str(e).lower() and local is None:
            raise CheckpointError(_PICKLE_REFUSED.format(where=text)) from e
        raise CheckpointError(
            f"{text}: weights are corrupt or truncated ({first_line(e)}); re-save or "
            "re-download the checkpoint"
        ) from e
    missing = sorted(info.get("missing_keys") or ())
    if task is Task.EMBEDDING and any(k.startswith("pooler.") for k in missing):
        # An embedder pools the token states itself; the encoder's own pooler never runs into
        # its output, so a masked-LM checkpoint without one embeds as it is.
        missing = [k for k in missing if not k.startswith("pooler.")]
        notes.append("the checkpoint has no pooler weights; the embedding does not use them")
    if missing and not allow_new_weights:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise CheckpointError(
            Problem(
                f"{text} lacks weights the {task.value} model needs ({shown}); the checkpoint "
                "is incomplete or {task} does not match it"
            )
        )
    if missing:
        notes.append(f"newly initialised: {', '.join(missing)}")

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            where, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, TypeError) as e:
        raise CheckpointError(
            f"{text} has no usable tokenizer ({first_line(e)}); save one beside the weights"
        ) from e
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise CheckpointError(f"{text}: the tokenizer has neither a pad nor an eos token")
        # Decoders ship without a pad token; eos is the usual stand-in and is masked anyway.
        tokenizer.pad_token = tokenizer.eos_token
        notes.append("tokenizer had no pad token; using its eos token for padding")
    if model.config.pad_token_id is None:
        # Sequence classifiers on decoders find the last real token through pad_token_id.
        model.config.pad_token_id = tokenizer.pad_token_id

    if local is None:
        from transformers.utils import cached_file

        local = Path(cached_file(text, "config.json")).parent
    if not quantized:
        model.to(device)
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        config=model.config,
        task=task,
        source=text,
        spec=spec,
        input_names=_forward_inputs(model, tokenizer),
        path=local,
        notes=notes,
        shapes=shapes,
        pooling=found_pooling,
    )


def _load_reshaped(
    folder: Path, config: Any, task: Task, family: Any, shapes: list[Any]
) -> tuple[Any, dict[str, Any]]:
    """Build the stock model, cut it to the recorded shapes, then load the pruned weights.

    transformers cannot build per-layer head counts from a config, so ``from_pretrained`` would
    refuse these weights; this is the loader for what it cannot express.
    """
    from safetensors.torch import load_file

    state: dict[str, Any] = {}
    for file in weight_files(folder):
        if file.suffix != ".safetensors":
            raise CheckpointError(f"{folder}: pruned checkpoints are read from safetensors only")
        state.update(load_file(file))
    model = auto_class(task).from_config(config)
    apply_shapes(model, family, config, shapes)
    model.to(next(iter(state.values())).dtype)
    missing, unexpected = model.load_state_dict(state, strict=False)
    model.tie_weights()
    output = model.get_output_embeddings()
    tied = {
        name
        for name, tensor in model.state_dict().items()
        if output is not None and tensor.data_ptr() == output.weight.data_ptr()
    }
    return model, {"missing_keys": set(missing) - tied, "unexpected_keys": set(unexpected)}


def write_checkpoint(loaded: LoadedModel, folder: Path) -> None:
    """Write model (safetensors), config, tokenizer and any pruned shapes into a folder."""
    quiet_transformers()
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    if loaded.shapes is not None:
        write_shapes(folder, loaded.shapes)
    if loaded.pooling is not None:
        write_sentence_files(folder, loaded.pooling, embedding_dimension(loaded.config))


def embedding_dimension(config: Any) -> int:
    """The width of a model's token states (what an embedder's pooling returns)."""
    for name in ("hidden_size", "d_model", "n_embd", "dim"):
        if isinstance(getattr(config, name, None), int):
            return int(getattr(config, name))
    raise UnsupportedError(f"cannot tell the hidden size of a {config.model_type} model")


def save(
    loaded: LoadedModel,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    extra_files: Mapping[str, str] | None = None,
) -> Path:
    """Save a complete HF checkpoint folder atomically; never over the checkpoint it came from.

    Args:
        loaded: The model to save.
        out: The destination folder.
        overwrite: Replace ``out`` if it exists.
        extra_files: File name to text, written beside the weights (summaries, manifests).
    """
    with atomic_output(out, overwrite=overwrite, inputs=[loaded.path]) as tmp:
        write_checkpoint(loaded, tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return Path(out)
