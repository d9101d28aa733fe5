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

if TYPE_CHECKING:
    from asynclab.bench.figures import timeline
    from asynclab.bench.gauges import InFlight, ThreadPool, thread_pool, thread_tokens
    from asynclab.bench.inprocess import inprocess_client
    from asynclab.bench.leftovers import nothing_left_running
    from asynclab.bench.load import LoadReport, load, ratio
    from asynclab.bench.probes import asyncio_debug, capture_logs, loop_lag
    from asynclab.bench.server import uvicorn_server
    from asynclab.course.checking import CheckFailed, check, hint
    from asynclab.course.predict import reveal

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
    "reveal",
    "thread_pool",
    "thread_tokens",
    "timeline",
    "uvicorn_server",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"asynclab.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'asynclab' has no attribute {name!r}")


tracebacks.install()  # in a notebook: short tracebacks for errors in the learner's code
