"""Writing outputs safely: refuse to clobber inputs or results, and move a folder into place only
when it is complete, so CI never deploys a partial artifact."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from squeeze.errors import ConfigError, OutputExistsError, Problem
from squeeze.faults import stop_if_interrupted


def _same_or_nested(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_output(
    out: str | os.PathLike[str], *, overwrite: bool, inputs: Iterable[Path | None] = ()
) -> Path:
    """Refuse an output that would clobber an input or an existing result, before any work.

    Raises:
        ConfigError: the output is, holds, or sits inside an input checkpoint.
        OutputExistsError: the output exists and ``overwrite`` is False.
    """
    target = Path(out).expanduser().resolve()
    for source in inputs:
        if source is not None and _same_or_nested(target, Path(source).resolve()):
            raise ConfigError(
                f"output {out} overlaps the input {source}; inputs are never modified, "
                "choose another -o"
            )
    if target.exists() and not overwrite:
        raise OutputExistsError(
            [Problem(f"{out} already exists; pass {{overwrite}} to replace it")]
        )
    _check_writable(target.parent)
    return target


def _check_writable(folder: Path) -> None:
    """Fail now, not after hours of work, where the output could never be written: its nearest
    existing ancestor must be a writable folder.

    Raises:
        OSFault: a file stands where a folder is expected, or the folder is not writable.
    """
    from squeeze.faults import os_fault

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
    out: str | os.PathLike[str], *, overwrite: bool, inputs: Iterable[Path | None] = ()
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
