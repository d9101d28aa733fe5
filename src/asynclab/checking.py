"""The exercise checker: run a learner's answer by behaviour, with a time limit, and say what was seen.

Each section's checks live in ``asynclab.checks.sNN_*`` and register themselves with
:func:`exercise`. A check is an ``async`` function that receives what the learner passes to
:func:`check`, drives it (usually through an in-process client), and either returns one line
saying what it observed, or calls :func:`fail`.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import pkgutil
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import anyio

from asynclab.load import first_error

DEFAULT_TIMEOUT = 10.0  # only hanging code gets near it: correct answers finish in well under 3 s
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class CheckFailed(AssertionError):
    """An exercise's check saw behaviour that is not yet right. Its message is meant for the learner."""

    def __init__(self, exercise: str, title: str, observed: str, hint: str) -> None:
        self.exercise, self.title, self.observed, self.hint = exercise, title, observed, hint
        super().__init__(f"❌ Exercise {exercise} ({title}): {observed}\nHint: {hint}\nMore help: hint({exercise!r})")

    def _render_traceback_(self) -> list[str]:
        """IPython and Jupyter show this instead of a traceback: the learner sees the message only."""
        return [str(self)]


class Observed(Exception):
    """Raised by :func:`fail` inside a check; turned into :class:`CheckFailed` by :func:`check`."""

    def __init__(self, observed: str, hint: int | str) -> None:
        super().__init__(observed)
        self.observed, self.hint = observed, hint


class _CheckTimedOut(BaseException):
    """Injected into a check thread that ran past its time limit."""


CheckFunction = Callable[..., Awaitable[str]]


@dataclass
class Exercise:
    id: str
    title: str
    hints: list[str]
    run: CheckFunction
    timeout: float = DEFAULT_TIMEOUT
    hints_given: int = field(default=0, compare=False)


REGISTRY: dict[str, Exercise] = {}


def exercise(id: str, title: str, hints: list[str], *, timeout: float = DEFAULT_TIMEOUT) -> Callable[[CheckFunction], CheckFunction]:
    """Register an async check for exercise ``id``; ``hints`` go from a nudge to nearly the answer."""

    def register(func: CheckFunction) -> CheckFunction:
        if id in REGISTRY:
            raise ValueError(f"exercise {id} is registered twice")
        REGISTRY[id] = Exercise(id, title, list(hints), func, timeout)
        return func

    return register


def fail(observed: str, hint: int | str = 0) -> NoReturn:
    """Stop a check: ``observed`` says what happened; ``hint`` is an index into the hints, or a text."""
    raise Observed(observed, hint)


def _load_checks() -> None:
    from asynclab import checks

    for module in pkgutil.iter_modules(checks.__path__):
        importlib.import_module(f"{checks.__name__}.{module.name}")


def get(id: str) -> Exercise:
    if not REGISTRY:
        _load_checks()
    try:
        return REGISTRY[id]
    except KeyError:
        known = ", ".join(sorted(REGISTRY, key=_order))
        raise KeyError(f"there is no exercise {id!r}; the exercises are {known}") from None


def all_exercises() -> list[Exercise]:
    if not REGISTRY:
        _load_checks()
    return [REGISTRY[k] for k in sorted(REGISTRY, key=_order)]


def _order(id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in id.split("."))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 160:
        first = first[:157] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _where(exc: BaseException) -> str:
    """Point at the learner's line that raised: the last frame that is neither a library nor the course."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith((_PACKAGE_DIR, sys.prefix, sys.base_prefix)) and "site-packages" not in f.filename
    ]
    if not frames:
        return ""
    frame = frames[-1]
    return f"\n   in {frame.name}(): {frame.line}" if frame.line else f" in {frame.name}()"


def raised(exc: BaseException) -> str:
    """"your code raised <type>: <message>" and the learner's line that raised it."""
    return f"your code raised {_describe(exc)}{_where(exc)}"


