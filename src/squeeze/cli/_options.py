"""Options shared by several commands, declared once.

Every command that reads a dataset takes the same dozen flags; ``with_data_options`` adds them to
a command's signature and hands the command one validated ``DataSpec`` instead. The step commands
share the options of ``StepFlags`` (``with_options``), which build their ``StepOptions``.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import MISSING, dataclass, fields
from enum import Enum
from typing import Annotated, Any, TypeVar

import typer

from squeeze.core.config import choice_problem
from squeeze.core.errors import ConfigError
from squeeze.core.types import TASK_ALIASES

E = TypeVar("E", bound=Enum)


def choice_parser(
    enum: type[E], name: str, aliases: Mapping[str, str] | None = None
) -> Callable[[Any], E]:
    """Typer's ``parser`` for the choice option ``name``: the member of ``enum`` a value (or an
    alias of one, another tool's name for it) names; anything else is squeeze's one-line usage
    error with the nearest choice, where typer's own check leaks pydantic's "Value error, ..."
    prefix. The option's help still lists ``enum``'s values."""

    def parse(value: Any) -> E:
        if isinstance(value, enum):
            return value
        text = str(value)
        try:
            return enum((aliases or {}).get(text, text))
        except ValueError:
            choices = [str(member.value) for member in enum]
            raise ConfigError(choice_problem(name, text, choices)) from None

    return parse


class TaskChoice(str, Enum):
    """``--task`` values; mirrors :class:`squeeze.core.types.Task` without importing torch."""

    sequence_classification = "sequence-classification"
    causal_lm = "causal-lm"
    masked_lm = "masked-lm"
    base = "base"
    embedding = "embedding"


class FormatChoice(str, Enum):
    csv = "csv"
    tsv = "tsv"
    jsonl = "jsonl"
    parquet = "parquet"


ModelArg = Annotated[
    str, typer.Argument(help="Checkpoint folder (save_pretrained layout) or Hugging Face hub id.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
TaskOpt = Annotated[
    TaskChoice | None,
    typer.Option(
        help="Model head to load; detected from config.json when omitted.",
        parser=choice_parser(TaskChoice, "task", TASK_ALIASES),
    ),
]


class PoolingChoice(str, Enum):
    """``--pooling`` values; mirrors :data:`squeeze.model.pooling.MODES`."""

    mean = "mean"
    cls = "cls"
    max = "max"
    lasttoken = "lasttoken"


PoolingOpt = Annotated[
    PoolingChoice | None,
    typer.Option(
        help="Embedders: how token states become one vector (default: what the "
        "sentence-transformers files say, else mean; lasttoken for decoders).",
        parser=choice_parser(PoolingChoice, "pooling"),
    ),
]
NormalizeOpt = Annotated[
    bool | None,
    typer.Option(
        "--normalize/--no-normalize",
        help="Embedders: L2-normalise the pooled vector (default: as the model's files say).",
    ),
]


def pooling_of(mode: PoolingChoice | None, normalize: bool | None) -> dict[str, Any] | None:
    """The pooling options given (``load``'s ``pooling``); None when none were."""
    given = {"mode": mode.value if mode else None, "normalize": normalize}
    return {k: v for k, v in given.items() if v is not None} or None


TrustOpt = Annotated[
    bool,
    typer.Option(help="Allow the checkpoint's own Python code to run (only for repos you trust)."),
]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")]
OutOpt = Annotated[str, typer.Option("--output", "-o", help="Output folder (must not exist).")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace the output folder if it exists.")]
EvalDataOpt = Annotated[
    str | None,
    typer.Option(help="Held-out data for the metric (default: the test part of --data)."),
]
MaxDropOpt = Annotated[
    float | None,
    typer.Option(help="Fail (exit 1, nothing written) if the metric drops more (points)."),
]


MinFidelityOpt = Annotated[
    float | None,
    typer.Option(
        min=-1.0,
        max=1.0,
        help="Embedders: fail (exit 1, nothing written) if the output's embeddings of the "
        "held-out texts have a mean cosine to the input's below this (e.g. 0.99; needs --data, "
        "not labels).",
    ),
]


class GateOn(str, Enum):
    """``--gate-on`` values; mirrors :data:`squeeze.engine.gate.GATE_MODES`."""

    point = "point"
    upper = "upper"


GATE_ON_HELP = (
    "What --max-accuracy-drop judges: the measured drop (point) or the upper end of its 95% "
    "paired interval (upper: fails only drops the test set shows)."
)
CacheDirOpt = Annotated[
    str | None,
    typer.Option(
        help="Artifact cache (default: $SQUEEZE_CACHE or ~/.cache/squeeze; `squeeze cache info` "
        "shows its size)."
    ),
]


def task_of(choice: TaskChoice | None) -> Any:
    from squeeze.core.types import Task

    return Task(choice.value) if choice is not None else None


def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


@dataclass(frozen=True)
class DataFlags:
    """The dataset options (``with_data_options``); ``spec`` is the ``DataSpec`` they say."""

    data_source: Annotated[
        str,
        typer.Option(
            "--data",
            "-d",
            help="CSV, TSV, JSONL or Parquet file, or hub dataset like glue/sst2:validation.",
        ),
    ]
    split: Annotated[
        str | None,
        typer.Option(help="train, validation or test part of a file (split by content hash)."),
    ] = None
    split_ratios: Annotated[
        str, typer.Option(help="train,validation,test fractions for --split.")
    ] = "0.8,0.1,0.1"
    text_column: Annotated[str | None, typer.Option(help="Text column.")] = None
    text_pair_column: Annotated[
        str | None, typer.Option(help="Second text column (sentence pairs).")
    ] = None
    label_column: Annotated[str | None, typer.Option(help="Label column.")] = None
    label_map: Annotated[
        str | None, typer.Option(help="Numeric scores to labels: 'sign' or 'threshold:X'.")
    ] = None
    no_header: Annotated[
        bool, typer.Option("--no-header", help="The file has no header row; columns are 0, 1, ...")
    ] = False
    data_format: Annotated[
        FormatChoice | None,
        typer.Option(
            "--format",
            help="File format, when the extension does not say.",
            parser=choice_parser(FormatChoice, "data_format"),
        ),
    ] = None
    max_samples: Annotated[
        int | None, typer.Option(min=1, help="Use a seeded random sample of N examples.")
    ] = None

    def spec(self) -> Any:
        """The DataSpec, checked against the file system before any command loads a model."""
        from squeeze.data.spec import DataSpec, check_exists

        spec = DataSpec(
            source=self.data_source, split=self.split,
            split_ratios=_parse_ratios(self.split_ratios), text_column=self.text_column,
            text_pair_column=self.text_pair_column, label_column=self.label_column,
            label_map=self.label_map, header=not self.no_header,
            format=self.data_format.value if self.data_format else None,
            max_samples=self.max_samples,
        )  # fmt: skip
        check_exists(spec)
        return spec


@dataclass(frozen=True)
class StepFlags:
    """The options the step commands share. A command takes them with ``with_options(StepFlags,
    omit=...)`` and receives ``flags: StepFlags``; an omitted option keeps its default here, which
    is also ``StepOptions``' own."""

    eval_data: EvalDataOpt = None
    max_length: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="Truncate inputs to this many tokens (default: 128, or the model's positions "
            "where fewer; one beyond the model's positions is cut to them, with a note).",
        ),
    ] = None
    max_accuracy_drop: MaxDropOpt = None
    gate_on: Annotated[
        GateOn, typer.Option(help=GATE_ON_HELP, parser=choice_parser(GateOn, "gate_on"))
    ] = GateOn.point
    min_fidelity: MinFidelityOpt = None
    device: DeviceOpt = "cpu"
    overwrite: OverwriteOpt = False
    trust_remote_code: TrustOpt = False
    json_output: JsonOpt = False
    quiet: QuietOpt = False

    def step_options(self, data: Any = None, **own: Any) -> Any:
        """The ``StepOptions`` these flags say, with the command's own fields ``own`` (distill
        gives its per-process device and progress)."""
        from squeeze.cli._render import progress_factory
        from squeeze.core.device import resolve_device
        from squeeze.engine.step import StepOptions

        eval_data = optional_data_spec(data, self.eval_data)
        if "device" not in own:
            own["device"] = resolve_device(self.device)
        return StepOptions(**{
            "data": data, "eval_data": eval_data, "max_length": self.max_length,
            "max_accuracy_drop": self.max_accuracy_drop, "gate_on": self.gate_on.value,
            "min_fidelity": self.min_fidelity,
            "overwrite": self.overwrite, "trust_remote_code": self.trust_remote_code,
            "progress": progress_factory(self.quiet), **own,
        })  # fmt: skip


