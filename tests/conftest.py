from __future__ import annotations

import pytest

from asynclab.course.checking import CheckFailed, run


def passes(exercise: str, *answer: object) -> str:
    """Run a check in the test process; return its ✅ line."""
    return run(exercise, *answer)


def fails(exercise: str, *answer: object, saying: str) -> CheckFailed:
    """Run a check that must fail, and whose message must contain ``saying``."""
    with pytest.raises(CheckFailed) as info:
        run(exercise, *answer)
    assert saying in str(info.value), str(info.value)
    return info.value
