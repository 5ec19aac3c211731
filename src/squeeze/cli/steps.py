"""``squeeze steps``: the recipe step reference, read from the registered method configs.

The same fields make the commands' options, so this list is always what ``squeeze run`` accepts.
"""

from __future__ import annotations

from typing import Annotated

import typer

from squeeze.cli._options import JsonOpt
from squeeze.cli._render import print_json, say


def steps(
    name: Annotated[str | None, typer.Argument(help="One step (magnitude, quantize, ...).")] = None,
    json_output: JsonOpt = False,
) -> None:
    """List the steps a recipe chains, each with its parameters, defaults and meaning.

    A step's parameters are its command's options without the leading -- and with _ for -
    (`--finetune-steps 100` is `finetune_steps=100`); quantization backends are listed with
    the dtypes they produce.
    """
    from squeeze.core.config import field_types, fields_of, is_required, show_value, type_name
    from squeeze.engine.registry import backends, method_named, methods

    chosen = [method_named(name)] if name else list(methods().values())
    reference = []
    for method in chosen:
        hints = field_types(method.config)
        params = []
        for f in fields_of(method.config):
            required = is_required(f)
            choices = f.metadata.get("choices")  # a registry's are read now (a list for JSON)
            params.append({
                "name": f.name, "type": type_name(hints[f.name]), "required": required,
                "default": None if required else f.default,
                "choices": list(choices) if choices else None, "help": f.metadata.get("help", ""),
            })  # fmt: skip
        reference.append({
            "step": method.name, "help": method.help,
            "positional": list(method.config.positional), "params": params,
        })  # fmt: skip
    if json_output:
        print_json({"steps": reference, "backends": {
            b.name: {"dtypes": list(b.dtypes), "default_for": list(b.default_for),
                     "produces": b.produces, "help": b.help}
            for b in backends().values()
        }})  # fmt: skip
        return
    for step in reference:
        bare = f" (bare arguments: {', '.join(step['positional'])})" if step["positional"] else ""
        # Plain text, wrapped at spaces under each entry: help names `squeeze[openvino]`.
        say(f"{step['step']}()  {step['help']}{bare}", style="bold", indent=4)
        for p in step["params"]:
            value = "required" if p["required"] else f"= {show_value(p['default'])}"
            choices = f" ({'|'.join(p['choices'])})" if p["choices"] else ""
            say(f"  {p['name']} {value}{choices}  {p['type']}: {p['help']}", indent=6)
        say("")
    if name is None or name == "quantize":
        say("quantization backends (quantize(DTYPE, BACKEND))", style="bold")
        for b in backends().values():
            default = f"; default for {', '.join(b.default_for)}" if b.default_for else ""
            say(f"  {b.name}: {', '.join(b.dtypes)} -> {b.produces}{default}  {b.help}", indent=6)
