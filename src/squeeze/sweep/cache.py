"""Content-addressed artifacts: a step's output is keyed by what went into it.

The key of a step's output hashes its input's key, the step as written (defaults included), the
data it read and squeeze's version; the first input's key hashes the checkpoint's files. So a
re-run after a crash, or with one more variant, finds every finished artifact (variants that
share a prefix share its artifacts), and a changed model or data file never reuses a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from squeeze import __version__

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
