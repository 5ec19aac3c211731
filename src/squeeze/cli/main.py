"""The ``squeeze`` app: global options, command registration, and error translation.

A :class:`~squeeze.core.errors.SqueezeError` raised anywhere below becomes one line on stderr and
its documented exit code; ``SQUEEZE_DEBUG=1`` shows the traceback instead. Commands import torch and
transformers inside their bodies, so ``squeeze --help`` stays instant.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import click
import typer

from squeeze.cli import (
    bench,
    cache,
    distill,
    export,
    finetune,
    info,
    prune,
    quantize,
    report,
    steps,
    sweep,
    tune,
)
from squeeze.cli import eval as eval_command
from squeeze.cli._help import EXAMPLES, SqueezeCommand, SqueezeGroupBase
from squeeze.core import __version__
from squeeze.core.errors import SqueezeError

# EX_SOFTWARE (sysexits.h): a bug in squeeze, distinct from 1, which means a gate failed.
INTERNAL_ERROR = 70

# The exceptions click handles itself. typer 0.2x vendors its own click (typer._click), whose
# usage errors derive from TyperException; click proper's are caught too, for other typers.
_CLICK_EXITS = (
    typer.Exit,
    typer.Abort,
    typer.exceptions.TyperException,
    click.exceptions.Exit,
    click.exceptions.Abort,
    click.exceptions.ClickException,
)

# Fields whose option is not ``--field-name`` in every command.
_FLAG_OF = {
    "data": "--data",
    "source": "--data",
    "header": "--no-header",
    "batch_sizes": "--batch",
    "seq_len": "--seq",
}


def flag_namer(command: click.Command | None) -> Any:
    """How a command's user typed each config field: its option's longest flag; a setting
    (``label_map=sign``) as the flag and its value (``--label-map sign``)."""
    flags = dict(_FLAG_OF)
    for param in command.params if command is not None else ():
        # By kind, not class: typer 0.2x's options derive from its vendored click, not click's.
        if param.param_type_name == "option":
            flags[param.name or ""] = max(param.opts, key=len)

    def name(field: str) -> str:
        field, given, value = field.partition("=")
        flag = flags.get(field, "--" + field.replace("_", "-"))
        return f"{flag} {value}" if given else flag

    return name


class _SqueezeGroup(SqueezeGroupBase):
    """Runs commands, turning squeeze's own errors into a message and an exit code."""

    def get_help_option(self, ctx: click.Context) -> Any:
        # typer 0.2x coerces a flag's value through pydantic unless it is already a bool; the
        # group's --help defaults to None, so every `squeeze CMD --help` imported pydantic
        # (~0.15 s of a 0.38 s start-up). A False default is the same flag, coerced for free.
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option

    def invoke(self, ctx: click.Context) -> Any:
        from squeeze.core.faults import Interrupted, fault_within

        try:
            try:
                return super().invoke(ctx)
            except _CLICK_EXITS:
                raise  # --help, usage errors, typer.Exit: click reports them itself
            except SqueezeError:
                raise
            except Exception as error:
                # The OS refused (a full disk, also when a library reports it in its own
                # words): exit 6. Anything else is a bug in squeeze: exit 70, never 1.
                fault = fault_within(error)
                if fault is not None:
                    raise fault from error
                if os.environ.get("SQUEEZE_DEBUG") == "1":
                    raise
                first = (str(error).strip().splitlines() or [""])[0][:300]
                click.echo(
                    f"error: internal error: {type(error).__name__}: {first}; SQUEEZE_DEBUG=1 "
                    "shows the traceback; please report it",
                    err=True,
                )
                ctx.exit(INTERNAL_ERROR)
        except SqueezeError as error:
            if os.environ.get("SQUEEZE_DEBUG") == "1":
                raise
            command = self.get_command(ctx, ctx.invoked_subcommand or "")
            message = " ".join(error.render(flag_namer(command)).split())
            click.echo(f"error: {message}", err=True)
            ctx.exit(error.exit_code)
        except Interrupted as stop:
            name = ctx.invoked_subcommand or "squeeze"
            resume = (
                "; its search journal (OUTPUT.tune) is kept: run it again with --resume"
                if name == "tune"
                else ""
            )
            click.echo(
                f"error: squeeze {name} was interrupted by {stop.name}; its temporary files "
                f"were removed and no output was written{resume}",
                err=True,
            )
            ctx.exit(stop.exit_code)


app = typer.Typer(
    name="squeeze",
    cls=_SqueezeGroup,
    help="Compress trained Hugging Face transformer checkpoints and measure what it cost.",
    epilog="Start with `squeeze info MODEL`, then `squeeze quantize MODEL --data FILE -o OUT`; "
    "`squeeze COMMAND --help` shows a command's options and an example.\n\n"
    "Exit codes: 0 ok, 1 a gate failed, 2 usage error, 3 bad input, 4 unsupported, "
    "5 a step failed validation, 6 the OS refused (disk full, permission denied), 70 an "
    "internal error (a bug: please report it), 128+N stopped by signal N. SQUEEZE_DEBUG=1 "
    "shows tracebacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: it wraps help text and never cuts an option name, at any width (rich's
    # panels cut "--finetune-ste…" at 80 columns), and needs no rich import to print.
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"squeeze {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    allow_pickle: Annotated[
        bool,
        typer.Option(
            "--allow-pickle",
            help="Load pickled weights (pytorch_model.bin) where a checkpoint has no safetensors. "
            "Unsafe: a pickle can run code; only for checkpoints you trust.",
        ),
    ] = False,
) -> None:
    """The options before the command; ``squeeze --help`` shows the app's help and epilog."""
    if allow_pickle:
        from squeeze.model.checkpoint import PICKLE_ENV

        os.environ[PICKLE_ENV] = "1"  # also reaches processes `accelerate launch` starts


# In the order `squeeze --help` lists them; each named as its function (eval_ without the _).
for command in (info.info, eval_command.eval_, finetune.finetune, prune.prune, distill.distill,
                quantize.quantize, export.export, bench.bench, sweep.run, sweep.sweep, tune.tune,
                report.report, steps.steps):  # fmt: skip
    name = command.__name__.rstrip("_")
    app.command(name, cls=SqueezeCommand, epilog=EXAMPLES[name])(command)
app.add_typer(cache.app, name="cache")


def main() -> None:
    """Console-script entry point: CI's SIGTERM and a closed terminal's SIGHUP stop a job as
    cleanly as Ctrl-C does."""
    from squeeze.core.faults import signals_interrupt

    with signals_interrupt():
        app()
