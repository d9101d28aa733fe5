"""asynclab: the lab bench of the FastAPI concurrency course.

Everything a lesson needs to run an app, load it, measure it and check an exercise::

    from asynclab import InFlight, check, hint, inprocess_client, load, timeline

Names are imported on first use, so a uvicorn worker that imports one small module of the
bench does not pay for matplotlib.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from asynclab.course import tracebacks

#: Each name a lesson imports from ``asynclab``, and the module (under ``asynclab.``) it is imported from on first use.
_WHERE = {
    "CheckFailed": "course.checking",
    "check": "course.checking",
    "hint": "course.checking",
    "reveal": "course.predict",
    "InFlight": "bench.gauges",
    "ThreadPool": "bench.gauges",
    "thread_pool": "bench.gauges",
    "thread_tokens": "bench.gauges",
    "inprocess_client": "bench.inprocess",
    "nothing_left_running": "bench.leftovers",
    "asyncio_debug": "bench.probes",
    "capture_logs": "bench.probes",
    "loop_lag": "bench.probes",
    "uvicorn_server": "bench.server",
    "timeline": "bench.figures",
    "LoadReport": "bench.load",
    "load": "bench.load",
    "ratio": "bench.load",
}
__all__ = list(_WHERE)

if TYPE_CHECKING:  # the same names for type checkers and editors (`X as X`: re-exported)
    from asynclab.bench.figures import timeline as timeline
    from asynclab.bench.gauges import InFlight as InFlight
    from asynclab.bench.gauges import ThreadPool as ThreadPool
    from asynclab.bench.gauges import thread_pool as thread_pool
    from asynclab.bench.gauges import thread_tokens as thread_tokens
    from asynclab.bench.inprocess import inprocess_client as inprocess_client
    from asynclab.bench.leftovers import nothing_left_running as nothing_left_running
    from asynclab.bench.load import LoadReport as LoadReport
    from asynclab.bench.load import load as load
    from asynclab.bench.load import ratio as ratio
    from asynclab.bench.probes import asyncio_debug as asyncio_debug
    from asynclab.bench.probes import capture_logs as capture_logs
    from asynclab.bench.probes import loop_lag as loop_lag
    from asynclab.bench.server import uvicorn_server as uvicorn_server
    from asynclab.course.checking import CheckFailed as CheckFailed
    from asynclab.course.checking import check as check
    from asynclab.course.checking import hint as hint
    from asynclab.course.predict import reveal as reveal


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"asynclab.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'asynclab' has no attribute {name!r}")


tracebacks.install()  # in a notebook: short tracebacks for errors in the learner's code
