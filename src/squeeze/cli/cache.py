"""``squeeze cache``: see, check and trim the artifact cache that ``run`` and ``sweep`` share.

Every command here touches only what squeeze's marks say is its own
(:mod:`squeeze.plan.cache`); anything else in the folder is listed as not a squeeze entry and
left alone, and a folder that is not a squeeze cache at all is refused before anything is read.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from squeeze.cli._help import EXAMPLES, CacheCommand, SqueezeGroupBase
from squeeze.cli._options import JsonOpt
from squeeze.cli._render import print_json, print_table
from squeeze.core.errors import ConfigError, GateError
from squeeze.core.fmt import fmt_bytes

if TYPE_CHECKING:
    from squeeze.plan.cache import Contents

app = typer.Typer(
    help="See, check and trim the artifact cache (default: $SQUEEZE_CACHE, else "
    "$XDG_CACHE_HOME/squeeze or ~/.cache/squeeze). Only squeeze's entries are ever removed.",
    no_args_is_help=True,
    cls=SqueezeGroupBase,
    rich_markup_mode=None,
)

CacheDirOpt = Annotated[
    str | None,
    typer.Option(help="The cache (default: $SQUEEZE_CACHE, else ~/.cache/squeeze)."),
]

NOT_SQUEEZE = "not a squeeze entry"


def _where(cache_dir: str | None) -> Path:
    from squeeze.plan.cache import default_cache_dir

    return Path(cache_dir) if cache_dir else default_cache_dir()


def _open(cache_dir: str | None, *, check: bool = False) -> tuple[Path, Contents]:
    from squeeze.plan.cache import scan

    folder = _where(cache_dir)
    return folder, scan(folder, check=check)


def _listing(folder: Path, contents: Contents) -> dict[str, Any]:
    found = contents.entries
    return {
        "cache_dir": str(folder),
        "entries": len(found),
        "bytes": sum(e.bytes for e in found),
        "damaged": [str(e.path) for e in found if e.damage],
        "not_squeeze_entries": [str(p) for p in contents.foreign],
    }


def _outcome(contents: Contents, json_output: bool, data: dict[str, Any], line: str) -> None:
    """What a command did: JSON (``data`` and what is not squeeze's), or what it left alone and
    ``line``."""
    if json_output:
        print_json({**data, "not_squeeze_entries": [str(p) for p in contents.foreign]})
        return
    for path in contents.foreign:
        print(f"left alone: {path.name}: {NOT_SQUEEZE}")
    print(line)


@app.command("info", cls=CacheCommand, epilog=EXAMPLES["cache info"])
def info(cache_dir: CacheDirOpt = None, json_output: JsonOpt = False) -> None:
    """Where the cache is, how many artifacts it holds and how big it is."""
    folder, contents = _open(cache_dir)
    found = contents.entries
    if json_output:
        print_json({**_listing(folder, contents), "paths": [str(e.path) for e in found]})
        return
    oldest = time.strftime("%Y-%m-%d", time.localtime(found[0].modified)) if found else "-"
    rows = [
        ("location", str(folder)), ("artifacts", str(len(found))),
        ("size", fmt_bytes(sum(e.bytes for e in found))), ("oldest", oldest),
    ]  # fmt: skip
    rows += [(NOT_SQUEEZE, f"{p.name} (left alone)") for p in contents.foreign]
    print_table("squeeze cache", rows)


@app.command("verify", cls=CacheCommand, epilog=EXAMPLES["cache verify"])
def verify(
    cache_dir: CacheDirOpt = None,
    fix: Annotated[bool, typer.Option(help="Remove damaged artifacts (they are rebuilt).")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Check every artifact's files against its manifest (sizes and SHA-256).

    Exits 1 when an artifact is damaged and --fix was not given. A sweep never uses a damaged
    artifact anyway: it rebuilds it.
    """
    from squeeze.plan.cache import remove

    folder, contents = _open(cache_dir, check=True)
    found = contents.entries
    damaged = [e for e in found if e.damage]
    if fix:
        for entry in damaged:
            remove(entry.path)
    if not json_output:  # each damaged artifact, before the summary
        for entry in damaged:
            print(f"{'removed' if fix else 'damaged'}: {entry.path.name}: {entry.damage}")
    intact = f"{len(found) - len(damaged)} of {len(found)} artifacts in {folder} are intact"
    checked = {**_listing(folder, contents), "removed": fix and bool(damaged)}
    _outcome(contents, json_output, checked, intact)
    if damaged and not fix:
        raise GateError(
            f"{len(damaged)} damaged artifact(s) in {folder}; `squeeze cache verify --fix` "
            "removes them (they are rebuilt when next needed)"
        )


@app.command("prune", cls=CacheCommand, epilog=EXAMPLES["cache prune"])
def prune(
    cache_dir: CacheDirOpt = None,
    older_than: Annotated[
        float | None, typer.Option(min=0, help="Remove artifacts unused for this many days.")
    ] = None,
    max_size: Annotated[
        str | None, typer.Option(help="Remove the oldest artifacts until the cache fits, e.g. 5GB.")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Trim the cache by age, by total size of squeeze's artifacts (oldest first), or both."""
    from squeeze.engine.gates import parse_size
    from squeeze.plan.cache import remove

    if older_than is None and max_size is None:
        raise ConfigError("say what to remove: --older-than DAYS and/or --max-size SIZE")
    limit = parse_size(max_size) if max_size is not None else None
    folder, contents = _open(cache_dir)
    found = contents.entries
    doomed = []
    if older_than is not None:
        cutoff = time.time() - older_than * 86400
        doomed = [e for e in found if e.modified < cutoff]
    if limit is not None:
        kept = [e for e in found if e not in doomed]
        total = sum(e.bytes for e in kept)
        for entry in kept:  # oldest first
            if total <= limit:
                break
            doomed.append(entry)
            total -= entry.bytes
    for entry in doomed:
        remove(entry.path)
    freed = sum(e.bytes for e in doomed)
    removed = {"removed": [str(e.path) for e in doomed], "bytes_freed": freed}
    line = f"removed {len(doomed)} of {len(found)} artifacts from {folder}, {fmt_bytes(freed)}"
    _outcome(contents, json_output, removed, line)


@app.command("clear", cls=CacheCommand, epilog=EXAMPLES["cache clear"])
def clear(
    cache_dir: CacheDirOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really remove every artifact.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Remove every artifact (and unfinished builds) from the cache; nothing else."""
    import shutil

    from squeeze.plan.cache import remove

    if not yes:
        folder = _where(cache_dir)
        raise ConfigError(f"this removes every artifact in {folder}; pass --yes to do it")
    folder, contents = _open(cache_dir)
    for entry in contents.entries:
        remove(entry.path)
    for leftover in contents.leftovers:
        shutil.rmtree(leftover, ignore_errors=True)
    removed = {"cache_dir": str(folder), "removed": [str(e.path) for e in contents.entries]}
    line = f"removed {len(contents.entries)} artifacts from {folder}"
    _outcome(contents, json_output, removed, line)
