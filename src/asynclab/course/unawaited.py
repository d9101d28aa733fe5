"""Coroutines a check's answer created and never awaited: caught where they die, told apart by who made them."""

from __future__ import annotations

import contextlib
import gc
import inspect
import linecache
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from types import CoroutineType
from typing import Any

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STANDINS_DIR = os.path.join(_PACKAGE_DIR, "standins")
ORIGIN_DEPTH = 16  # enough frames to climb from a library's worker thread up to the learner's line


def is_library(filename: str) -> bool:
    """Python's own code, an installed package, or the course's bench and checks: never the learner's."""
    return (
        filename.startswith((sys.prefix, sys.base_prefix, "<frozen "))
        or "site-packages" in filename
        or (filename.startswith(_PACKAGE_DIR) and not filename.startswith(_STANDINS_DIR))
    )


def is_learner(filename: str) -> bool:
    """A notebook cell or one of the learner's files (the stand-ins are the course's, not theirs)."""
    return not is_library(filename) and not filename.startswith(_STANDINS_DIR)


@dataclass(frozen=True)
class Forgotten:
    """One coroutine that was created and never awaited."""

    function: str  # the coroutine function, e.g. "WeatherService.afetch"
    caller: str | None  # the learner's function whose line created it (None: a library made it)
    line: str | None  # that line of source, stripped
    made_by_learner: bool  # the learner's own line called the coroutine function

    @property
    def call(self) -> str:
        """How the learner wrote the call, if their line shows it: ``weather.afetch(city)``."""
        short = self.function.rsplit(".", 1)[-1]
        if self.line and f"{short}(" in self.line:
            start = self.line.index(f"{short}(")
            while start > 0 and (self.line[start - 1].isalnum() or self.line[start - 1] in "._"):
                start -= 1
            depth, end = 0, start
            for end in range(self.line.index("(", start), len(self.line)):
                depth += {"(": 1, ")": -1}.get(self.line[end], 0)
                if depth == 0:
                    break
            call = self.line[start : end + 1]
            return call if len(call) <= 40 else call[: call.index("(")] + "(...)"
        return f"{self.function}(...)"


def describe(coro: Any) -> Forgotten | None:
    """Who made ``coro``: None when a library made one of its own (not the learner's business)."""
    code = getattr(coro, "cr_code", None)
    if code is None:
        return None
    origin = getattr(coro, "cr_origin", None) or ()
    learner = [(f, n, name) for f, n, name in origin if is_learner(f)]
    # Untracked (a thread that did not ask for origins): if the function is the learner's or a stand-in, they called it.
    made_by_learner = is_learner(origin[0][0]) if origin else not is_library(code.co_filename)
    if not made_by_learner and is_library(code.co_filename):
        return None  # e.g. a driver's own coroutine, left behind inside the driver
    if learner:
        filename, number, name = learner[0]
        line = linecache.getline(filename, number).strip() or None
        return Forgotten(code.co_qualname, name, line, made_by_learner)
    return Forgotten(code.co_qualname, None, None, made_by_learner)


class _Recorder:
    """While at least one recording is open, Python's "never awaited" warning comes here instead."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._open: list[list[Forgotten]] = []
        self._original = warnings._warn_unawaited_coroutine  # type: ignore[attr-defined]

    def _caught(self, coro: Any) -> None:
        with self._lock:
            if not self._open:
                self._original(coro)
                return
            seen = describe(coro)
            if seen is not None:
                self._open[-1].append(seen)

    @contextlib.contextmanager
    def _open_list(self) -> Iterator[list[Forgotten]]:
        found: list[Forgotten] = []
        with self._lock:
            self._open.append(found)
            warnings._warn_unawaited_coroutine = self._caught  # type: ignore[attr-defined]
        try:
            yield found
        finally:
            with self._lock:
                self._open.remove(found)
                if not self._open:
                    warnings._warn_unawaited_coroutine = self._original  # type: ignore[attr-defined]

    def collect_quietly(self) -> list[Forgotten]:
        """Collect garbage now; its never-awaited coroutines are returned, not printed."""
        with self._open_list() as found:
            gc.collect()
        return found

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[Forgotten]]:
        self.collect_quietly()  # garbage from before is not this block's, and was reported where it was made
        with self._open_list() as found:
            try:
                yield found
            finally:
                gc.collect()  # what the block left in reference cycles dies here, recorded, not later in another cell


_RECORDER = _Recorder()
recording = _RECORDER.recording
collect_quietly = _RECORDER.collect_quietly


def track_origins() -> None:
    """Remember where coroutines are created on this thread (a check's thread, and the threads it starts)."""
    sys.set_coroutine_origin_tracking_depth(ORIGIN_DEPTH)


def coroutines_in(value: Any, depth: int = 0) -> list[CoroutineType[Any, Any, Any]]:
    """The coroutine objects inside a value a framework complained about (a validation error's input)."""
    if isinstance(value, CoroutineType):
        return [value]
    if depth > 3:
        return []
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list | tuple | set):
        items = value
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        items = vars(value).values()
    else:
        return []
    return [c for item in items for c in coroutines_in(item, depth + 1)]


def close(coroutines: list[CoroutineType[Any, Any, Any]]) -> list[Forgotten]:
    """Describe, then close, coroutines that were never started: closed, Python has nothing left to warn about."""
    seen = []
    for coro in coroutines:
        if inspect.getcoroutinestate(coro) != inspect.CORO_CREATED:
            continue
        found = describe(coro)
        if found is not None:
            seen.append(found)
        coro.close()
    return seen
