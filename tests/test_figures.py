"""Every timeline fits a JupyterLab output area: bounded size, legend on top, labels big enough to read.

JupyterLab draws a PNG at its pixel size (matplotlib's 100 dpi) and shrinks it only when it is wider
than the output area (about 900-1000 px with the file browser open). So a figure at most 860 px wide
is never shrunk, and 9.5 pt text stays about 13 px tall on screen.
"""

from __future__ import annotations

import io

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

from asynclab.bench.figures import BARS_UP_TO, in_flight_over_time, timeline
from asynclab.bench.gauges import Span
from asynclab.bench.load import LoadReport, RequestResult

MAX_WIDTH_PX = 860
MAX_HEIGHT_PX = 450  # about half a laptop screen, whatever the number of requests
MIN_FONT_PT = 9


def burst(n: int, *, at_once: int, seconds: float = 0.2) -> LoadReport:
    """A synthetic report: ``n`` requests sent together, handled ``at_once`` at a time."""
    results, spans = [], []
    for i in range(n):
        began = (i // at_once) * seconds
        spans.append(Span(i, began, began + seconds))
        results.append(RequestResult(i, 200, 0.0001 * i, began + seconds + 0.001, None))
    return LoadReport(results, wall=max(r.end for r in results), max_in_flight=min(n, at_once), handler_spans=spans)


def png_size(fig: Figure) -> tuple[int, int]:
    """The size of the PNG a notebook shows (matplotlib-inline saves with bbox_inches='tight')."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    with Image.open(buffer) as image:
        return image.size


def visible_texts(fig: Figure) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


CASES = {
    "one request": [("one", burst(1, at_once=1))],
    "ten, a staircase": [("blocking", burst(10, at_once=1))],
    f"{BARS_UP_TO}, the most drawn as bars": [("many", burst(BARS_UP_TO, at_once=5))],
    f"{BARS_UP_TO + 1}, the fewest drawn as counts": [("counts", burst(BARS_UP_TO + 1, at_once=5))],
    "100 def requests, 40 tokens": [("100 def requests, 40 tokens", burst(100, at_once=40))],
    "1000 requests": [("a crowd", burst(1000, at_once=40))],
    "two panels": [
        ("def dependency + time.sleep", burst(10, at_once=10)),
        ("async def dependency + time.sleep", burst(10, at_once=1)),
    ],
    "three panels, the staircase": [
        ("async def + time.sleep", burst(10, at_once=1)),
        ("async def + await asyncio.sleep", burst(10, at_once=10)),
        ("def + time.sleep", burst(10, at_once=10)),
    ],
    "four panels, bars beside counts": [(f"panel {k}", burst(n, at_once=4)) for k, n in enumerate([5, 10, 50, 100])],
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def figure(request: pytest.FixtureRequest) -> Figure:
    return timeline(*CASES[request.param])


def test_size_is_bounded(figure: Figure) -> None:
    width, height = png_size(figure)
    assert width <= MAX_WIDTH_PX and height <= MAX_HEIGHT_PX, (width, height)
    assert width >= 300 and height >= 150  # and not a thumbnail either


def test_legend_on_top(figure: Figure) -> None:
    renderer = FigureCanvasAgg(figure).get_renderer()  # a closed figure has no drawing canvas of its own
    figure.draw(renderer)
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["sent, waiting for its answer", "handler running"]
    legend_bottom = legend.get_window_extent(renderer).y0
    for ax in figure.axes:
        assert legend_bottom >= ax.get_tightbbox(renderer).y1 - 1, "the legend sits above every panel and its title"


def test_every_label_is_readable(figure: Figure) -> None:
    texts = visible_texts(figure)
    assert texts
    small = {t.get_text(): t.get_fontsize() for t in texts if t.get_fontsize() < MIN_FONT_PT}
    assert not small, f"text under {MIN_FONT_PT} pt: {small}"


def test_each_panel_is_titled_and_has_a_time_axis(figure: Figure) -> None:
    for ax in figure.axes:
        assert ax.get_title() and ax.get_xlabel() == "seconds since the burst began"


def test_counts_match_the_report() -> None:
    report = burst(100, at_once=40)
    moments, running, waiting = in_flight_over_time(report)
    assert max(running) == report.max_in_flight == 40
    assert running[0] + waiting[0] <= 100 and max(r + w for r, w in zip(running, waiting, strict=True)) == 100
    assert running[-1] == waiting[-1] == 0  # all answered by the end
    assert moments == sorted(moments)


def test_many_requests_are_drawn_as_counts_not_bars() -> None:
    few, many = timeline(("few", burst(BARS_UP_TO, at_once=2))), timeline(("many", burst(BARS_UP_TO + 1, at_once=2)))
    assert len(few.axes[0].patches) == 2 * BARS_UP_TO  # a grey and a blue bar per request
    assert len(many.axes[0].patches) == 0 and len(many.axes[0].collections) == 2  # two filled areas
