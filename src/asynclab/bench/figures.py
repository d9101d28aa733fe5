"""Timelines of a burst of requests: when each was sent, when its handler ran, when its answer came back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from asynclab.bench.load import LoadReport

if TYPE_CHECKING:
    from asynclab.bench.workers import Answer

WAITING = "#c8c8c8"
RUNNING = "#1f77b4"
#: One colour *and* one marker shape per worker: the workers stay apart without colour vision, in greyscale and in print.
WORKER_STYLES = [("#1f77b4", "o"), ("#ff7f0e", "s"), ("#2ca02c", "^"), ("#d62728", "D"), ("#9467bd", "v")]

#: A panel with at most this many requests draws one bar per request; above it, counts over time.
BARS_UP_TO = 20
#: The widest figure, in inches at 100 dpi: JupyterLab shows it at full size in a ~900 px output area.
MAX_WIDTH = 8.3
#: Font size (points) of every label, tick and legend entry: about 13 px on screen.
FONT = 9.5


def _bars(ax: Axes, report: LoadReport) -> None:
    by_request = {s.request: s for s in report.handler_spans if s.request is not None}
    for row, result in enumerate(report.results):
        ax.barh(row, result.end - result.start, left=result.start, color=WAITING, height=0.7)
        span = by_request.get(result.index)
        if span is not None:
            ax.barh(row, span.end - span.start, left=span.start, color=RUNNING, height=0.7)
    ax.set_ylim(report.n - 0.5, -0.5)  # request 0 on top
    ax.set_yticks([])


def in_flight_over_time(report: LoadReport) -> tuple[list[float], list[int], list[int]]:
    """Moments, and at each (until the next) how many handlers were running and how many requests waited.

    A request waits from when it was sent until its answer came back, except while its handler runs.
    """
    moments = sorted(
        {
            0.0,
            *(t for r in report.results for t in (r.start, r.end)),
            *(t for s in report.handler_spans for t in (s.start, s.end)),
        }
    )
    running = [sum(s.start <= t < s.end for s in report.handler_spans) for t in moments]
    open_ = [sum(r.start <= t < r.end for r in report.results) for t in moments]
    waiting = [max(o - h, 0) for o, h in zip(open_, running, strict=True)]
    return moments, running, waiting


def _counts(ax: Axes, report: LoadReport) -> None:
    moments, running, waiting = in_flight_over_time(report)
    stacked = [h + w for h, w in zip(running, waiting, strict=True)]
    ax.fill_between(moments, 0, running, step="post", color=RUNNING, linewidth=0)
    ax.fill_between(moments, running, stacked, step="post", color=WAITING, linewidth=0)
    ax.set_ylim(0, max(stacked, default=1) * 1.08 or 1)
    ax.grid(axis="y", color="#eeeeee")
    ax.set_axisbelow(True)


def timeline(*panels: tuple[str, LoadReport]) -> Figure:
    """Draw load reports side by side on one time axis: grey while a request waits, blue while its handler runs.

    With up to ``BARS_UP_TO`` requests, one bar per request: bars that overlap ran at the same
    time; a staircase means the requests took turns. With more, the panel stacks how many handlers
    were running (blue) and how many requests were waiting (grey) at each moment.

    A few requests get one bar each. Many requests would make a wall of thin bars, so from
    ``BARS_UP_TO + 1`` requests on a panel shows how many requests were waiting and how many
    handlers were running at each moment instead. Either way the figure keeps a bounded size,
    its legend sits at the top, and every label stays readable at JupyterLab's default width.
    """
    most = max(r.n for _, r in panels)
    rows = min(most, BARS_UP_TO)
    height = 1.9 + (0.12 * rows if most <= BARS_UP_TO else 2.0)
    width = min(MAX_WIDTH, 1.2 + 3.0 * len(panels))
    fig, axes = plt.subplots(1, len(panels), figsize=(width, height), sharex=True, squeeze=False, layout="constrained")
    for column, (ax, (title, report)) in enumerate(zip(axes[0], panels, strict=True)):
        bars = report.n <= BARS_UP_TO
        (_bars if bars else _counts)(ax, report)
        if column == 0 or bars != (panels[column - 1][1].n <= BARS_UP_TO):
            ax.set_ylabel(f"{report.n} requests, one bar each" if bars else f"requests at once (of {report.n})", fontsize=FONT)
        peak = "" if report.max_in_flight is None else f"\nat most {report.max_in_flight} in flight"
        ax.set_title(f"{title}{peak}", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        ax.set_xlabel("seconds since the burst began", fontsize=FONT)
    # Once every panel is drawn: a limit set earlier stops the shared axis growing for the panels after it.
    axes[0][0].set_xlim(left=0)
    fig.legend(
        handles=[Patch(color=WAITING, label="sent, waiting for its answer"), Patch(color=RUNNING, label="handler running")],
        loc="outside upper center",
        ncols=2,
        fontsize=FONT,
        frameon=False,
    )
    plt.close(fig)  # the notebook shows the returned figure once, not twice
    return fig


def counts_figure(*panels: tuple[str, Sequence[Answer]], key: str = "visits") -> Figure:
    """One panel per run of :func:`~asynclab.bench.worker_requests.fresh_requests`.

    Each panel: the count each answer reported, by request number, one colour per worker.

    The dashed line is the true number of requests sent so far: a correct shared count lies on it.
    Each worker has its own marker shape as well as its own colour (:data:`WORKER_STYLES`).
    """
    width = min(MAX_WIDTH, 1.0 + 3.65 * len(panels))
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 3.4), sharey=True, squeeze=False, layout="constrained")
    for ax, (title, answers) in zip(axes[0], panels, strict=True):
        pids = list(dict.fromkeys(a.pid for a in answers))
        n = len(answers)
        ax.plot([1, n], [1, n], "--", color="#888888", linewidth=1, label="requests sent")
        for number, pid in enumerate(pids, 1):
            mine = [(a.index + 1, a.body[key]) for a in answers if a.pid == pid]
            colour, marker = WORKER_STYLES[(number - 1) % len(WORKER_STYLES)]
            ax.plot(*zip(*mine, strict=True), marker, color=colour, markersize=6, label=f"worker {number}")
        ax.set_title(title, fontsize=FONT)
        ax.set_xlabel("request number", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        ax.legend(fontsize=FONT, loc="upper left", frameon=False)
    axes[0][0].set_ylabel(f"{key} in the answer", fontsize=FONT)
    plt.close(fig)  # the notebook shows the returned figure once
    return fig


__all__: Sequence[str] = ["BARS_UP_TO", "counts_figure", "in_flight_over_time", "timeline"]
