"""``squeeze info``: what a checkpoint is and how big it is.

Facts come from the files (config.json, safetensors headers, squeeze's side files) without
building the model, so info is quick on any size and any architecture. Hub ids and folders
with pickled weights only are loaded as before. ``--spec`` builds the model skeleton on the
meta device (no weights, no memory) to draft an ArchSpec for squeeze's structure steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from squeeze.cli._options import JsonOpt, ModelArg, TaskOpt, TrustOpt, task_of
from squeeze.cli._render import print_json, print_notes, print_table
from squeeze.core.fmt import fmt_bytes, fmt_count

SpecOpt = Annotated[
    bool,
    typer.Option(
        "--spec",
        help="Also draft an ArchSpec (structured pruning's map of heads, FFN and layers) from "
        "the module tree, and compare it with squeeze's own spec for the family.",
    ),
]


def info(
    model: ModelArg,
    task: TaskOpt = None,
    trust_remote_code: TrustOpt = False,
    json_output: JsonOpt = False,
    spec: SpecOpt = False,
) -> None:
    """Show architecture, task, layer/head/hidden sizes, parameters (total and non-zero), size on
    disk and dtype of a checkpoint."""
    from squeeze.artifact import Artifact

    facts = Artifact.of(model).facts(task=task_of(task), trust_remote_code=trust_remote_code)
    if facts is None:  # a hub id or pickled weights: only loading can tell
        from squeeze.model.checkpoint import load
        from squeeze.model.info import describe

        facts = describe(load(model, task=task_of(task), trust_remote_code=trust_remote_code))
    if spec:
        facts["spec"] = spec_facts(facts.get("path") or model, trust_remote_code)
    if json_output:
        print_json(facts)
        return
    print_table(f"squeeze info: {model}", _rows(facts))
    print_notes(facts["notes"])
    if spec:
        _print_spec(facts["spec"])


def _rows(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """The table: every fact that has a value, the weights' dtype only where it says more."""
    total = facts["params_total"]
    shown = {
        "params_total": fmt_count,
        "params_nonzero": lambda n: f"{fmt_count(n)} ({n / total:.1%})" if total else str(n),
        "bytes_on_disk": fmt_bytes,
        "labels": ", ".join,
        "inputs": ", ".join,
    }
    hidden = {"notes", "spec"}
    if facts.get("weights_dtype") == facts.get("dtype"):
        hidden.add("weights_dtype")
    return [
        (key.replace("_", " "), shown.get(key, str)(value))
        for key, value in facts.items()
        if value is not None and key not in hidden
    ]


def spec_facts(source: str, trust_remote_code: bool) -> dict[str, Any]:
    """A drafted ArchSpec for the checkpoint, from its skeleton on the meta device.

    Returns the proposal as code, the reviewer's doubts, and where the family has a spec, how
    the draft differs from it; ``error`` says why discovery found nothing.
    """
    import torch
    import transformers

    from squeeze.artifact import Artifact
    from squeeze.model.arch import find_spec
    from squeeze.model.checkpoint import quiet_quantizer_imports, quiet_transformers, read_config
    from squeeze.model.discover import check_proposal, propose_spec

    quiet_transformers()
    # A checkpoint's config, or the one an export keeps beside its graph.
    artifact = Artifact.of(source) if Path(source).exists() else Artifact(source)
    config = read_config(artifact.export or source, trust_remote_code=trust_remote_code)
    with torch.device("meta"), quiet_quantizer_imports():
        skeleton = transformers.AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    known = find_spec(config)
    result: dict[str, Any] = {"family_spec": known.family if known is not None else None}
    try:
        proposal = propose_spec(skeleton, config)
    except ValueError as e:
        return {**result, "error": str(e)}
    differences = check_proposal(proposal, known) if known is not None else None
    return {
        **result,
        "code": proposal.as_code(),
        "values": proposal.values,
        "doubts": proposal.doubts,
        "differences": differences,
    }


def _print_spec(found: dict[str, Any]) -> None:
    """The draft as code to paste, its doubts, and how it compares with the family's spec."""
    lines = []
    if "error" in found:
        lines.append(f"spec discovery found nothing to propose: {found['error']}")
    else:
        lines += [
            "proposed spec (review it before adding it to squeeze/model/arch.py):",
            found["code"],
        ]
        lines += [f"  check: {doubt}" for doubt in found["doubts"]]
        if found["family_spec"] is not None and found["differences"]:
            lines.append(f"differences from squeeze's {found['family_spec']} spec:")
            lines += [f"  {line}" for line in found["differences"]]
        elif found["family_spec"] is not None:
            lines.append(f"discovery agrees with squeeze's {found['family_spec']} spec")
    typer.echo("\n".join(lines))
