"""Faults from outside squeeze: the OS refusing a file operation, and signals that cancel a job.

CI runners fill disks, mount read-only volumes and cancel jobs with SIGTERM. Each becomes one
line and a documented exit code instead of a traceback: an ``OSError`` becomes an
:class:`~squeeze.core.errors.OSFault` naming the path and what to do (exit 6); SIGINT, SIGTERM and
SIGHUP raise :class:`Interrupted` in the main thread, so every ``with`` block on the way out
(atomic outputs, scratch folders, cache entries being built) removes what it started, and the
CLI exits with 128 + the signal number. A second signal exits at once.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from squeeze.core.errors import OSFault

_WHAT_TO_DO = {
    errno.ENOSPC: "free space there or choose another location",
    errno.EDQUOT: "free space there or choose another location",
    errno.EACCES: "check its permissions or choose another location",
    errno.EPERM: "check its permissions or choose another location",
    errno.EROFS: "it is on a read-only file system; choose another location",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.ENOTDIR: "a file stands where a folder is expected; choose another path",
    errno.EISDIR: "a folder stands where a file is expected; choose another path",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
    errno.EIO: "the device reported an I/O error; check the disk",
}


def os_fault(error: OSError) -> OSFault:
    """One line for an OS refusal: what failed, on which path, and what to do."""
    path = error.filename if error.filename is not None else "a file"
    reason = error.strerror or type(error).__name__
    advice = _WHAT_TO_DO.get(error.errno or -1, "check the path and the disk")
    return OSFault(f"cannot use {path}: {reason} (errno {error.errno}); {advice}")


# How libraries that do their own I/O (safetensors and ONNX Runtime in Rust or C++) say "no
# space left" without raising an OSError: Rust's io::Error debug text, or the C library's words.
_NO_SPACE = ("No space left on device", "StorageFull", "code: 28,", "os error 28")


def fault_within(error: BaseException) -> OSFault | None:
    """The OS refusal behind ``error``, in squeeze's words, or None when there is none: an
    ``OSError`` it is or was raised from, or a library error whose text reports a full disk
    (safetensors raises its own ``SafetensorError`` for ENOSPC)."""
    link: BaseException | None = error
    while link is not None:
        if isinstance(link, OSError):
            return os_fault(link)
        if any(marker in str(link) for marker in _NO_SPACE):
            path = getattr(link, "filename", None)
            return os_fault(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path))
        link = link.__cause__
    return None


class Interrupted(BaseException):
    """A signal cancelled the work (a BaseException, like KeyboardInterrupt, so ``except
    Exception`` handlers never swallow it and every ``with`` block cleans up)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_pending: list[int] = []


def stop_if_interrupted() -> None:
    """Raise :class:`Interrupted` again if a signal came in: long loops call this each step,
    because an exception raised by a signal handler is lost when the signal lands inside a
    ``__del__`` or a garbage-collector callback (Python only prints it)."""
    if _pending:
        raise Interrupted(_pending[0])


HANDLED = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s)


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """While inside, SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted`; a second one exits
    the process at once (without cleanup, as the user asked twice)."""

    def handler(signum: int, frame: Any) -> None:
        if _pending:
            os._exit(128 + signum)
        _pending.append(signum)
        raise Interrupted(signum)

    previous_hook = sys.unraisablehook

    def quiet_unraisable(unraisable: Any) -> None:
        # A signal that lands in a __del__ raises there, and Python prints "Exception ignored
        # in ..." with a traceback; the signal is pending, so the next stop_if_interrupted()
        # raises it again where it can unwind properly. Only Interrupted is silenced.
        if isinstance(unraisable.exc_value, Interrupted):
            return
        previous_hook(unraisable)

    previous = {s: signal.signal(s, handler) for s in HANDLED}
    sys.unraisablehook = quiet_unraisable
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for s, old in previous.items():
            signal.signal(s, old)
        _pending.clear()
