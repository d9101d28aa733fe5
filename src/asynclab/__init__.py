"""asynclab: the lab bench of the FastAPI concurrency course.

Everything a lesson needs to run an app, load it, measure it and check an exercise::

    from asynclab import inprocess_client, load, InFlight, timeline, check, hint

Names are imported on first use, so a uvicorn worker that imports one small module of the
bench does not pay for matplotlib.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# `load` is both a module and a function: import it now, so that the name means the function.
from asynclab.load import LoadReport, load, ratio
from asynclab.notebook import report_exception_groups

if TYPE_CHECKING:
    from asynclab.checking import CheckFailed, check, hint
    from asynclab.figures import timeline
    from asynclab.gauges import InFlight, ThreadPool, thread_pool, thread_tokens
    from asynclab.inprocess import inprocess_client
    from asynclab.leftovers import nothing_left_running
    from asynclab.probes import asyncio_debug, capture_logs, loop_lag
    from asynclab.server import uvicorn_server

_WHERE = {
    "CheckFailed": "checking",
    "check": "checking",
    "hint": "checking",
    "InFlight": "gauges",
    "ThreadPool": "gauges",
    "thread_pool": "gauges",
    "thread_tokens": "gauges",
    "inprocess_client": "inprocess",
    "nothing_left_running": "leftovers",
    "asyncio_debug": "probes",
    "capture_logs": "probes",
    "loop_lag": "probes",
    "uvicorn_server": "server",
    "timeline": "figures",
}
__all__ = [
    "CheckFailed",
    "InFlight",
    "LoadReport",
    "ThreadPool",
    "asyncio_debug",
    "capture_logs",
    "check",
    "hint",
    "inprocess_client",
    "load",
    "loop_lag",
    "nothing_left_running",
    "ratio",
    "thread_pool",
    "thread_tokens",
    "timeline",
    "uvicorn_server",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"asynclab.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'asynclab' has no attribute {name!r}")


report_exception_groups()
