"""Options come from the method configs, and every help page reads whole at 80 columns.

A command and a recipe step take the same parameters: the command's method options are the
config's fields (a field without an option, or an option without a field, fails here), and
every other option of prune, quantize and distill is one that a recipe states elsewhere (its
data section, gates, top-level keys) or that only makes sense on a command line.
"""

from __future__ import annotations

import re
from typing import Any

import click
import pytest
import typer
from typer.testing import CliRunner

from squeeze.cli.main import app
from squeeze.core.config import fields_of
from squeeze.methods.distill.method import DistillConfig
from squeeze.methods.export.method import ExportConfig
from squeeze.methods.prune.magnitude import MagnitudePruneConfig
from squeeze.methods.prune.structured import StructuredPruneConfig
from squeeze.methods.quantize.method import QuantizeConfig
from squeeze.plan.recipe import TOP_KEYS

COMMAND = typer.main.get_command(app)
CONFIGS = {
    "prune": (MagnitudePruneConfig, StructuredPruneConfig),
    "quantize": (QuantizeConfig,),
    "distill": (DistillConfig,),
    "export": (ExportConfig,),
}
# Options a recipe states outside its steps, and where.
RECIPE_KEY = {
    "data_source": "data", "split": "data", "split_ratios": "data", "text_column": "data",
    "text_pair_column": "data", "label_column": "data", "label_map": "data", "no_header": "data",
    "data_format": "data", "max_samples": "data", "eval_data": "eval_data",
    "calibration_data": "calibration_data", "max_length": "max_length", "device": "device",
    "target": "target",
    "max_accuracy_drop": "gates", "gate_on": "gates", "min_fidelity": "gates", "bench": "bench",
}  # fmt: skip
# Options of one command-line run: where to write, how to print, and the run's own lifecycle
# (a recipe step chooses the method; it resumes an interrupted distillation by itself).
COMMAND_LINE_ONLY = {
    "model", "teacher", "output", "overwrite", "trust_remote_code", "json_output", "quiet",
    "method", "resume",
}  # fmt: skip


def _options(name: str) -> dict[str, click.Parameter]:
    return {p.name: p for p in COMMAND.commands[name].params}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_field_is_an_option_and_every_option_a_field_or_a_recipe_key(name):
    fields = {f.name for cls in CONFIGS[name] for f in fields_of(cls)}
    options = set(_options(name))
    assert fields - options == set(), "config fields without a CLI option"
    rest = options - fields - COMMAND_LINE_ONLY
    if name != "export":  # export has no data, gates or recipe keys of its own
        assert rest - set(RECIPE_KEY) == set(), "options a recipe cannot express"
        assert {RECIPE_KEY[o] for o in rest} <= {*TOP_KEYS, "gates", "bench"}
    else:
        assert rest == set()


def test_option_defaults_are_the_configs():
    """The help shows the config's default; the option itself never holds a second one."""
    options = _options("prune")
    assert options["warmup_ratio"].default is None
    assert "[default: 0.1]" in options["warmup_ratio"].help
    assert "[default: 0.0001]" in _options("distill")["lr"].help


def _option_names(command: click.Command) -> list[str]:
    return [flag for p in command.params if isinstance(p, click.Option) for flag in p.opts]


