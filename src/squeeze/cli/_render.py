"""Terminal output: tables and JSON on stdout, progress and errors on stderr.

Results go to stdout (so ``--json`` output can be piped); everything about the work in progress
goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

from squeeze.core.types import ProgressFactory, ProgressTask, SilentTask


class _LazyConsole:
    """A rich Console made on first use: importing rich.console costs start-up time that
    ``squeeze --help`` should not pay."""

    def __init__(self, **options: Any) -> None:
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_console", None)

    def _real(self) -> Any:
        if self._console is None:
            from rich.console import Console

            object.__setattr__(self, "_console", Console(highlight=False, **self._options))
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        # ``console.width = ...`` (wide tables in logs) must reach the real console.
        setattr(self._real(), name, value)


stdout: Any = _LazyConsole()
stderr: Any = _LazyConsole(stderr=True)


def print_json(data: Any) -> None:
    """Plain JSON on stdout, one document, no colour or wrapping."""
    print(json.dumps(data, indent=2, default=str))


def print_table(title: str, rows: Sequence[tuple[str, str]]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        # Text, not markup: data names like "reviews.tsv[test]" would read as rich tags.
        table.add_row(Text(key), Text(value))
    stdout.print(table)


def new_table(title: str, columns: Sequence[str], left: Collection[str] = ("",)) -> Any:
    """A result table titled at its left: the ``left`` columns (names, labels) left-aligned,
    figures right-aligned so that their digits line up."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    return table


def report_and_gate(
    result: Any, json_output: bool, render: Callable[[Any], None], output: str
) -> None:
    """Show a gated step's summary (JSON, or tables and the step's notes), then fail with exit 1
    if it missed."""
    if json_output:
        print_json(result.to_dict())
    else:
        render(result)
        print_notes(result.notes)
    if not result.passed:
        from squeeze.engine.gate import gate_error

        raise gate_error(result, output)


def metric_rows(result: Any) -> list[tuple[str, str, str, str]]:
    """A gated step's metric rows (name, before, after, change): the primary metric, and an
    embedder's fidelity to its input where the primary is another metric."""
    rows: list[tuple[str, str, str, str]] = []
    if result.metric_before is None or result.metric_after is None:
        return rows
    mb, ma = result.metric_before.primary, result.metric_after.primary
    rows.append((mb.name, f"{mb.value:.4f}", f"{ma.value:.4f}", metric_change(result)))
    if result.fidelity is not None and ma.name != "fidelity":
        floor = f"floor {result.min_fidelity:g}" if result.min_fidelity is not None else ""
        rows.append(("fidelity (mean cosine)", "1.0000", f"{result.fidelity:.4f}", floor))
    return rows


def metric_change(result: Any) -> str:
    """A gated step's metric change with its 95% paired interval, as its table shows it."""
    from squeeze.core.fmt import fmt_change
    from squeeze.core.types import LOWER_IS_BETTER

    lower = result.metric_before.primary.name in LOWER_IS_BETTER
    return fmt_change(result.drop_points, result.drop_interval, higher_is_better=not lower)


def print_notes(notes: Sequence[str]) -> None:
    from rich.text import Text

    for note in notes:
        stderr.print(Text("note: ", style="yellow") + Text(note))


class _RichTask:
    def __init__(self, progress: Any, task_id: Any) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, n: int = 1, info: str = "") -> None:
        self._progress.update(self._task_id, advance=n, info=info)


class _LogTask:
    """Progress for logs (CI, ``make demo | tee``): a plain line at most every ``every_s``."""

    def __init__(self, description: str, total: int | None, every_s: float = 15.0) -> None:
        self._description, self._total, self._every_s = description, total, every_s
        self._done = 0
        self._start = self._last = time.monotonic()

    def advance(self, n: int = 1, info: str = "") -> None:
        self._done += n
        now = time.monotonic()
        if now - self._last >= self._every_s or self._done == self._total:
            self._last = now
            of = f"/{self._total}" if self._total else ""
            tail = f" {info}" if info else ""
            line = f"{self._description}: {self._done}{of} [{now - self._start:.0f} s]{tail}"
            stderr.print(line, markup=False)


def progress_factory(quiet: bool) -> ProgressFactory:
    """A rich progress bar on a terminal, periodic plain lines in a log, nothing if ``quiet``."""

    @contextlib.contextmanager
    def open_task(description: str, total: int | None) -> Iterator[ProgressTask]:
        if quiet or not stderr.is_terminal:
            yield SilentTask() if quiet else _LogTask(description, total)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            # The real console: rich routes stray writes to sys.stderr during the bar (a
            # library's warning) through it as a context manager, which the lazy proxy is not.
            console=stderr._real(),
            transient=False,
        ) as progress:
            yield _RichTask(progress, progress.add_task(description, total=total, info=""))

    return open_task
