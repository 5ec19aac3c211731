"""Trade-off plots: metric against latency and against size, with the Pareto frontier.

What goes on each plot is decided first, without matplotlib (:func:`plot_specs`), so the notes
about what a plot leaves out are known to callers that draw nothing; :func:`draw` then renders
one plan as PNG (to view) and SVG (to scale). matplotlib is imported only to draw, and through
``Figure`` directly rather than pyplot, so no GUI backend or global figure state is involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squeeze.report.cells import metric_label
from squeeze.report.results import SweepResults, pareto_indices

_MIB = 2**20
SELECTED_COLOR = "#e0a800"  # the HTML report's highlight of the selected row


@dataclass(frozen=True)
class Point:
    """One variant on one plot."""

    name: str
    x: float
    y: float
    baseline: bool
    pareto: bool  # on the front over all axes (the table's mark), not just this plot's two
    # 95% intervals drawn as error bars (low, high), in the axes' units; None: none known.
    x_interval: tuple[float, float] | None = None
    y_interval: tuple[float, float] | None = None
    selected: bool = False  # the variant the run selected (ringed, as its row is highlighted)


@dataclass(frozen=True)
class PlotSpec:
    """Everything needed to draw one plot; ``frontier`` is this plot's 2-D front, by x."""

    stem: str
    title: str
    x_label: str
    y_label: str
    points: tuple[Point, ...]
    frontier: tuple[Point, ...]


def _frontier(points: list[Point], y_cost: list[float]) -> tuple[Point, ...]:
    """The points no other beats on both x (minimised) and y (via its cost), sorted by x."""
    front = pareto_indices([(cost, p.x) for cost, p in zip(y_cost, points, strict=True)])
    return tuple(sorted((points[i] for i in front), key=lambda p: (p.x, p.y)))


@dataclass(frozen=True)
class _YAxis:
    """What the y axis shows: values to plot, and costs (lower is better) for the frontier."""

    stem: str
    name: str
    label: str
    values: dict[str, float]
    costs: dict[str, float]
    intervals: dict[str, tuple[float, float]]


def _y_axis(results: SweepResults) -> _YAxis:
    """The metric, or non-zero parameters when the sweep measured none.

    Parameters still show what each variant gave up in model capacity for its speed and size.
    """
    if results.metric_name is None:
        values = {v.name: v.params_nonzero / 1e6 for v in results.variants}
        return _YAxis(
            "params", "non-zero parameters", "non-zero parameters (millions)", values, values, {}
        )
    direction = "higher" if results.higher_is_better else "lower"
    sign = -1.0 if results.higher_is_better else 1.0
    values = {v.name: v.metric for v in results.variants if v.metric is not None}
    costs = {name: sign * value for name, value in values.items()}
    name = metric_label(results.metric_name)
    label = f"{name} ({direction} is better)"
    # The drop's paired interval, placed around the variant's own value (drop points are x100
    # for fraction metrics, raw units otherwise).
    scale = 100.0 if results.higher_is_better else 1.0
    intervals = {}
    for v in results.variants:
        if v.metric is not None and v.drop_ci and v.drop_points is not None:
            ends = [v.metric + sign * (end - v.drop_points) / scale for end in v.drop_ci]
            intervals[v.name] = (min(ends), max(ends))
    return _YAxis("metric", name, label, values, costs, intervals)


def plot_specs(results: SweepResults) -> tuple[list[PlotSpec], list[str]]:
    """The plots to draw, and notes saying what was left out or substituted (and why)."""
    notes: list[str] = []
    y = _y_axis(results)
    if results.metric_name is None:
        notes.append("the results have no metric; the plots show non-zero parameters instead")
    unmeasured = [v.name for v in results.variants if v.name not in y.values]
    if unmeasured:
        notes.append(f"the plots leave out {', '.join(unmeasured)} (no {y.name})")
    x_axes: list[tuple[str, str, dict[str, float], dict[str, tuple[float, float]]]] = []
    if results.devices:
        from squeeze.core.stats import median_interval

        device = results.devices[0]
        timed = {v.name: v.latency[device].p50_ms for v in results.variants if device in v.latency}
        spreads = {
            v.name: interval
            for v in results.variants
            if device in v.latency
            and (interval := median_interval(v.latency[device].samples_ms)) is not None
        }
        untimed = [v.name for v in results.variants if v.name not in timed]
        if untimed:
            notes.append(
                f"the latency plot leaves out {', '.join(untimed)} (not timed on {device})"
            )
        if len(results.devices) > 1:
            notes.append(f"the latency plot shows {device}; the table has every device")
        x_axes.append(("latency", f"latency p50 on {device} (ms)", timed, spreads))
    else:
        notes.append(f"no latency figures; {y.stem}_vs_latency is not drawn")
    sizes = {v.name: v.bytes_on_disk / _MIB for v in results.variants}
    x_axes.append(("size", "size on disk (MiB)", sizes, {}))

    specs = []
    for x_name, x_label, xs, x_intervals in x_axes:
        stem = f"{y.stem}_vs_{x_name}"
        names = [v.name for v in results.variants if v.name in xs and v.name in y.values]
        if not names:
            notes.append(f"no variant has both figures; {stem} is not drawn")
            continue
        flags = {v.name: v.pareto for v in results.variants}
        points = [
            Point(*(n, xs[n], y.values[n], n == results.baseline, flags[n]),
                  x_intervals.get(n), y.intervals.get(n), selected=n == results.selected)
            for n in names
        ]  # fmt: skip
        frontier = _frontier(points, [y.costs[n] for n in names])
        title = f"{results.title}: {y.name} vs {x_name}"
        specs.append(PlotSpec(stem, title, x_label, y.label, tuple(points), frontier))
    return specs, notes


