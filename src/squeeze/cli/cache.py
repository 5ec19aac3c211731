"""``squeeze cache``: see, check and trim the artifact cache that ``run`` and ``sweep`` share."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from squeeze.cli._options import JsonOpt
from squeeze.cli._render import print_json, print_table
from squeeze.errors import ConfigError, GateError
from squeeze.fmt import fmt_bytes

app = typer.Typer(
    help="See, check and trim the artifact cache (default: $SQUEEZE_CACHE, else "
    "$XDG_CACHE_HOME/squeeze or ~/.cache/squeeze).",
    no_args_is_help=True,
)

CacheDirOpt = Annotated[
    str | None,
    typer.Option(help="The cache (default: $SQUEEZE_CACHE, else ~/.cache/squeeze)."),
]


def _folder(cache_dir: str | None) -> Path:
    from squeeze.sweep.cache import default_cache_dir

    return Path(cache_dir) if cache_dir else default_cache_dir()


def _listing(folder: Path, found: list[Any]) -> dict[str, Any]:
    return {
        "cache_dir": str(folder),
        "entries": len(found),
        "bytes": sum(e.bytes for e in found),
        "damaged": [str(e.path) for e in found if e.damage],
    }


@app.command("info")
def info(cache_dir: CacheDirOpt = None, json_output: JsonOpt = False) -> None:
    """Where the cache is, how many artifacts it holds and how big it is."""
    from squeeze.sweep.cache import entries

    folder = _folder(cache_dir)
    found = entries(folder)
    if json_output:
        print_json({**_listing(folder, found), "paths": [str(e.path) for e in found]})
        return
    oldest = time.strftime("%Y-%m-%d", time.localtime(found[0].modified)) if found else "-"
    print_table("squeeze cache", [
        ("location", str(folder)), ("artifacts", str(len(found))),
        ("size", fmt_bytes(sum(e.bytes for e in found))), ("oldest", oldest),
    ])  # fmt: skip


@app.command("verify")
def verify(
    cache_dir: CacheDirOpt = None,
    fix: Annotated[bool, typer.Option(help="Remove damaged artifacts (they are rebuilt).")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Check every artifact's files against its manifest (sizes and SHA-256).

    Exits 1 when an artifact is damaged and --fix was not given. A sweep never uses a damaged
    artifact anyway: it rebuilds it.
    """
    from squeeze.sweep.cache import entries, remove

    folder = _folder(cache_dir)
    found = entries(folder, check=True)
    damaged = [e for e in found if e.damage]
    if fix:
        for entry in damaged:
            remove(entry.path)
    if json_output:
        print_json({**_listing(folder, found), "removed": fix and bool(damaged)})
    else:
        for entry in damaged:
            verb = "removed" if fix else "damaged"
            print(f"{verb}: {entry.path.name}: {entry.damage}")
        print(f"{len(found) - len(damaged)} of {len(found)} artifacts in {folder} are intact")
    if damaged and not fix:
        raise GateError(
            f"{len(damaged)} damaged artifact(s) in {folder}; `squeeze cache verify --fix` "
            "removes them (they are rebuilt when next needed)"
        )


@app.command("prune")
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
    """Trim the cache by age, by total size (oldest first), or both."""
    from squeeze.sweep.cache import entries, remove
    from squeeze.sweep.gates import parse_size

    if older_than is None and max_size is None:
        raise ConfigError("say what to remove: --older-than DAYS and/or --max-size SIZE")
    folder = _folder(cache_dir)
    found = entries(folder)
    doomed = []
    if older_than is not None:
        cutoff = time.time() - older_than * 86400
        doomed = [e for e in found if e.modified < cutoff]
    if max_size is not None:
        limit = parse_size(max_size)
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
    if json_output:
        print_json({"removed": [str(e.path) for e in doomed], "bytes_freed": freed})
    else:
        print(f"removed {len(doomed)} of {len(found)} artifacts from {folder}, {fmt_bytes(freed)}")


@app.command("clear")
def clear(
    cache_dir: CacheDirOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really remove every artifact.")] = False,
) -> None:
    """Remove every artifact (and unfinished builds) from the cache."""
    import shutil

    from squeeze.sweep.cache import entries, leftovers, remove

    folder = _folder(cache_dir)
    if not yes:
        raise ConfigError(f"this removes every artifact in {folder}; pass --yes to do it")
    found = entries(folder)
    for entry in found:
        remove(entry.path)
    for leftover in leftovers(folder):
        shutil.rmtree(leftover, ignore_errors=True)
    print(f"removed {len(found)} artifacts from {folder}")
