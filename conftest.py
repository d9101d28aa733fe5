"""Suite-wide guard: no process started by a notebook or a test may outlive the test run.

Every process the suite starts (nbval's kernels, their uvicorn workers, ...) inherits the marker
below; when the run ends, any process that still carries it is reported and fails the run.
"""

from __future__ import annotations

import os
import uuid

import pytest

MARKER = "ASYNCLAB_TEST_RUN"
os.environ.setdefault(MARKER, uuid.uuid4().hex)  # xdist workers inherit the controller's value


def survivors(marker_value: str) -> list[str]:
    import psutil

    me = psutil.Process()
    mine = {me.pid, *(p.pid for p in me.parents())}
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        if proc.pid in mine:
            continue
        try:
            if proc.environ().get(MARKER) == marker_value and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{proc.pid} {' '.join((proc.info['cmdline'] or [])[:4])}")
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
            continue
    return found


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Keep each notebook's cells together on one xdist worker (one kernel); spread every other test."""
    from xdist.scheduler import LoadScopeScheduling

    class NotebookScope(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path.endswith(".ipynb") else nodeid

    return NotebookScope(config, log)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # only the controller judges, once every worker has finished
    import time

    deadline = time.monotonic() + 3  # kernels shut down asynchronously; give them a moment
    left = survivors(os.environ[MARKER])
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = survivors(os.environ[MARKER])
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("FAILED: processes outlived the test run: " + "; ".join(left), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
