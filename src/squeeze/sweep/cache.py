"""Content-addressed artifacts: a step's output is keyed by what went into it, and trusted only
when it is provably what was written.

The key of a step's output hashes its input's key, the step as written (defaults included), the
data it read and squeeze's version; the first input's key hashes the checkpoint's files. So a
re-run after a crash, or with one more variant, finds every finished artifact (variants that
share a prefix share its artifacts), and a changed model or data file never reuses a stale one.

An entry is built in a staging folder, given a manifest of every file's size and SHA-256, and
renamed into place; it is used only when its files still match the manifest, and rebuilt (with a
note) when they do not. Builders take a lock per entry, so jobs sharing one cache never build
the same artifact twice: the second waits for the first and reuses its result.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from squeeze import __version__
from squeeze.faults import stop_if_interrupted

_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$SQUEEZE_CACHE``, else ``$XDG_CACHE_HOME/squeeze``, else ``~/.cache/squeeze``."""
    if os.environ.get("SQUEEZE_CACHE"):
        return Path(os.environ["SQUEEZE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "squeeze"


def _hash_file(path: Path, digest: Any) -> None:
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)


def content_key(path: str | Path) -> str:
    """Hash of a folder's files (names and bytes) or of one file; a hub id hashes its name."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(path)).encode())
            _hash_file(file, digest)
    elif path.is_file():
        _hash_file(path, digest)
    else:
        digest.update(f"hub:{path}".encode())
    return digest.hexdigest()


def data_key(spec: Any) -> str | None:
    """Key of a dataset spec: its options plus the file's content (hub datasets: the name)."""
    if spec is None:
        return None
    fields = json.dumps(asdict(spec), sort_keys=True, default=str)
    source = spec.source.split(":", 1)[0] if not Path(spec.source).exists() else spec.source
    return hashlib.sha256((fields + content_key(source)).encode()).hexdigest()


def step_key(parent: str, step: str, **inputs: Any) -> str:
    """Key of a step's output from its input's key, the step and what else it read."""
    payload = json.dumps(
        {"parent": parent, "step": step, "squeeze": __version__, **inputs},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


MANIFEST = "squeeze-cache.json"
LOCKS = ".locks"
STAGING = ".building"


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    _hash_file(path, digest)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path, key: str) -> None:
    """Record every file's size and SHA-256: what a later use checks before trusting it."""
    files = {
        str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _file_digest(p)}
        for p in _files(folder)
    }
    record = {"key": key, "squeeze": __version__, "created": time.time(), "files": files}
    (folder / MANIFEST).write_text(json.dumps(record, indent=2))


def damage(folder: Path) -> str | None:
    """Why an entry cannot be trusted (no manifest, a file missing, extra, resized or changed),
    or None when every file is as written."""
    try:
        record = json.loads((folder / MANIFEST).read_text())
        expected = record["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return "no readable manifest"
    present = {str(p.relative_to(folder)): p for p in _files(folder)}
    for name, meta in expected.items():
        path = present.pop(name, None)
        if path is None:
            return f"{name} is missing"
        if path.stat().st_size != meta["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, not {meta['bytes']}"
        if _file_digest(path) != meta["sha256"]:
            return f"{name} changed since it was written"
    if present:
        return f"{sorted(present)[0]} was added after it was written"
    return None


@contextlib.contextmanager
def entry_lock(entry: Path) -> Iterator[None]:
    """Hold the entry's lock (shared caches: one builder per artifact, others wait)."""
    locks = entry.parent / LOCKS
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / f"{entry.name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def staging_path(entry: Path) -> Path:
    """Where an entry is built before it is published (stable, so training can resume)."""
    return entry.with_name(entry.name + STAGING)


def publish(staging: Path, entry: Path, key: str) -> None:
    """Seal a built entry with its manifest and move it into place in one rename."""
    stop_if_interrupted()  # a signal swallowed by a __del__ must not publish the entry
    write_manifest(staging, key)
    staging.rename(entry)


@dataclass(frozen=True)
class Entry:
    """One cached artifact, for ``squeeze cache``."""

    path: Path
    bytes: int
    modified: float
    damage: str | None


def entries(cache_dir: Path, *, check: bool = False) -> list[Entry]:
    """The published entries of a cache, oldest first; ``check`` verifies each one's files."""
    if not cache_dir.is_dir():
        return []
    found = []
    for path in sorted(cache_dir.iterdir()):
        if not path.is_dir() or path.name.startswith(".") or path.name.endswith(STAGING):
            continue
        if path.name.endswith(".checkpoint"):
            continue
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        found.append(Entry(path, size, path.stat().st_mtime, damage(path) if check else None))
    return sorted(found, key=lambda e: e.modified)


def leftovers(cache_dir: Path) -> list[Path]:
    """What unfinished builds left: staging folders, training checkpoints, temporary outputs."""
    if not cache_dir.is_dir():
        return []
    return [
        p for p in cache_dir.iterdir()
        if p.is_dir() and (p.name.endswith((STAGING, ".checkpoint")) or ".tmp-" in p.name)
    ]  # fmt: skip


def remove(entry: Path) -> None:
    """Delete an entry under its lock (never while another job builds or reads it)."""
    with entry_lock(entry):
        shutil.rmtree(entry, ignore_errors=True)
        shutil.rmtree(staging_path(entry), ignore_errors=True)
