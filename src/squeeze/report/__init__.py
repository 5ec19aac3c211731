"""Reports of a sweep: a folder of Markdown, CSV, JSON, plots and HTML (the terminal table is the
CLI's, ``squeeze.cli._results``).

Everything reads a :class:`~squeeze.report.results.SweepResults`; nothing here measures. matplotlib
is imported only when plots are drawn.
"""
