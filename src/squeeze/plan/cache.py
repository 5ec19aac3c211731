"""Content-addressed artifacts: a step's output is keyed by what went into it, and trusted only
when it is provably what was written.

The key of a step's output hashes its input's key, the step as written (defaults included), the
data it read, the versions of squeeze and of the libraries that build artifacts, and the device
it is built on; the first input's key hashes the checkpoint's files. So a re-run after a crash,
or with one more variant, finds every finished artifact (variants that share a prefix share its
artifacts), and a changed model or data file, an upgraded torch or another GPU never reuses a
stale one.

An entry is built in a staging folder, given a manifest of every file's size and SHA-256, and
renamed into place; it is used only when its files still match the manifest, and rebuilt (with a
note) when they do not. Builders take a lock per entry, so jobs sharing one cache never build
the same artifact twice: the second waits for the first and reuses its result.

A cache folder is squeeze's only by squeeze's marks, because ``squeeze cache`` deletes things
and ``--cache-dir``/``$SQUEEZE_CACHE`` may point anywhere (a home folder, by mistake). The root
carries a ``CACHEDIR.TAG`` written by squeeze (the cache-directory tag that backup tools skip)
from the first build on; a root without it is accepted only while everything in it is
squeeze's (a cache written before the tag existed, or an empty folder). Inside, squeeze's are:
the tag, ``.locks``, folders with squeeze's manifest for their name, and folders named as squeeze
names them (``<20 hex digits>-<method>``, its ``.building`` staging, the staging's
``.checkpoint`` and hidden ``.tmp-`` outputs). A key-shaped folder whose manifest is damaged is
still squeeze's: nobody else names a folder that way, and it sits in a root squeeze marked or
that holds nothing but squeeze's. Anything else is listed as not squeeze's and never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from squeeze.core import __version__
from squeeze.core.config import literal
from squeeze.core.errors import ConfigError, Problem
from squeeze.core.faults import stop_if_interrupted

_CHUNK = 1 << 20

# The libraries whose code writes an artifact's bytes (export, quantizers, training); an upgrade
# of any of them may change what a step builds. Optional ones count only where installed.
BUILDERS = (
    "torch", "transformers", "accelerate", "onnx", "onnxruntime", "onnxruntime-gpu",
    "openvino", "nncf", "torchao", "bitsandbytes",
)  # fmt: skip


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


@functools.cache
def library_versions() -> dict[str, str]:
    """squeeze's version and those of the installed :data:`BUILDERS`, read once per process
    (what is imported is what builds, even if pip changes the environment meanwhile)."""
    versions = {"squeeze": __version__}
    for name in BUILDERS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def step_key(parent: str, step: str, *, device: str, **inputs: Any) -> str:
    """Key of a step's output from its input's key, the step, what else it read, the library
    versions that build it and ``device``, the hardware it is built on."""
    payload = json.dumps(
        {"parent": parent, "step": step, "libraries": library_versions(), "device": device,
         **inputs},
        sort_keys=True,
        default=str,
    )  # fmt: skip
    return hashlib.sha256(payload.encode()).hexdigest()


MANIFEST = "squeeze-cache.json"
LOCKS = ".locks"
# Measured choices (the default quantization backend's ranking per machine and model shape):
# ``squeeze.measure.decisions``.
DECISIONS = ".decisions"
STAGING = ".building"
ROOT_TAG = "CACHEDIR.TAG"
# The cache-directory tagging convention (https://bford.info/cachedir/): backup tools skip the
# folder. The second line is what makes the tag squeeze's rather than another tool's.
_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"
_TAG_OWNER = "# This file is a cache directory tag created by squeeze"
_TAG = (
    f"{_SIGNATURE}\n{_TAG_OWNER}: this folder is its artifact cache.\n"
    "# `squeeze cache verify|prune|clear` touch only squeeze's entries here.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)
_ENTRY_NAME = r"[0-9a-f]{20}-[A-Za-z_][\w-]*"  # f"{key[:20]}-{method}", as run_chain names it
_ENTRY = re.compile(_ENTRY_NAME)
_LEFTOVER = re.compile(
    rf"(?:{_ENTRY_NAME}{re.escape(STAGING)}(?:\.checkpoint)?"
    rf"|\.{_ENTRY_NAME}{re.escape(STAGING)}(?:\.checkpoint)?\.tmp-.+)"
)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    _hash_file(path, digest)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def _manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, or None when it has none that squeeze could have written."""
    try:
        record = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and isinstance(record.get("key"), str)
    return record if ok and isinstance(record.get("files"), dict) else None


def damage(folder: Path) -> str | None:
    """Why an entry cannot be trusted (no manifest, a file missing, extra, resized or changed),
    or None when every file is as written."""
    record = _manifest(folder)
    if record is None:
        return "no readable manifest"
    expected = record["files"]
    present = {str(p.relative_to(folder)): p for p in _files(folder)}
    for name, meta in expected.items():
        path = present.pop(name, None)
        try:
            size, digest = meta["bytes"], meta["sha256"]
        except (KeyError, TypeError):
            return f"the manifest's record of {name} is unreadable"
        if path is None:
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, not {size}"
        if _file_digest(path) != digest:
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
    """Seal a built entry with its manifest (every file's size and SHA-256: what a later use
    checks before trusting it) and move it into place in one rename."""
    stop_if_interrupted()  # a signal swallowed by a __del__ must not publish the entry
    files = {
        str(p.relative_to(staging)): {"bytes": p.stat().st_size, "sha256": _file_digest(p)}
        for p in _files(staging)
    }
    record = {"key": key, "squeeze": __version__, "created": time.time(), "files": files}
    (staging / MANIFEST).write_text(json.dumps(record, indent=2))
    staging.rename(entry)


