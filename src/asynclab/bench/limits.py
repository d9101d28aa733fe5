"""The bench's own time limits: when one runs out, the trouble is the bench's (a busy machine), not the code under test's.

A check catches :class:`BenchTimedOut` and says so ("the check could not start the server within
15 s: the machine is busy; run it again"), never "your code raised TimeoutError".
"""

from __future__ import annotations


class BenchTimedOut(TimeoutError):
    """A time limit of the bench itself ran out: ``what`` it could not do (``"start the server"``) within ``seconds``."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"the bench could not {what} within {seconds:g} s")
        self.what, self.seconds = what, seconds
