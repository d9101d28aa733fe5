from __future__ import annotations

import pytest

from asynclab.checking import CheckFailed, check


def passes(exercise: str, *answer: object) -> str:
    """Run a check in the test process; return its ✅ line."""
    return check(exercise, *answer)


def fails(exercise: str, *answer: object, saying: str) -> CheckFailed:
    """Run a check that must fail, and whose message must contain ``saying``."""
    with pytest.raises(CheckFailed) as info:
        check(exercise, *answer)
    assert saying in str(info.value), str(info.value)
    return info.value
