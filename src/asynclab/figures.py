"""One bar per request: when it was sent, when its handler ran, when its answer came back."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from asynclab.load import LoadReport

WAITING = "#d9d9d9"
RUNNING = "#1f77b4"


def _draw(ax: Axes, report: LoadReport) -> None:
    by_request = {s.request: s for s in report.handler_spans if s.request is not None}
    for row, result in enumerate(report.results):
        ax.barh(row, result.end - result.start, left=result.start, color=WAITING, height=0.7)
        span = by_request.get(result.index)
        if span is not None:
            ax.barh(row, span.end - span.start, left=span.start, color=RUNNING, height=0.7)
    ax.invert_yaxis()
    ax.set_yticks([])
    ax.set_ylabel(f"{report.n} requests")
    ax.set_xlabel("seconds since the burst began")


def timeline(*panels: tuple[str, LoadReport]) -> Figure:
    """Draw load reports side by side on one time axis: grey while a request waits, blue while its handler runs.

    Bars that overlap ran at the same time; a staircase means the requests took turns.
    """
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.0 * len(panels) + 1, 0.18 * max(r.n for _, r in panels) + 1.6), sharex=True, squeeze=False
    )
    for ax, (title, report) in zip(axes[0], panels, strict=True):
        _draw(ax, report)
        peak = "" if report.max_in_flight is None else f"\nat most {report.max_in_flight} in flight"
        ax.set_title(f"{title}{peak}", fontsize=9)
    fig.legend(
        handles=[Patch(color=WAITING, label="waiting"), Patch(color=RUNNING, label="handler running")],
        loc="lower center",
        ncols=2,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    plt.close(fig)  # the notebook shows the returned figure once, not twice
    return fig


__all__: Sequence[str] = ["timeline"]
