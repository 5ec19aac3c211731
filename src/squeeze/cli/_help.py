"""Help pages that guide: options in panels, readable metavars, whole option names, an example.

Typer's plain help (squeeze keeps it: rich's panels cut option names at 80 columns) lists every
option in one block in declaration order, shows ``<str>`` for a value, ``{model}`` in the usage
line, and wraps prose at hyphens, so "--max-accuracy-drop" broke into "--max-" and
"accuracy-drop". This module gives every squeeze command a command class that:

- groups options into panels, the command's own first (what it does, e.g. ``--dtype`` and
  ``--backend``), then model, data, gate, output and runtime options;
- names a value by what it is (``MODEL``, ``N``, ``SPEC``, ``int8|int4|fp16|bf16``);
- wraps text only at spaces, so option names and commands stay whole;
- ends with one example (``EXAMPLES``), kept as written (no re-wrapping).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any, ClassVar

from typer._click import Context
from typer._click.formatting import HelpFormatter, iter_rows, measure_table, term_len
from typer.core import TyperCommand, TyperGroup

from squeeze.cli._render import wrap_lines

# Options shared by several commands, by panel; any other option is the command's own.
_SHARED_PANELS: dict[str, tuple[str, ...]] = {
    "Model": ("task", "trust_remote_code", "pooling", "normalize", "max_length"),
    "Data": (
        "data_source", "split", "split_ratios", "text_column", "text_pair_column",
        "label_column", "label_map", "no_header", "data_format", "max_samples", "eval_data",
        "max_eval_samples", "calibration_data",
    ),
    "Gate": ("max_accuracy_drop", "gate_on", "min_fidelity", "min_speedup", "max_size", "select"),
    "Output": ("output", "overwrite", "resume", "cache_dir", "json_output", "quiet"),
    "Runtime": ("device",),
    "Cluster": ("executor", "ray_address", "workers", "cpus_per_candidate", "gpus_per_candidate",
                "timing_resource"),
}  # fmt: skip
PANEL_OF = {name: panel for panel, names in _SHARED_PANELS.items() for name in names}
PANEL_ORDER = ("Model", "Data", "Gate", "Output", "Runtime", "Cluster")

# Options that choose what a command does: first in its own panel.
_LEADING = ("method", "dtype", "backend", "student")

# Values named by what they are, where the option's name says it (types say too little: a str).
_METAVAR_OF = {
    "output": "DIR", "cache_dir": "DIR", "data_source": "SPEC", "eval_data": "SPEC",
    "calibration_data": "SPEC", "split": "train|validation|test", "split_ratios": "A,B,C",
    "text_column": "NAME", "text_pair_column": "NAME", "label_column": "NAME",
    "label_map": "sign|threshold:X", "device": "cpu|cuda|cuda:N", "reference": "MODEL",
    "model": "MODEL", "include": "PATTERN", "exclude": "PATTERN", "older_than": "DAYS",
    "max_size": "SIZE", "fingerprint_file": "FILE", "ray_address": "ADDR",
}  # fmt: skip
_METAVAR_OF_TYPE = {int: "N", float: "X", str: "TEXT"}

# One example per command, as a user would type it (each line within 76 columns).
EXAMPLES = {
    "info": "squeeze info ./my-model",
    "eval": "squeeze eval ./my-model --data reviews.csv --split test",
    "finetune": "squeeze finetune ./encoder --data reviews.csv -o ./classifier --epochs 3",
    "prune": "squeeze prune ./my-model --method structured --heads 0.3 --ffn 0.5 \\\n"
    "    --data reviews.csv --max-accuracy-drop 1.0 -o ./pruned",
    "distill": "squeeze distill ./my-model --student-layers 3 --data reviews.csv \\\n"
    "    -o ./student",
    "quantize": "squeeze quantize ./my-model --data reviews.csv --max-accuracy-drop 1.0 \\\n"
    "    -o ./my-model-int8",
    "export": "squeeze export ./my-model -o ./my-model-onnx",
    "bench": "squeeze bench ./my-model ./my-model-int8 --seq 128",
    "run": "squeeze run examples/demo-recipe.yaml -o ./results",
    "sweep": "squeeze sweep ./my-model --data reviews.csv --sparsity 0.3,0.5 \\\n"
    "    --dtype int8 -o ./sweep",
    "tune": "squeeze tune ./my-model --data reviews.csv --max-accuracy-drop 1.0 \\\n    -o ./tuned",
    "report": "squeeze report ./results/results.json -o ./report",
    "steps": "squeeze steps quantize",
    "cache info": "squeeze cache info",
    "cache verify": "squeeze cache verify --fix",
    "cache prune": "squeeze cache prune --older-than 30 --max-size 20GB",
    "cache clear": "squeeze cache clear --yes",
}


def wrap(text: str, width: int, indent: str = "") -> str:
    """Re-flow ``text`` at spaces only (never inside "--max-accuracy-drop" or a command),
    paragraph by paragraph; a paragraph after a line holding only ``\\b`` keeps its lines."""
    out = []
    for paragraph in textwrap.dedent(text).split("\n\n"):
        lines = paragraph.splitlines()
        if lines and lines[0].strip() == "\b":
            out.append("\n".join(indent + line for line in lines[1:]))
        elif lines:
            flat = " ".join(line.strip() for line in lines)
            out.append("\n".join(wrap_lines(flat, width, indent, indent)))
    return "\n\n".join(out)


class SqueezeFormatter(HelpFormatter):
    """click's formatter, wrapping with :func:`wrap` and indenting every wrapped line."""

    def write_text(self, text: str) -> None:
        self.write(wrap(text, self.width, " " * self.current_indent) + "\n")

    def write_dl(
        self,
        rows: Sequence[tuple[str, str]],
        col_max: int = 30,
        col_spacing: int = 2,
        col_min: int = 0,
    ) -> None:
        rows = list(rows)
        first_col = max(min(measure_table(rows)[0], col_max), col_min) + col_spacing
        pad = " " * (first_col + self.current_indent)
        for first, second in iter_rows(rows, 2):
            self.write(" " * self.current_indent + first)
            if not second:
                self.write("\n")
                continue
            if term_len(first) <= first_col - col_spacing:
                self.write(" " * (first_col - term_len(first)))
            else:
                self.write("\n" + pad)
            lines = wrap(second, self.width - first_col - self.current_indent).splitlines()
            self.write(("\n" + pad).join(lines) + "\n")


