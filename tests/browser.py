"""One way to drive a real browser in the suite: Debian's chromium, through Playwright for Python.

No browser is ever downloaded (`playwright install` is never run): the tests use /usr/bin/chromium.
Where chromium or Playwright is missing a browser test is skipped and says what to install, unless
the variable its caller names is "1" (CI sets them): then it fails instead.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless, and quiet on a machine with no network: no background requests, no updates, no sync.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def required(variable: str) -> bool:
    return os.environ.get(variable) == "1"


def unavailable(reason: str, variable: str) -> None:
    """Skip with ``reason``; fail instead where ``variable`` is "1" (CI must run the test)."""
    if required(variable):
        pytest.fail(f"{reason} ({variable}=1: CI must run this test)")
    pytest.skip(reason)


@contextmanager
def chromium(variable: str) -> Iterator[Any]:
    """A headless chromium browser (a Playwright ``Browser``), always closed at the end."""
    if not Path(CHROMIUM).is_file():
        unavailable(f"no chromium at {CHROMIUM} (Debian: apt-get install chromium)", variable)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed (pip install -r requirements-site.txt)", variable)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """``folder`` over HTTP on 127.0.0.1 (a free port); yields its base URL. Stopped at the end, also when the test fails."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def load_tool(name: str) -> ModuleType:
    """Import ``tools/<name>.py`` (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module
