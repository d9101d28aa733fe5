"""The exercise checker: run a learner's answer by behaviour, with a time limit, and say what was seen."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pkgutil
import sys
import traceback
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import anyio

from asynclab.bench.load import first_error
from asynclab.bench.stack import StackUnavailable
from asynclab.course import mistakes, unawaited
from asynclab.course.check_thread import LearnerExit, check_loop, run_in_thread

#: Every mark carries a word: without an emoji font the marks render as empty boxes.
PASSED, NOT_YET = "✅ passed", "❌ not yet"
DEFAULT_TIMEOUT = 10.0  # only hanging code gets near it: correct answers finish in well under 3 s
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # all of asynclab: its frames are not the learner's


class CheckFailed(AssertionError):
    """An exercise's check saw behaviour that is not yet right. Its message is meant for the learner."""

    def __init__(self, exercise: str, title: str, observed: str, hint: str, hint_label: str = "Hint") -> None:
        self.exercise, self.title, self.observed, self.hint = exercise, title, observed, hint
        super().__init__(
            f"{NOT_YET} · Exercise {exercise} ({title}): {observed}\n💡 {hint_label}: {hint}\nMore help: hint({exercise!r})"
        )

    def _render_traceback_(self) -> list[str]:
        """IPython and Jupyter show this instead of a traceback: the learner sees the message only."""
        return [str(self)]


class Observed(Exception):
    """Raised by :func:`fail` inside a check; turned into :class:`CheckFailed` by :func:`check`."""

    def __init__(self, observed: str, hint: int | str) -> None:
        super().__init__(observed)
        self.observed, self.hint = observed, hint


class StartupTimedOut(TimeoutError):
    """The app's lifespan startup did not finish in time (raised by the bench, reported as observed)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the app's startup did not finish within {seconds:g} s")


CheckFunction = Callable[..., Awaitable[str]]


@dataclass
class Exercise:
    id: str
    title: str
    hints: list[str]
    run: CheckFunction
    timeout: float = DEFAULT_TIMEOUT
    reveals: tuple[str, ...] = ()  # coroutine functions whose forgotten `await` is this exercise's puzzle
    hints_given: int = field(default=0, compare=False)
    last_observed: str | None = field(default=None, compare=False)  # what this kernel's previous failed check saw


REGISTRY: dict[str, Exercise] = {}


def exercise(
    id: str, title: str, hints: list[str], *, timeout: float = DEFAULT_TIMEOUT, reveals: tuple[str, ...] = ()
) -> Callable[[CheckFunction], CheckFunction]:
    """Register an async check for exercise ``id``; ``hints`` go from a nudge to nearly the answer.

    ``reveals`` names coroutine functions (``"TokenService.verify"``) whose forgotten ``await`` is
    the exercise's fault to find: its check names it only after a first hint, other checks never.

    Each section's checks live in ``asynclab.checks.sNN_*`` and register themselves with
    :func:`exercise`. A check is an ``async`` function that receives what the learner passes to
    :func:`check`, drives it (usually through an in-process client), and either returns one line
    saying what it observed, or calls :func:`fail`.
    """

    def register(func: CheckFunction) -> CheckFunction:
        if id in REGISTRY:
            raise ValueError(f"exercise {id} is registered twice")
        REGISTRY[id] = Exercise(id, title, list(hints), func, timeout, reveals)
        return func

    return register


def fail(observed: str, hint: int | str = 0) -> NoReturn:
    """Stop a check: ``observed`` says what happened; ``hint`` is an index into the hints, or a text."""
    raise Observed(observed, hint)


def _load_checks(section: str | None = None) -> None:
    """Import the check modules (``checks/sNN_*.py``): only section ``section``'s when it is given.

    A notebook's first ``check()`` then pays for its own section's imports, not for every section's.
    """
    from asynclab import checks

    prefix = f"s{int(section):02d}_" if section is not None and section.isdigit() else ""
    for module in pkgutil.iter_modules(checks.__path__):
        if module.name.startswith(prefix) and not module.name.startswith("_"):
            importlib.import_module(f"{checks.__name__}.{module.name}")


def get(id: str) -> Exercise:
    if id not in REGISTRY:
        _load_checks(id.split(".")[0])
    try:
        return REGISTRY[id]
    except KeyError:
        _load_checks()  # every section's, to list the exercises there are
        known = ", ".join(sorted(REGISTRY, key=order))
        raise KeyError(f"there is no exercise {id!r}; the exercises are {known}") from None


def all_exercises() -> list[Exercise]:
    _load_checks()
    return [REGISTRY[k] for k in sorted(REGISTRY, key=order)]


def order(id: str) -> tuple[int, ...]:
    """Course order of an exercise id: "2.10" after "2.9"."""
    return tuple(int(part) for part in id.split("."))


def describe_error(exc: BaseException) -> str:
    """``ValueError: boom``: an exception's type and the first line of its message, cut to 160 characters."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 160:
        first = first[:157] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _where(exc: BaseException) -> str:
    """Point at the learner's line that raised: the last frame that is neither a library nor the course."""
    frames = _learner_frames(exc)
    if not frames:
        return ""
    frame = frames[-1]
    return f"\n   in {frame.name}(): {frame.line}" if frame.line else f" in {frame.name}()"