def _run_in_thread(func: Callable[[], str], timeout: float) -> tuple[str | None, BaseException | None, bool]:
    """Run ``func`` in its own thread (with its own event loop), waiting at most ``timeout`` seconds.

    A learner's code may block the event loop for ever; an async time-out cannot stop that, so the
    check runs on a thread the kernel can walk away from.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = func()
        except BaseException as exc:  # noqa: BLE001 - everything is reported to the learner
            outcome["error"] = exc
        finally:
            # Free what the learner's app left behind (sessions, greenlets, loops) on this thread,
            # while its event loop's thread still exists, not later on a thread it never knew.
            gc.collect()

    thread = threading.Thread(target=target, name="asynclab-check", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        # Ask the thread to stop; this ends a pure-Python endless loop, not a blocking C call.
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident or 0), ctypes.py_object(_CheckTimedOut))
        thread.join(0.5)
        return None, None, True
    return outcome.get("value"), outcome.get("error"), False


def run(id: str, *answer: Any, timeout: float | None = None) -> str:
    """Check exercise ``id`` against ``answer``: return the line saying what passed, or raise :class:`CheckFailed`."""
    ex = get(id)
    limit = ex.timeout if timeout is None else timeout
    value, error, timed_out = _run_in_thread(lambda: anyio.run(ex.run, *answer), limit)
    if timed_out:
        raise _failed(
            ex,
            f"the check did not finish within {limit:.0f} s: something in your code blocks for ever or waits on itself.",
            "Look for an endless loop or a blocking call with no end; restart the kernel if the notebook feels stuck.",
        )
    if error is not None:
        leaf = first_error(error)
        if isinstance(leaf, Observed):
            raise _failed(ex, leaf.observed, leaf.hint)
        raise _failed(
            ex,
            raised(leaf),
            "Fix that error first: the check calls your code just as a server would.",
        )
    return f"✅ Exercise {ex.id} ({ex.title}) passed: {value}"


def check(id: str, *answer: Any, timeout: float | None = None) -> None:
    """Check exercise ``id`` against the learner's ``answer`` and print one line if it passes.

    If it does not, raise :class:`CheckFailed`, which a notebook shows as a short message:
    what the check observed and a hint. The check runs on its own thread with a time limit.
    """
    print(run(id, *answer, timeout=timeout))


def _failed(ex: Exercise, observed: str, hint: int | str) -> CheckFailed:
    text = ex.hints[hint] if isinstance(hint, int) else hint
    return CheckFailed(ex.id, ex.title, observed, text)


def next_hint(id: str) -> str:
    """The next hint for exercise ``id`` (the last one repeats)."""
    ex = get(id)
    number = min(ex.hints_given, len(ex.hints) - 1)
    ex.hints_given += 1
    return f"💡 Hint {number + 1} of {len(ex.hints)} for exercise {ex.id}: {ex.hints[number]}"


def hint(id: str) -> None:
    """Show the next hint for exercise ``id``; ask again for the next one."""
    print(next_hint(id))


# --- Helpers the section checks share -------------------------------------------------------------


def build_app(factory: Callable[..., Any], *args: Any, name: str = "build_app") -> Any:
    """Call the learner's app factory; fail kindly if it does not give back an ASGI app."""
    if not callable(factory):
        fail(f"expected the function {name}, got {type(factory).__name__}", f"Pass the function itself: check(..., {name}).")
    app = factory(*args)
    if not callable(app):
        fail(f"{name}(...) returned {type(app).__name__}, not an app", f"End {name} with `return app`.")
    return app


def module_file(answer: Any, hint: str, *, what: str = "module") -> Path:
    """The path of the learner's ``.py`` file; fail kindly if ``answer`` is anything else."""
    path = Path(answer) if isinstance(answer, str | Path) else None
    if path is None or path.suffix != ".py" or not path.is_file():
        fail(f"expected the path of your {what} file, got {answer!r}", hint)
    return path


def expect_responses(report: Any, describe: Callable[[int], str], expected: Callable[[int], Any]) -> None:
    """Fail on the first request of a load report whose status is not 200 or whose body is not ``expected(i)``."""
    for r in report.results:
        if r.status != 200:
            fail(f"{describe(r.index)} answered {r.status}: {str(r.body)[:120]}", "Every route must still answer 200 with the same body as before.")
        if r.body != expected(r.index):
            fail(
                f"{describe(r.index)} answered {r.body!r}, expected {expected(r.index)!r}",
                "Change how the handler waits for its data, not what it returns.",
            )
