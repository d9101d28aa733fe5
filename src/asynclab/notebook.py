"""Make a notebook report every failure: IPython 9 does not report an escaping ExceptionGroup as an error.

Without this, a cell whose ``assert`` fails inside a task group prints a traceback to stderr and
still counts as passed, for the learner and for nbval alike.
"""

from __future__ import annotations

import traceback
from types import TracebackType
from typing import Any


def _show_group(
    shell: Any, etype: type[BaseException], value: BaseException, tb: TracebackType | None, tb_offset: int | None = None
) -> list[str]:
    stb = traceback.format_exception(etype, value, tb)
    shell._showtraceback(etype, value, stb)  # publishes an error output and marks the cell as failed
    return stb


def report_exception_groups() -> None:
    """In IPython or Jupyter, report an ExceptionGroup that escapes a cell as a failure; elsewhere do nothing."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the course
        return
    shell = get_ipython()
    if shell is not None and BaseExceptionGroup not in shell.custom_exceptions:
        shell.set_custom_exc((BaseExceptionGroup,), _show_group)