@dataclass(frozen=True)
class Entry:
    """One cached artifact, for ``squeeze cache``."""

    path: Path
    bytes: int
    modified: float
    damage: str | None


@dataclass(frozen=True)
class Contents:
    """What a cache folder holds, by whose it is: only ``entries`` and ``leftovers`` may ever be
    removed."""

    entries: list[Entry]  # published artifacts, oldest first
    leftovers: list[Path]  # what unfinished builds left: staging, checkpoints, temporary outputs
    foreign: list[Path]  # not squeeze's: listed, never touched


def _tagged(cache_dir: Path) -> bool:
    try:
        lines = (cache_dir / ROOT_TAG).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    return len(lines) > 1 and lines[0] == _SIGNATURE and lines[1].startswith(_TAG_OWNER)


def _whose(path: Path) -> str:
    """Whose ``path`` is by squeeze's marks: an "entry", a "leftover" of a build, "squeeze"
    (the tag, the locks) or "foreign"."""
    name = path.name
    if path.is_symlink():
        return "foreign"  # squeeze never links; deleting through a link would reach elsewhere
    if path.is_file():
        return "squeeze" if name == ROOT_TAG and _tagged(path.parent) else "foreign"
    if not path.is_dir():
        return "foreign"
    if name in (LOCKS, DECISIONS):
        return "squeeze"
    if _LEFTOVER.fullmatch(name):
        return "leftover"
    if _ENTRY.fullmatch(name):
        return "entry"
    record = _manifest(path)
    # A folder published under another name (the library's publish()) keeps its key's prefix.
    return "entry" if record is not None and name.startswith(record["key"][:20]) else "foreign"


def _sort(cache_dir: Path) -> dict[str, list[Path]]:
    """The folder's contents by :func:`_whose`; refuses a folder that is not squeeze's cache
    before anything in it is touched.

    Raises:
        ConfigError: ``cache_dir`` is a file, or a folder that is not a squeeze cache.
    """
    found: dict[str, list[Path]] = {"entry": [], "leftover": [], "squeeze": [], "foreign": []}
    if not cache_dir.exists():
        return found
    if not cache_dir.is_dir():
        where = literal(str(cache_dir))
        text = f"{{cache_dir}} {where} is a file, not a squeeze cache; point {{cache_dir}} "
        raise ConfigError(Problem(text + "(or $SQUEEZE_CACHE) at a folder"))
    for path in sorted(cache_dir.iterdir()):
        found[_whose(path)].append(path)
    foreign = found["foreign"]
    if foreign and not _tagged(cache_dir):
        shown = literal(", ".join(repr(p.name) for p in foreign[:3]))
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise ConfigError(
            Problem(
                f"{{cache_dir}} {literal(str(cache_dir))} is not a squeeze cache: it has no "
                f"squeeze {ROOT_TAG} and holds {shown}{more}, which squeeze did not write; "
                "squeeze leaves it alone: point {cache_dir} (or $SQUEEZE_CACHE) at squeeze's "
                "cache or at a new folder"
            )
        )
    return found


def scan(cache_dir: Path, *, check: bool = False) -> Contents:
    """Sort a cache's contents by whose they are; ``check`` verifies each entry's files.

    A missing or empty folder holds nothing; a folder that is not squeeze's cache is refused.

    Raises:
        ConfigError: ``cache_dir`` is a file, or a folder that is not a squeeze cache.
    """
    found = _sort(cache_dir)
    entries = [
        Entry(path, _size(path), path.stat().st_mtime, damage(path) if check else None)
        for path in found["entry"]
    ]
    return Contents(sorted(entries, key=lambda e: e.modified), found["leftover"], found["foreign"])


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def claim(cache_dir: Path) -> None:
    """Make ``cache_dir`` squeeze's cache before the first entry goes in: create it, refuse a
    folder that is someone else's, and tag it (adopting a cache written before the tag existed).

    Raises:
        ConfigError: ``cache_dir`` is a file, or a folder that is not a squeeze cache.
    """
    if _tagged(cache_dir):
        return
    _sort(cache_dir)  # refuses before anything is written
    locks = cache_dir / LOCKS
    locks.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed, so a job starting at the same moment never reads half a tag.
    tmp = locks / f"{ROOT_TAG}.{os.getpid()}"
    tmp.write_text(_TAG)
    tmp.replace(cache_dir / ROOT_TAG)


def decisions_in(cache_dir: Path | None = None) -> Path:
    """Where measured choices are remembered: ``.decisions`` in the cache (the default one
    unless given), which is claimed first.

    Raises:
        ConfigError: ``cache_dir`` is a file, or a folder that is not a squeeze cache.
    """
    root = cache_dir if cache_dir is not None else default_cache_dir()
    claim(root)
    return root / DECISIONS


def remove(entry: Path) -> None:
    """Delete an entry (and its staging folder, when squeeze named both) under its lock, never
    while another job builds or reads it."""
    with entry_lock(entry):
        shutil.rmtree(entry, ignore_errors=True)
        if _ENTRY.fullmatch(entry.name):
            shutil.rmtree(staging_path(entry), ignore_errors=True)