def _commands(group: click.Command, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every command of the app by its path, sub-commands (``cache info``) included."""
    found: dict[tuple[str, ...], Any] = {}
    for name, command in getattr(group, "commands", {}).items():
        if hasattr(command, "commands"):
            found.update(_commands(command, (*path, name)))
        else:
            found[(*path, name)] = command
    return found


COMMANDS = _commands(COMMAND)
# What a wrapped help line ends with when the wrapper split an option name or a command.
_SPLIT = re.compile(r"(--[a-z0-9-]*[a-z0-9]-$)|(\bpip$)")


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_help_guides_at_80_columns(path):
    """Options in panels (the command's own first), values named by what they are, option
    names and commands whole, and an example at the end; no line over 80 columns."""
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.output
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    for flag in _option_names(COMMANDS[path]):
        assert any(flag in line.split() or f"{flag}," in line or f"{flag}/" in line
                   or f"/{flag}" in line for line in lines), flag  # fmt: skip
    assert not [line for line in lines if _SPLIT.search(line.rstrip())]
    usage = lines[0]
    assert "{" not in usage and not re.search(r"<[a-z ]+>", text), usage  # not {model}, <int>
    panels = [line for line in lines if line.endswith("options:") or line == "Arguments:"]
    assert panels[0 if usage.split()[-1] == "[OPTIONS]" else 1] == (
        f"{path[-1].capitalize()} options:"
    ), panels
    assert lines[-2] == "Example:" or lines[-3] == "Example:", lines[-3:]
    assert "squeeze " + " ".join(path) in text.split("Example:")[1]


def test_a_method_s_own_options_lead_and_choices_show():
    text = CliRunner().invoke(app, ["quantize", "--help"], terminal_width=80).output
    own = text.split("Quantize options:")[1].split("\n\n")[0]
    flags = [line.split()[:2] for line in own.splitlines() if line.startswith("  -")]
    assert flags[:2] == [["--dtype", "int8|int4|fp16|bf16"], ["--backend", "NAME"]]
    data = text.split("Data options:")[1]
    assert data.split()[:3] == ["-d,", "--data", "SPEC"]


def test_a_library_error_names_the_flag_on_the_command_line(tiny_classifiers, tmp_path):
    """The config says ``sparsity``; the command line user reads ``--sparsity``."""
    result = CliRunner().invoke(app, [
        "prune", str(tiny_classifiers["bert"]), "-o", str(tmp_path / "x"), "--method",
        "magnitude", "--sparsity", "1.5", "--scope", "row",
    ])  # fmt: skip
    assert result.exit_code == 2
    assert "--sparsity must be in (0, 1), not 1.5" in result.stderr
    assert "--scope must be one of global, layer, not 'row'" in result.stderr


def test_the_step_reference_lists_every_method_field_and_backend():
    from squeeze.engine.registry import backends, methods

    result = CliRunner().invoke(app, ["steps", "--json"])
    assert result.exit_code == 0, result.output
    import json

    listed = json.loads(result.stdout)
    by_step = {s["step"]: [p["name"] for p in s["params"]] for s in listed["steps"]}
    assert by_step == {m.name: [f.name for f in fields_of(m.config)] for m in methods().values()}
    assert set(listed["backends"]) == set(backends())
    sparsity = next(p for p in listed["steps"][0]["params"] if p["name"] == "sparsity")
    assert sparsity["required"] and listed["steps"][0]["positional"] == ["sparsity"]
    table = CliRunner().invoke(app, ["steps", "quantize"])
    assert "calibration_method = minmax (minmax|entropy|percentile)" in table.stdout
    unknown = CliRunner().invoke(app, ["steps", "prune"])
    assert unknown.exit_code == 2 and "unknown step 'prune'; steps are magnitude" in unknown.stderr


def test_the_readme_quickstart_uses_real_commands_and_options():
    """The first screen of README.md is what a newcomer types: every squeeze command there
    exists and takes the options it is given."""
    import shlex
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("## Your own model in five minutes")[1].split("```bash")[1]
    script = block.split("```")[0].replace("\\\n", " ")
    commands = [shlex.split(line, comments=True) for line in script.splitlines()]
    commands = [words for words in commands if words[:1] == ["squeeze"]]
    assert {words[1] for words in commands} >= {"info", "quantize", "bench", "run"}
    for words in commands:
        command = COMMANDS[(words[1],)]
        known = {name for p in command.params for name in (*p.opts, *p.secondary_opts)}
        flags = {w.split("=", 1)[0] for w in words[2:] if w.startswith("-")}
        assert flags <= known, f"squeeze {words[1]}: unknown {sorted(flags - known)}"
    assert readme.index("## Your own model") < readme.index("## Commands")