def dataclass_params(cls: type, omit: Collection[str] = ()) -> list[inspect.Parameter]:
    """One option per field of ``cls``, a dataclass whose field types are Typer options: the
    field's default is the option's, a field without one a required option."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return [
        option(f.name, hints[f.name], ... if f.default is MISSING else f.default)
        for f in fields(cls)
        if f.name not in omit
    ]


def with_options(cls: type, *, omit: Collection[str] = ()) -> Any:
    """Add an option per field of the dataclass ``cls`` (but ``omit``) to a command and pass it
    ``flags=cls(those options' values)``."""
    params = dataclass_params(cls, omit)
    return lambda command: inject_options(command, "flags", params, lambda values: cls(**values))


def _parse_ratios(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise ConfigError(f"--split-ratios takes three numbers like 0.8,0.1,0.1, not '{text}'")
    return parts  # type: ignore[return-value]


def inject_options(
    command: Callable[..., Any],
    name: str,
    params: list[inspect.Parameter],
    build: Callable[[dict[str, Any]], Any],
) -> Any:
    """Replace the command's parameter ``name`` by the options ``params``; the command receives
    ``name=build(values of those options)``."""
    signature = inspect.signature(command)
    # Resolve the command's own (possibly postponed) annotations in its module, because Typer
    # would otherwise resolve them against this module's globals.
    hints = typing.get_type_hints(command, include_extras=True)
    own = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in signature.parameters.values()
        if p.name != name
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        values = {p.name: kwargs.pop(p.name) for p in params}
        return command(**{name: build(values)}, **kwargs)

    merged = [*own, *params]
    wrapper.__signature__ = signature.replace(parameters=merged)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in merged}
    del wrapper.__wrapped__  # type: ignore[attr-defined]
    return wrapper


def with_data_options(command: Callable[..., Any] | None = None, *, required: bool = True) -> Any:
    """Add the dataset flags to a command and pass it ``data: DataSpec`` built from them.

    Use as ``@with_data_options``, or ``@with_data_options(required=False)`` for commands where
    data is optional (they then receive ``data=None`` without ``--data``).
    """
    if command is None:
        return lambda f: with_data_options(f, required=required)
    data_params = dataclass_params(DataFlags)
    if not required:
        source = data_params[0]
        (option,) = source.annotation.__metadata__
        data_params[0] = source.replace(annotation=Annotated[str | None, option], default=None)
    return inject_options(
        command,
        "data",
        data_params,
        lambda values: None if values["data_source"] is None else DataFlags(**values).spec(),
    )


def _field_option(f: Any, annotation: Any) -> inspect.Parameter:
    """A Typer option for one config field: its flag, type and help, showing the config's
    default. The option itself defaults to None ("not given"), so the config's own default is
    the only one."""
    from squeeze.core.config import base_type, is_required, show_value

    kind, _ = base_type(annotation)
    declared = f.metadata.get("flag")
    decls = [declared] if declared else []
    help_text = f.metadata.get("help", "")
    if not is_required(f) and f.default not in (None, ()):
        help_text += f"  [default: {show_value(f.default)}]"
    choices = f.metadata.get("choices")
    option_type: Any = list[str] if kind is tuple else kind
    # Choices are shown, not enforced by click: the config checks them, so a bad value gets the
    # same one-line message as in a recipe.
    named = f.metadata.get("metavar") or ("|".join(choices) if choices else None)
    metavar = {"metavar": named} if named else {}
    info = typer.Option(*decls, help=help_text, **metavar)
    return option(f.name, Annotated[option_type | None, info], None)


def config_params(*classes: type) -> list[inspect.Parameter]:
    """One option per field of the config classes (shared fields once), in field order."""
    from squeeze.core.config import field_types, fields_of

    params: dict[str, inspect.Parameter] = {}
    for cls in classes:
        hints = field_types(cls)
        for f in fields_of(cls):
            if f.name not in params:
                params[f.name] = _field_option(f, hints[f.name])
    return list(params.values())


def given_values(values: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave (None = not given), as config values."""
    return {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in values.items()
        if value is not None
    }


def with_fields(*classes: type, name: str = "given") -> Any:
    """Add an option per field of the config classes and pass the command ``name=`` a dict of
    the fields the user gave (for commands that choose the class from another option)."""
    return lambda command: inject_options(command, name, config_params(*classes), given_values)


def with_config(cls: type, *, name: str = "config") -> Any:
    """Add an option per field of ``cls`` and pass the command ``name=`` the built config."""

    def build(values: dict[str, Any]) -> Any:
        from squeeze.core.config import build as build_config

        return build_config(cls, given_values(values))

    return lambda command: inject_options(command, name, config_params(cls), build)


def optional_data_spec(data: Any, source: str | None) -> Any:
    """Another dataset read with the same column options as ``data`` (``--eval-data``)."""
    if source is None:
        return None
    from dataclasses import replace

    from squeeze.data.spec import check_exists

    if data is None:
        raise ConfigError("--eval-data goes with --data")
    spec = replace(data, source=source, split=None, max_samples=None)
    check_exists(spec)
    return spec