class SqueezeContext(Context):
    formatter_class = SqueezeFormatter


def metavar(param: Any) -> str | None:
    """What a value of ``param`` is, for the help page; None where it takes none (a flag)."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    if param.metavar is not None:
        return str(param.metavar)
    if param.name in _METAVAR_OF:
        return _METAVAR_OF[param.name]
    desc = param.type_descriptor
    if desc.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
    if param.param_type_name == "argument":
        return str(param.name).upper()
    if desc.is_list:  # squeeze's list options take comma-separated values
        return "X,Y,..."
    return _METAVAR_OF_TYPE.get(desc.annotation, "VALUE")


class SqueezeCommand(TyperCommand):
    """A command whose help groups its options in panels and ends with an example."""

    context_class = SqueezeContext
    panel_of: ClassVar[dict[str, str]] = PANEL_OF  # the shared panel of each shared option

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            named = metavar(param)
            if named is not None:
                param.metavar = named

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = ["[OPTIONS]"]
        for param in self.params:
            if param.param_type_name == "argument":
                name = param.metavar + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        own = f"{(self.name or '').capitalize()} options"
        panels: dict[str, list[tuple[int, tuple[str, str]]]] = {}
        for index, param in enumerate(self.get_params(ctx)):
            record = _record(param, ctx)
            if record is None:
                continue
            panel = _panel(param, own, self.panel_of)
            if panel in _SHARED_PANELS:
                rank = _SHARED_PANELS[panel].index(param.name)
            else:  # the command's own: what chooses the method first, --help last
                rank = index - 1000 * (param.name in _LEADING) + 1000 * (param.name == "help")
            panels.setdefault(panel, []).append((rank, record))
        # One first column for every panel, so that the help reads as one list.
        column = min(max(term_len(r[0]) for rows in panels.values() for _, r in rows), 30)
        for panel in ("Arguments", own, *PANEL_ORDER):
            if panel in panels:
                with formatter.section(panel + " options" * (panel in PANEL_ORDER)):
                    rows = [record for _, record in sorted(panels[panel])]
                    formatter.write_dl(rows, col_max=column, col_min=column)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        if self.epilog:
            with formatter.section("Example"):
                formatter.write_text("\b\n" + self.epilog)


def _panel(param: Any, own: str, panel_of: dict[str, str]) -> str:
    if param.param_type_name == "argument":
        return "Arguments"
    return panel_of.get(param.name, own)


def _record(param: Any, ctx: Any) -> tuple[str, str] | None:
    """An option's help line as click writes it; an argument's as its metavar and help (Typer
    would add its type, ``MODEL <str>``)."""
    if param.param_type_name != "argument":
        return param.get_help_record(ctx)
    required = "  [required]" if param.required else ""
    return param.metavar, (getattr(param, "help", None) or "") + required


class CacheCommand(SqueezeCommand):
    """A ``squeeze cache`` command: its ``--max-size`` trims the cache, it gates nothing."""

    panel_of: ClassVar[dict[str, str]] = {"cache_dir": "Output", "json_output": "Output"}


class SqueezeGroupBase(TyperGroup):
    """A group whose help uses the same formatter (the app, ``squeeze cache``) and lists each
    command with its help's first sentence, wrapped, rather than cut at 45 characters."""

    context_class = SqueezeContext

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, first_sentence(command.help or "")))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def first_sentence(text: str) -> str:
    """The first sentence of a help text, on one line."""
    flat = " ".join(text.split("\n\n")[0].split())
    end = flat.find(". ")
    return flat if end < 0 else flat[: end + 1]
