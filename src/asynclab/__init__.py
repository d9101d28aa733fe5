"""asynclab: the lab bench of the FastAPI concurrency course.

Everything a lesson needs to run an app, load it, measure it and check an exercise::

    from asynclab import inprocess_client, load, InFlight, timeline, check, hint
"""

from asynclab.checking import CheckFailed, check, hint
from asynclab.gauges import InFlight, ThreadPool, thread_pool, thread_tokens
from asynclab.inprocess import inprocess_client
from asynclab.leftovers import nothing_left_running
from asynclab.load import LoadReport, load, ratio
from asynclab.notebook import report_exception_groups
from asynclab.probes import asyncio_debug, capture_logs, loop_lag
from asynclab.server import uvicorn_server
from asynclab.timeline import timeline

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

report_exception_groups()
