"""Writing outputs safely: refuse to clobber inputs or results, and move a folder into place only
when it is complete, so CI never deploys a partial artifact."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from squeeze.core.errors import ConfigError, OutputExistsError, Problem
from squeeze.core.faults import stop_if_interrupted

# The mark of a folder squeeze wrote: ``--overwrite`` replaces such a folder (or an empty one)
# and nothing else, so a mistyped ``-o`` can never delete a user's own files.
MARKER = ".squeeze-output"


def _relation(target: Path, source: Path) -> str | None:
    """How an output would clobber an input, in words, or None when they are apart."""
    if target == source:
        return "they are the same path"
    if target in source.parents:
        return "the output holds it"
    if source in target.parents:
        return "the output sits inside it"
    return None


def check_output(
    out: str | os.PathLike[str], *, overwrite: bool, inputs: Iterable[Path | str | None] = ()
) -> Path:
    """The one output guard of every command, run before any work.

    An output may not be, hold or sit inside any input (model, teacher, data files, recipe,
    cache), compared after symlinks are resolved. An existing output is replaced only with
    ``overwrite``, and only when squeeze wrote it (it carries :data:`MARKER`) or it is an empty
    folder: a file or a folder of the user's own is never deleted.

    Raises:
        ConfigError: the output overlaps an input, or ``overwrite`` would replace something
            squeeze did not write.
        OutputExistsError: the output exists and ``overwrite`` is False.
        OSFault: the output's folder cannot be written.
    """
    target = Path(out).expanduser().resolve()
    for source in inputs:
        if source is None:
            continue
        relation = _relation(target, Path(source).expanduser().resolve())
        if relation is not None:
            raise ConfigError(
                f"output {out} overlaps the input {source} ({relation}); inputs are never "
                "modified, choose another -o"
            )
    if target.exists():
        if not overwrite:
            raise OutputExistsError(
                Problem(f"{out} already exists; pass {{overwrite}} to replace it")
            )
        problem = _not_ours(target)
        if problem is not None:
            raise ConfigError(
                Problem(
                    f"{out} {problem}; {{overwrite}} replaces only a folder squeeze wrote "
                    "(or an empty one): remove it yourself or choose another -o"
                )
            )
    _check_writable(target.parent)
    return target


def _not_ours(target: Path) -> str | None:
    """Why ``target`` may not be replaced, or None for a squeeze output or an empty folder."""
    if not target.is_dir():
        return "is a file, not a folder squeeze wrote"
    if (target / MARKER).is_file() or not any(target.iterdir()) or _unmarked_results(target):
        return None
    return f"is a folder squeeze did not write (it has no {MARKER} mark)"


def _unmarked_results(target: Path) -> bool:
    """A run, sweep or tune folder written before outputs carried :data:`MARKER` (what `make
    demo` and `make tune` overwrite on every run): squeeze's results.json beside its report."""
    try:
        results = json.loads((target / "results.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(results, dict)
        and {"baseline", "variants", "machine"} <= results.keys()
        and (target / "report" / "index.html").is_file()
    )


def _check_writable(folder: Path) -> None:
    """Fail now, not after hours of work, where the output could never be written: its nearest
    existing ancestor must be a writable folder.

    Raises:
        OSFault: a file stands where a folder is expected, or the folder is not writable.
    """
    from squeeze.core.faults import os_fault

    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise os_fault(NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing)))
    if not os.access(existing, os.W_OK | os.X_OK):
        code = errno.EROFS if _read_only(existing) else errno.EACCES
        raise os_fault(PermissionError(code, os.strerror(code), str(existing)))


def _read_only(folder: Path) -> bool:
    return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)


@contextlib.contextmanager
def atomic_output(
    out: str | os.PathLike[str], *, overwrite: bool, inputs: Iterable[Path | str | None] = ()
) -> Iterator[Path]:
    """Yield a temporary sibling folder that replaces ``out`` only if the block succeeds.

    A crash or a failed validation leaves any previous ``out`` untouched and no half-written
    folder behind, so CI never deploys a partial artifact.
    """
    target = check_output(out, overwrite=overwrite, inputs=inputs)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; outputs should look like any other folder
    try:
        yield tmp
        stop_if_interrupted()  # a signal swallowed by a __del__ must not publish the output
        (tmp / MARKER).write_text("written by squeeze; --overwrite may replace this folder\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)