def raised(exc: BaseException) -> str:
    """ "your code raised <type>: <message>" and the learner's line that raised it."""
    return f"your code raised {describe_error(exc)}{_where(exc)}"


def _learner_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    return [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith((_PACKAGE_DIR, sys.prefix, sys.base_prefix, "<frozen "))
        and "site-packages" not in f.filename
    ]


def exited(exc: SystemExit | LearnerExit) -> str:
    """ "your code exited the process (status N) in <function>"."""
    code = exc.code
    status = code if isinstance(code, int) else (0 if code is None else 1)
    frames = _learner_frames(exc)
    if not frames:
        where = ""
    elif frames[-1].name == "<module>":
        where = f" while {Path(frames[-1].filename).name} was being imported"
    else:
        where = f" in {frames[-1].name}()"
    said = f" ({code!r})" if isinstance(code, str) else ""
    return f"your code exited the process (status {status}){said}{where}: the check stopped it, so your kernel lives on"


def run(id: str, *answer: Any, timeout: float | None = None) -> str:
    """Check exercise ``id`` against ``answer``: return the line saying what passed, or raise :class:`CheckFailed`.

    Every coroutine the answer leaves unawaited is caught while the check runs and judged here, by
    this check alone: none is printed later under another cell, or held against another answer.
    """
    ex = get(id)
    limit = ex.timeout if timeout is None else timeout
    revealed = ex.hints_given > 0  # a find-it exercise names its own fault only once a hint has been shown
    with unawaited.recording() as forgotten, _quiet():
        value, error, timed_out = run_in_thread(
            lambda: anyio.run(ex.run, *answer, backend_options={"loop_factory": check_loop}), limit
        )
        verdict = _verdict(error, timed_out, limit) if timed_out or error is not None else None
        error = None  # the learner's exception holds their app: let it go while the recording is open
    mine = [f for f in forgotten if f.function not in _revealed_elsewhere(ex) and (revealed or f.function not in ex.reveals)]
    if verdict is None:
        if mine:
            said = mistakes.forgot_await(mine[0])
            raise _failed(ex, f"every answer was as expected, but {said.observed[0].lower()}{said.observed[1:]}", said.hint)
        ex.last_observed, ex.hints_given = None, 0
        return f"{PASSED} · Exercise {ex.id} ({ex.title}): {value}"
    if verdict.about_a_coroutine and any(f.made_by_learner for f in mine):  # e.g. "'coroutine' object has no attribute"
        serialising = "serializ" in verdict.observed.lower()  # the coroutine was in the route's answer
        used = mistakes.forgot_await(next(f for f in mine if f.made_by_learner), "returned" if serialising else "used")
        evidence = "" if serialising else f"\n   ({verdict.observed.removeprefix('your code raised ')})"
        raise _failed(ex, used.observed + evidence, used.hint)
    raise _failed(ex, verdict.observed, verdict.hint, mistakes.note(mine) if verdict.may_add else "")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """While a check runs, the answer's warnings and unhandled log records are the check's: none is printed.

    What a check judges, it reads itself (its own ``catch_warnings`` or log capture); the rest would
    only clutter the cell, or a later one.
    """
    last_resort = logging.lastResort
    logging.lastResort = logging.NullHandler()  # records no handler takes: dropped, not printed to stderr
    try:
        with warnings.catch_warnings(record=True):
            yield
    finally:
        logging.lastResort = last_resort


