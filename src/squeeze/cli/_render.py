"""Terminal output: tables and JSON on stdout, progress and errors on stderr.

Results go to stdout (so ``--json`` output can be piped); everything about the work in progress
goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import textwrap
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

from squeeze.core.types import ProgressFactory, ProgressTask, SilentTask

# The width of output that goes to a pipe or a file (a CI log) unless $COLUMNS says otherwise:
# rich would assume 80, and wide logs are read in browsers.
PIPE_WIDTH = 100


class _LazyConsole:
    """A rich Console made on first use: importing rich.console costs start-up time that
    ``squeeze --help`` should not pay."""

    def __init__(self, **options: Any) -> None:
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_console", None)

    def _real(self) -> Any:
        if self._console is None:
            from rich.console import Console

            console = Console(highlight=False, **self._options)
            if not console.is_terminal and "COLUMNS" not in os.environ:
                console.width = PIPE_WIDTH
            object.__setattr__(self, "_console", console)
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
    """Facts as a key/value list; values wrap at spaces where the width runs out."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, value in rows:
        # Text, not markup: data names like "reviews.tsv[test]" would read as rich tags.
        table.add_row(Text(key), Text(value))
    emit(table, wrap=True)


def emit(table: Any, console: Any = None, *, wrap: bool = False) -> None:
    """Print a rich table within the console's width without cutting a cell's words.

    Each cell keeps its lines whole (``no_wrap``); a table too wide for the width (80 columns
    in a terminal, $COLUMNS, or :data:`PIPE_WIDTH` in a pipe) is printed as records instead,
    one row's label columns on a line and its figures under them, each "column: value".
    ``wrap``: a key/value list, whose values wrap at spaces instead. In a pipe, lines carry no
    trailing padding.
    """
    from rich.measure import Measurement

    console = console or stdout
    if wrap:  # fits while each value's longest word fits beside the keys
        keys = max((len(_plain(c)) for c in table.columns[0]._cells), default=0)
        words = [w for c in table.columns[1]._cells for w in _plain(c).split()]
        # print_table's padding: 2 before the keys, 4 between, 2 after the values.
        if keys + 8 + max(map(len, words), default=0) > console.width:
            _print_lines(console, _records(table, console.width, labels=1))
            return
    else:
        for column in table.columns:
            column.no_wrap = True
        natural = Measurement.get(console, console.options.update_width(10_000), table)
        if natural.maximum > console.width:
            _print_lines(console, _records(table, console.width))
            return
    if console.is_terminal:
        console.print(table)
        return
    with console.capture() as captured:
        console.print(table)
    _print_lines(console, [line.rstrip() for line in captured.get().splitlines()])


def _print_lines(console: Any, lines: Sequence[Any]) -> None:
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _plain(cell: Any) -> str:
    """A cell's text: rich markup read as markup (``[dim]..[/dim]``), Text as it is."""
    from rich.text import Text

    if isinstance(cell, Text):
        return cell.plain
    return Text.from_markup(cell).plain if isinstance(cell, str) else str(cell)


def _records(table: Any, width: int, labels: int | None = None) -> list[Any]:
    """A table as records for a width it does not fit: per row, its first ``labels`` cells
    (default: the leading left-aligned ones) on one line, then each other non-empty cell as
    "header: value", wrapped at spaces."""
    from rich.text import Text

    if labels is None:  # the leading left-aligned columns: mark, name, format
        labels = 1
        while labels < len(table.columns) and table.columns[labels].justify == "left":
            labels += 1
    lines: list[Any] = wrap_lines(_plain(table.title), width) if table.title else []
    for r, row in enumerate(table.rows):
        cells = [_plain(column._cells[r]) for column in table.columns]
        head = "  ".join(" ".join(cells[i].split()) for i in range(labels) if cells[i].strip())
        lines.append(Text(head, style=row.style or "bold"))
        for i, column in enumerate(table.columns):
            value = ""
            for part in (p.strip() for p in cells[i].splitlines() if p.strip()):
                # "5.11 / 5.78 ms, 4.1x [3.5, 4.5]": an interval stays with its figure.
                value += (" " if part.startswith("[") else ", ") + part if value else part
            if i < labels or not value:
                continue
            header = " ".join(_plain(column.header).split())
            lines += wrap_lines(f"{header}: {value}" if header else value, width, " " * 4, " " * 6)
    return lines


def compact_table(title: str) -> Any:
    """A result table: titled at its left, a rule under the header, no vertical rules, one
    space either side of a column (many columns fit in 80)."""
    from rich import box
    from rich.table import Table

    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                 pad_edge=False, collapse_padding=True)  # fmt: skip


def new_table(title: str, columns: Sequence[str], left: Collection[str] = ("",)) -> Any:
    """A result table titled at its left: the ``left`` columns (names, labels) left-aligned,
    figures right-aligned so that their digits line up."""
    table = compact_table(title)
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
    """A gated step's metric drop (positive = worse) with its 95% paired interval."""
    from squeeze.core.fmt import fmt_drop
    from squeeze.core.types import LOWER_IS_BETTER

    lower = result.metric_before.primary.name in LOWER_IS_BETTER
    return "drop " + fmt_drop(result.drop_points, result.drop_interval, points=not lower)


def print_notes(notes: Sequence[str]) -> None:
    for note in notes:
        say(f"note: {note}", stderr, style="yellow", indent=4)


# What a line never breaks inside: a `quoted command` and a pip install command.
_WHOLE = re.compile(r"`[^`]+`|pip install (?:--\S+ )*\S+")
_NBSP = "\u00a0"  # textwrap breaks at ASCII whitespace only


def wrap_lines(text: str, width: int, indent: str = "", subsequent: str = "") -> list[str]:
    """``text`` in lines of at most ``width`` columns, broken at spaces only: never inside a
    word, an option name (--max-accuracy-drop), a path or a quoted command."""
    kept = _WHOLE.sub(lambda m: m.group(0).replace(" ", _NBSP), text)
    wrapper = textwrap.TextWrapper(
        max(width, 20), initial_indent=indent, subsequent_indent=subsequent,
        break_on_hyphens=False, break_long_words=False,
    )  # fmt: skip
    return [line.replace(_NBSP, " ") for line in wrapper.wrap(kept)]


def say(text: str, console: Any = None, *, style: str | None = None, indent: int = 0) -> None:
    """Print prose wrapped at spaces within the console's width (never inside a path, a
    command or an option name), ``indent`` spaces before each line after the first."""
    console = console or stdout
    for line in wrap_lines(text, console.width, subsequent=" " * indent) or [""]:
        console.print(line, style=style, markup=False, highlight=False, soft_wrap=True)


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
