"""Reports of a sweep: the terminal table, and a folder of Markdown, CSV, JSON, plots and HTML.

Everything reads a :class:`~squeeze.sweep.results.SweepResults`; nothing here measures. matplotlib
is imported only when plots are drawn.
"""

from __future__ import annotations

from squeeze.report.terminal import print_results
from squeeze.report.write import report_notes, write_report

__all__ = ["print_results", "report_notes", "write_report"]