def _revealed_elsewhere(ex: Exercise) -> set[str]:
    """Coroutine functions whose forgotten ``await`` is another exercise's puzzle: not this check's business."""
    return {name for other in REGISTRY.values() if other is not ex for name in other.reveals}


@dataclass(frozen=True)
class _Verdict:
    observed: str
    hint: int | str
    may_add: bool = True  # a forgotten `await` seen meanwhile may be added to the message
    about_a_coroutine: bool = False  # the learner's code raised an error that names a coroutine


def _verdict(error: BaseException | None, timed_out: bool, limit: float) -> _Verdict:
    """What a check that did not pass saw, in the learner's terms."""
    if timed_out or error is None:
        return _Verdict(
            f"the check did not finish within {limit:.0f} s: something in your code blocks for ever or waits on itself.",
            "Look for an endless loop or a blocking call with no end; restart the kernel if the notebook feels stuck.",
        )
    leaf = _leaf(error)
    if isinstance(leaf, Observed):
        return _Verdict(leaf.observed, leaf.hint)
    if isinstance(leaf, SystemExit | LearnerExit):
        return _Verdict(exited(leaf), "Do not end the process from your code: raise an exception, or return.")
    if isinstance(leaf, StackUnavailable):  # the switch asks for servers this machine lacks: not the learner's code
        return _Verdict(
            f"the check could not run on PostgreSQL and Redis: {leaf}",
            "Install them, or run on SQLite: open the course without ASYNCLAB_STACK (README, 'The production stack').",
            may_add=False,
        )
    if isinstance(leaf, StartupTimedOut):
        return _Verdict(
            f"{leaf}: something before the lifespan's `yield` waits for ever",
            "Look at the code before `yield` in your lifespan: every await there must end.",
        )
    explained = mistakes.explain(leaf)
    if explained is not None:
        return _Verdict(explained.observed, explained.hint, may_add=False)
    return _Verdict(
        raised(leaf),
        "Fix that error first: the check calls your code just as a server would.",
        about_a_coroutine="coroutine" in str(leaf),
    )


def _leaf(error: BaseException) -> BaseException:
    """The exception to report: the first in (nested) groups, or the learner's exit or the bench's verdict it caused."""
    leaf = first_error(error)
    seen: set[int] = set()
    cause: BaseException | None = leaf
    while cause is not None and id(cause) not in seen:  # e.g. an exit inside a lifespan, re-raised as another error
        seen.add(id(cause))
        if isinstance(cause, SystemExit | LearnerExit | StartupTimedOut):
            return cause
        cause = cause.__cause__ or cause.__context__
    return leaf


def check(id: str, *answer: Any, timeout: float | None = None) -> None:
    """Check exercise ``id`` against the learner's ``answer`` and print one line if it passes.

    If it does not, raise :class:`CheckFailed`, which a notebook shows as a short message:
    what the check observed and a hint. The check runs on its own thread with a time limit.
    """
    print(run(id, *answer, timeout=timeout))


SAME_AS_BEFORE = " (The same as your previous check: the app still behaves as it did then.)"


def _failed(ex: Exercise, observed: str, hint: int | str, note: str = "") -> CheckFailed:
    """The learner's failure message; a hint from the list counts as given, so ``hint()`` goes on from the next one."""
    said = observed + note + (SAME_AS_BEFORE if observed == ex.last_observed else "")
    ex.last_observed = observed
    if isinstance(hint, str):
        return CheckFailed(ex.id, ex.title, said, hint)
    ex.hints_given = hint + 1
    return CheckFailed(ex.id, ex.title, said, ex.hints[hint], f"Hint {hint + 1} of {len(ex.hints)}")


def next_hint(id: str) -> str:
    """The next hint for exercise ``id`` (the last one repeats).

    A failed check that showed a hint from the list counts it as given: the next ``hint()`` adds
    something the message did not say.
    """
    ex = get(id)
    number = min(ex.hints_given, len(ex.hints) - 1)
    ex.hints_given += 1
    return f"💡 Hint {number + 1} of {len(ex.hints)} for exercise {ex.id}: {ex.hints[number]}"


def hint(id: str) -> None:
    """Show the next hint for exercise ``id``; ask again for the next one."""
    print(next_hint(id))
