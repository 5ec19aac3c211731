"""``squeeze info``: what a checkpoint is and how big it is."""

from __future__ import annotations

from squeeze.cli._options import JsonOpt, ModelArg, TaskOpt, TrustOpt, task_of
from squeeze.cli._render import print_json, print_notes, print_table
from squeeze.fmt import fmt_bytes, fmt_count


def info(
    model: ModelArg,
    task: TaskOpt = None,
    trust_remote_code: TrustOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Show architecture, task, layer/head/hidden sizes, parameters (total and non-zero), size on
    disk and dtype of a checkpoint."""
    from squeeze.checkpoint import describe, load

    loaded = load(model, task=task_of(task), trust_remote_code=trust_remote_code)
    facts = describe(loaded)
    if json_output:
        print_json(facts)
        return
    shown = {
        "params_total": fmt_count,
        "params_nonzero": lambda n: f"{fmt_count(n)} ({n / facts['params_total']:.1%})",
        "bytes_on_disk": fmt_bytes,
        "labels": ", ".join,
        "inputs": ", ".join,
    }
    rows = [
        (key.replace("_", " "), shown.get(key, str)(value))
        for key, value in facts.items()
        if value is not None and key != "notes"
    ]
    print_table(f"squeeze info: {model}", rows)
    print_notes(facts["notes"])
