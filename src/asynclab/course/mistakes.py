"""What the learner's code did, in their terms: a forgotten ``await``, a call handed to a thread, a framework's complaint."""

from __future__ import annotations

import linecache
import re
import traceback
from dataclasses import dataclass
from typing import Any

from asynclab.course import unawaited
from asynclab.course.unawaited import Forgotten

OFFLOADERS = re.compile(r"\b(run_sync|to_thread|run_in_threadpool|run_in_executor)\(\s*(?:None\s*,\s*)?([\w.\[\]'\"]+\([^()]*\))")


@dataclass(frozen=True)
class Mistake:
    """One sentence of what happened, and what to do about it."""

    observed: str
    hint: str


def learner_line(exc: BaseException) -> tuple[str, str] | None:
    """The learner's innermost frame in ``exc``'s traceback: (function, source line)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if unawaited.is_learner(f.filename)]
    if not frames:
        return None
    return frames[-1].name, (frames[-1].line or "").strip()


def _where(caller: str | None, line: str | None) -> str:
    if caller and line:
        return f"\n   in {caller}(): {line}"
    return f" in {caller}()" if caller else ""


HOW = {
    "never": "{who} called `{call}` and never awaited the coroutine it returned",
    "returned": "{who} returned a coroutine from `{call}` instead of its result",
    "used": "{who} used the coroutine from `{call}` as if it were its result",
}


def forgot_await(seen: Forgotten, how: str = "never", *, where: bool = True) -> Mistake:
    """``forecast()`` called ``weather.afetch(city)`` and never awaited it: did you forget ``await``?"""
    if not seen.made_by_learner:
        name = seen.function
        return Mistake(
            f"the `async def` function {name}() was handed to code that only calls it (a thread's `run_sync`, a "
            f"callback): its coroutine was created and never awaited, so its work never ran{_where(seen.caller, seen.line)}",
            "Give a thread the blocking function, or await the async one directly: `await obj.method(args)`.",
        )
    who = f"`{seen.caller}()`" if seen.caller else "your code"
    fixed = seen.line.replace(seen.call, f"await {seen.call}", 1) if seen.line and seen.call in seen.line else None
    if fixed is None and seen.line and seen.call.endswith("(...)"):
        fixed = seen.line.replace(seen.call[:-5] + "(", "await " + seen.call[:-5] + "(", 1)
    return Mistake(
        HOW[how].format(who=who, call=seen.call)
        + ": did you forget `await`?"
        + (_where(seen.caller, seen.line) if where else ""),
        (f"Write `{fixed}`. " if fixed else "Put `await` before the call. ")
        + "Calling an `async def` function only creates a coroutine; `await` runs it and gives you its result.",
    )


def note(forgotten: list[Forgotten]) -> str:
    """A sentence to add to another failure: the first forgotten await Python saw during the check."""
    if not forgotten:
        return ""
    seen = forgotten[0]
    said = forgot_await(seen, where=False).observed
    return f" Python also saw this: {said}" + (f" (`{seen.line}`)" if seen.line else "")


def _in_endpoint(exc: BaseException, seen: Forgotten) -> Forgotten:
    """Where no origin was recorded (a notebook's own thread), find the call in the route FastAPI names."""
    function, filename, first = (getattr(exc, f"endpoint_{k}", None) for k in ("function", "file", "line"))
    if seen.line is not None or not (function and filename and isinstance(first, int)):
        return Forgotten(seen.function, seen.caller or function, seen.line, seen.made_by_learner)
    short = seen.function.rsplit(".", 1)[-1] + "("
    for number in range(first, first + 80):
        line = linecache.getline(filename, number)
        if not line:
            break
        if short in line and "await " + short not in line:
            return Forgotten(seen.function, function, line.strip(), seen.made_by_learner)
    return Forgotten(seen.function, function, None, seen.made_by_learner)


def _validation_errors(exc: BaseException) -> list[dict[str, Any]] | None:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return None
    try:
        found = list(errors())
    except Exception:  # noqa: BLE001 - not a validation error after all
        return None
    return [e for e in found if isinstance(e, dict)] or None


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}" if len(text) <= 40 else type(value).__name__


def _validation(exc: BaseException, errors: list[dict[str, Any]]) -> Mistake:
    function = getattr(exc, "endpoint_function", None)
    path = getattr(exc, "endpoint_path", None)
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "response") or "the answer"
    said = f"{where}: {first.get('msg', 'invalid')} (it was {_shown(first.get('input'))})"
    more = f" and {len(errors) - 1} more" if len(errors) > 1 else ""
    if type(exc).__name__ == "ResponseValidationError":
        who = f"`{function}()`" if function else "your route"
        route = f" to {path}" if path else ""
        return Mistake(
            f"{who} answered{route} with data that does not fit its declared return type: {said}{more}",
            "Return what the route's return annotation (or response_model) promises, or change the annotation.",
        )
    model = getattr(exc, "title", None) or "the model"
    return Mistake(f"data did not fit {model}: {said}{more}", "Look at the field it names: its value has the wrong type.")


def explain(exc: BaseException) -> Mistake | None:
    """What ``exc`` says about the learner's code, if it says more than its first line; None otherwise.

    Coroutines found inside a framework's complaint are closed: they are reported here, so Python has
    nothing left to warn about in a later cell.
    """
    errors = _validation_errors(exc)
    if errors is not None:
        coroutines = [c for e in errors for c in unawaited.coroutines_in(e.get("input"))]
        seen = unawaited.close(coroutines)
        if seen:
            return forgot_await(_in_endpoint(exc, seen[0]), "returned")
        return _validation(exc, errors)
    text = str(exc)
    line = learner_line(exc)
    if isinstance(exc, TypeError) and "can't be used in 'await' expression" in text:
        awaited = re.search(r"object (\w+) can't", text)
        what = awaited.group(1) if awaited else "value"
        return Mistake(
            f"your code awaited a {what}, which cannot be awaited: the function you called is a plain one, and it "
            f"already ran (blocking, on the event loop) before `await` got its result{_where(*line) if line else ''}",
            "A blocking function cannot be awaited: run it in a thread, `await anyio.to_thread.run_sync(function, *args)`, "
            "or call its async twin.",
        )
    if isinstance(exc, TypeError) and "not callable" in text and line:
        offloaded = OFFLOADERS.search(line[1])
        if offloaded:
            call = offloaded.group(2)
            function, _, args = call.partition("(")
            return Mistake(
                f"`{offloaded.group(1)}()` was given the result of `{call}`, not the function: the call already ran, "
                f"on the event loop, before any thread started{_where(*line)}",
                f"Pass the function and its arguments separately: `{offloaded.group(1)}({function}, {args.rstrip(')')})`.",
            )
    return None


MARKDOWN_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def warning_text(message: object, limit: int = 200) -> str:
    """A library's warning as one plain line: markdown links spelled out, cut only between sentences."""
    text = MARKDOWN_LINK.sub(r"\1: \2", " ".join(str(message).split()))
    if len(text) <= limit:
        return text
    sentences = re.split(r"(?<=[.!?])\s+", text)
    kept = sentences[0]
    for sentence in sentences[1:]:
        if len(kept) + 1 + len(sentence) > limit:
            break
        kept += " " + sentence
    return kept
