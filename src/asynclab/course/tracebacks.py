"""Errors in a notebook, the learner's way: their own frames, what the error means, the library's frames one `%tb` away.

IPython 9 also does not report an escaping ExceptionGroup as an error: without the handler here, a
cell whose ``assert`` fails inside a task group prints to stderr and still counts as passed.
"""

from __future__ import annotations

import traceback
from types import TracebackType
from typing import Any

from asynclab.course import mistakes, unawaited

FULL = "`%tb` in a new cell shows the whole traceback"
HANDLED = (Exception, BaseExceptionGroup)


def _learner_only(tb: TracebackType | None) -> tuple[TracebackType | None, int]:
    """The traceback with only the learner's frames, and how many were left out."""
    kept: list[TracebackType] = []
    hidden = 0
    while tb is not None:
        if unawaited.is_learner(tb.tb_frame.f_code.co_filename):
            kept.append(tb)
        else:
            hidden += 1
        tb = tb.tb_next
    chain: TracebackType | None = None
    for entry in reversed(kept):
        chain = TracebackType(chain, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return chain, hidden


def short_traceback(shell: Any, etype: type[BaseException], value: BaseException, tb: TracebackType | None) -> list[str]:
    """The learner's frames in IPython's own format, then what the error means; the rest is hidden."""
    mine, hidden = _learner_only(tb)
    chained = value.__cause__, value.__context__, value.__suppress_context__
    try:
        value.__cause__, value.__context__ = None, None  # one exception, one screen: `%tb` shows the chain
        stb = list(shell.InteractiveTB.structured_traceback(etype, value, mine, tb_offset=0))
    finally:
        value.__cause__, value.__context__, value.__suppress_context__ = chained
    explained = mistakes.explain(value)
    if explained is not None:
        stb.append(f"\nWhat happened: {explained.observed}\nWhat to do: {explained.hint}")
        unawaited.collect_quietly()  # its twins from the other requests: explained once, here, not again in a later cell
    stb.append(f"({hidden} frames of the libraries underneath are hidden: {FULL}.)")
    return stb


def _show(
    shell: Any, etype: type[BaseException], value: BaseException, tb: TracebackType | None, tb_offset: int | None = None
) -> list[str]:
    shell._get_exc_info((etype, value, tb))  # sys.last_*: what `%tb` and `%debug` read
    if isinstance(value, BaseExceptionGroup):
        stb = traceback.format_exception(etype, value, tb)
    elif hasattr(value, "_render_traceback_"):  # the course's own messages (a failed check)
        stb = value._render_traceback_()
    else:
        hidden = _learner_only(tb)[1]
        learner = hidden < _depth(tb) and hidden > 1  # the library's frames are underneath the learner's
        stb = (
            short_traceback(shell, etype, value, tb)
            if learner
            else shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset)
        )
    shell._showtraceback(etype, value, stb)  # publishes an error output and marks the cell as failed
    return stb


def _depth(tb: TracebackType | None) -> int:
    depth = 0
    while tb is not None:
        depth, tb = depth + 1, tb.tb_next
    return depth


def _whole_traceback(line: str = "") -> None:
    """`%tb`: the last error's whole traceback, chained exceptions and groups included.

    IPython's own `%tb` prints "NoneType: None" when an exception group hides in the chain (an
    error from inside a task group), which the course's load and check tools use.
    """
    import sys

    last = getattr(sys, "last_value", None)
    if last is None:
        print("No error to show yet.")
        return
    print("".join(traceback.format_exception(type(last), last, last.__traceback__)), end="")


def install() -> None:
    """In IPython or Jupyter, show errors the learner's way; elsewhere do nothing."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the course
        return
    shell = get_ipython()
    if shell is not None and shell.custom_exceptions != HANDLED:
        shell.set_custom_exc(HANDLED, _show)
        shell.register_magic_function(_whole_traceback, "line", "tb")