def _bar(value: float, interval: tuple[float, float] | None) -> list[list[float]] | None:
    """An interval as matplotlib's error-bar lengths below and above ``value``; max(0, ...):
    matplotlib refuses negative lengths (a point at its interval's end)."""
    if not interval:
        return None
    return [[max(0.0, value - interval[0])], [max(0.0, interval[1] - value)]]


def _error_bars(ax: Any, points: list[Point], color: str) -> None:
    """The 95% intervals: the metric drop's (vertical) and the median latency's (horizontal)."""
    for p in points:
        if p.x_interval is None and p.y_interval is None:
            continue
        ax.errorbar(
            [p.x], [p.y], xerr=_bar(p.x, p.x_interval), yerr=_bar(p.y, p.y_interval), fmt="none",
            ecolor=color, elinewidth=1, capsize=3, zorder=2,
        )  # fmt: skip


def _label(fig: Any, ax: Any, points: Sequence[Point]) -> None:
    """Name the points, the baseline, the selected and the Pareto-optimal ones first, leaving out
    a name that would cover one already written: a tune's variants sit close together and are
    named by long chains, which piled up into an unreadable smear (the table names them all)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw_without_rendering()  # lay the axes out first, so the names are measured in place
    placed: list[Any] = []
    order = sorted(points, key=lambda p: (not p.baseline, not p.selected, not p.pareto))
    for p in order:
        text = ax.annotate(p.name, (p.x, p.y), xytext=(5, 5), textcoords="offset points",
                           fontsize=8)  # fmt: skip
        box = text.get_window_extent(renderer)
        if any(box.overlaps(other) for other in placed):
            text.remove()
        else:
            placed.append(box)


def draw(spec: PlotSpec, folder: Path) -> list[Path]:
    """Render one plot as ``<stem>.png`` and ``<stem>.svg`` in ``folder``.

    Output is byte-for-byte reproducible (no dates or version stamps, fixed SVG ids), so a
    re-run report diffs clean.
    """
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    groups = (
        ([p for p in spec.points if not p.pareto], "variant", "0.6"),
        ([p for p in spec.points if p.pareto], "Pareto-optimal (all axes)", "tab:green"),
    )
    for points, label, color in groups:
        if points:
            xs, ys = [p.x for p in points], [p.y for p in points]
            ax.scatter(xs, ys, s=40, color=color, zorder=3, label=label)
            _error_bars(ax, points, color)
    base = [p for p in spec.points if p.baseline]
    if base:
        ax.scatter(
            [p.x for p in base],
            [p.y for p in base],
            s=160,
            marker="s",
            facecolors="none",
            edgecolors="black",
            linewidths=1.5,
            zorder=2,
            label="baseline",
        )
    front = spec.frontier
    ax.step(
        [p.x for p in front],
        [p.y for p in front],
        where="post",
        color="tab:green",
        linestyle="--",
        linewidth=1.2,
        zorder=1,
        label="frontier (these two axes)",
    )
    chosen = [p for p in spec.points if p.selected]
    if chosen:
        ax.scatter([p.x for p in chosen], [p.y for p in chosen], s=260, marker="o",
                   facecolors="none", edgecolors=SELECTED_COLOR, linewidths=2.5, zorder=4,
                   label="selected")  # fmt: skip
    ax.set_xlabel(spec.x_label)
    ax.set_ylabel(spec.y_label)
    ax.set_title(spec.title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(0.12)
    _label(fig, ax, spec.points)
    ax.legend(fontsize=8, loc="best")  # after the names, so that it finds a place clear of them
    png, svg = folder / f"{spec.stem}.png", folder / f"{spec.stem}.svg"
    with matplotlib.rc_context({"svg.hashsalt": "squeeze"}):
        fig.savefig(png, dpi=150, metadata={"Software": None})
        fig.savefig(svg, metadata={"Date": None, "Creator": None})
    return [png, svg]
