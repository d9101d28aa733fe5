"""Waiting until a condition holds, asked every few milliseconds: an order of events decides, not a sleep."""

from __future__ import annotations

from collections.abc import Callable

import anyio


async def until(condition: Callable[[], bool], *, timeout: float = 5.0) -> bool:
    """Wait (at most ``timeout`` s) until ``condition()`` is true; say whether it is.

    For a cell that holds requests on an event: wait until they have all reached the point you
    want to show (so many inside, so many failed), then release them. No sleep decides the outcome.
    """
    with anyio.move_on_after(timeout):
        while not condition():
            await anyio.sleep(0.005)
    return condition()


async def wait_until(condition: Callable[[], bool], timeout: float = 2.0, what: str = "the condition") -> None:
    """Poll ``condition`` every 5 ms until it holds; raise ``TimeoutError`` naming ``what`` after ``timeout`` s."""
    if not await until(condition, timeout=timeout):
        raise TimeoutError(f"{what} did not happen within {timeout:.1f} s")
