"""The step engine's two registries: method config type -> handler, and quantization backends.

A method is a config dataclass (``squeeze.core.config``) plus a handler registered for it, in the
style of torchao's ``quantize_(model, config)`` and peft's method registry::

    @register(StructuredPruneConfig, name="structured", summary="prune.json", help="...")
    def structured(model: LoadedModel, config, ctx: StepContext) -> StepResult: ...

The handler only transforms; ``squeeze.engine.runner`` does the loading, data, measuring, atomic
writing and gating for every command and every recipe step. The built-in methods and backends
live in the modules listed below, imported on first use; a new method or backend is one new
module plus one line in these lists.

This module stays light (no torch): recipe parsing and the CLI's option lists read it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from squeeze.core.errors import ConfigError, Problem, did_you_mean

if TYPE_CHECKING:
    from squeeze.core.types import StepResult
    from squeeze.engine.step import StepContext
    from squeeze.model.loaded import LoadedModel

METHOD_MODULES = (
    "squeeze.methods.prune.magnitude",
    "squeeze.methods.prune.structured",
    "squeeze.methods.prune.early_bird",
    "squeeze.methods.distill.method",
    "squeeze.methods.quantize.method",
    "squeeze.methods.export.method",
)
BACKEND_MODULES = (
    "squeeze.methods.quantize.ort",
    "squeeze.methods.quantize.pytorch",
    "squeeze.methods.quantize.bnb",
    "squeeze.methods.quantize.openvino",
    "squeeze.methods.quantize.auto",
)

Handler = Callable[["LoadedModel", Any, "StepContext"], "StepResult"]


@dataclass(frozen=True)
class Method:
    """A registered method: its config type, handler and what the engine must know of it.

    Attributes:
        name: The recipe step's name and the summary's ``method``.
        config: The config dataclass (the one definition of its parameters).
        handler: Transforms a loaded model; returns a StepResult.
        help: One line for the recipe reference.
        summary: The summary file written beside the output (None: none).
        tasks: Model tasks (``Task`` values) the method accepts as input.
        data_problem: Why the config cannot run without data, given which datasets exist
            (``"data"``, ``"calibration_data"``); None when it can.
        produces: ``"checkpoint"``, ``"onnx"`` or ``"openvino"`` (an export folder) for a
            config.
        final: Whether nothing may follow the step in a chain.
        inputs: Other checkpoints the step reads (an output must never overlap them).
        chained: In a chain, how the step takes the previous artifact: returns the step's
            input and config (distillation keeps the recipe's model as teacher and trains the
            previous artifact). None: the previous artifact is the input.
        position: Problems of the step at a chain position (0 = first).
        complete: Problems of a config that cannot run as it stands, here, checked before
            loading: a distillation without a student (in a chain ``chained`` supplies it), a
            quantization backend this machine lacks a CPU feature or package for.
        accepts: Raises when a model (its transformers config) cannot take the config: a
            structure-cutting step on a family without a spec. Checked right after loading,
            before any evaluation is spent.
        resumable: Long training that checkpoints beside the output and can resume.
        zipped_size: Report the deflated weight size (what unstructured zeros buy).
        compresses: The step exists to make the model smaller, so a result that is not
            smaller says so.
    """

    name: str
    config: type
    handler: Handler
    help: str
    summary: str | None = None
    tasks: tuple[str, ...] = (
        "sequence-classification",
        "causal-lm",
        "masked-lm",
        "base",
        "embedding",
    )
    data_problem: Callable[[Any, Collection[str]], str | None] = lambda config, given: None
    produces: Callable[[Any], str] = lambda config: "checkpoint"
    final: Callable[[Any], bool] | None = None
    inputs: Callable[[Any], tuple[str, ...]] = lambda config: ()
    chained: Callable[[Any, str, str], tuple[str, Any]] | None = None
    position: Callable[[Any, int], list[Problem]] = lambda config, index: []
    complete: Callable[[Any], list[Problem]] = lambda config: []
    accepts: Callable[[Any, Any], None] = lambda config, model_config: None
    resumable: bool = False
    zipped_size: bool = False
    compresses: bool = True

    def is_final(self, config: Any) -> bool:
        if self.final is not None and self.final(config):
            return True
        return self.produces(config) != "checkpoint"


_METHODS: dict[type, Method] = {}
_BACKENDS: dict[str, Backend] = {}


def register(config: type, **declared: Any) -> Callable[[Handler], Handler]:
    """Register the decorated handler for ``config`` (see :class:`Method` for the keywords)."""

    def decorate(handler: Handler) -> Handler:
        method = Method(config=config, handler=handler, **declared)
        if any(m.name == method.name for t, m in _METHODS.items() if t is not config):
            raise ValueError(f"two methods are named {method.name}")
        _METHODS[config] = method
        return handler

    return decorate


def _builtins_first(modules: tuple[str, ...]) -> Callable[[str], int]:
    """Import the built-in modules; the sort key that puts what they register first, in their
    order (``module`` is where a registered function was defined)."""
    for module in modules:
        importlib.import_module(module)
    return lambda module: modules.index(module) if module in modules else len(modules)


def methods() -> dict[str, Method]:
    """Every registered method by name, built-ins first."""
    rank = _builtins_first(METHOD_MODULES)
    return {m.name: m for m in sorted(_METHODS.values(), key=lambda m: rank(m.handler.__module__))}


def method_for(config: Any) -> Method:
    """The method registered for a config instance.

    Raises:
        ConfigError: no method is registered for its type.
    """
    methods()
    method = _METHODS.get(type(config))
    if method is None:
        raise ConfigError(f"no method is registered for {type(config).__name__}")
    return method


def method_named(name: str) -> Method:
    """Raises: ConfigError naming the known methods (and the nearest, for a typo)."""
    known = methods()
    if name not in known:
        hint = did_you_mean(name, known)
        raise ConfigError(f"unknown step '{name}'{hint}; steps are {', '.join(known)}")
    return known[name]


@dataclass(frozen=True)
class Backend:
    """A quantizer, registered by name: what it accepts, produces and needs.

    Attributes:
        name: ``--backend`` value.
        dtypes: The ``dtype`` values it produces.
        default_for: The dtypes it is the default backend of.
        produces: ``"onnx"`` or ``"openvino"`` (an export folder run by that runtime) or
            ``"checkpoint"``.
        quantize: ``(model, config, ctx, agree) -> (StepResult, forward of the result)``;
            ``agree(forward)`` compares any further artifact with the original.
        help: One line for ``--help``.
        check: Backend-specific problems of a config (options it does not take).
        needs_gpu: Whether it runs only on CUDA.
        cpu_feature: A CPU flag it needs (``avx512_vnni``), or None.
        extra: The squeeze extra that installs what it needs (``gpu``), or None.
        modules: The modules that extra provides, checked before any work.
    """

    name: str
    dtypes: tuple[str, ...]
    default_for: tuple[str, ...]
    produces: str
    quantize: Callable[..., Any]
    help: str
    check: Callable[[Any], list[Problem]] = lambda config: []
    needs_gpu: bool = False
    cpu_feature: str | None = None
    extra: str | None = None
    modules: tuple[str, ...] = ()


def register_backend(backend: Backend) -> Backend:
    if backend.name in _BACKENDS and _BACKENDS[backend.name] is not backend:
        raise ValueError(f"two quantization backends are named {backend.name}")
    _BACKENDS[backend.name] = backend
    return backend


def backends() -> dict[str, Backend]:
    """Every registered quantization backend by name."""
    rank = _builtins_first(BACKEND_MODULES)
    return dict(sorted(_BACKENDS.items(), key=lambda item: rank(item[1].quantize.__module__)))


PIN = "SQUEEZE_BACKEND"


def pinned_backend() -> str | None:
    """``$SQUEEZE_BACKEND``: the backend a machine (a CI runner whose timing is too noisy to
    decide on, a fleet standardised on one runtime) uses wherever a quantization names none."""
    return os.environ.get(PIN) or None


def default_backend(dtype: str, *, pin: bool = True) -> Backend | None:
    """The backend a quantization that names none uses: the pinned one where it offers
    ``dtype`` (unless ``pin`` is off), else the registered default (int8 and int4: ``auto``,
    measured on this machine)."""
    known = backends()
    pinned = known.get(pinned_backend() or "") if pin else None
    if pinned is not None and dtype in pinned.dtypes:
        return pinned
    return next((b for b in known.values() if dtype in b.default_for), None)
