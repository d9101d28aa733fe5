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


@pytest.fixture
def on_postgres() -> None:
    """For a test of what PostgreSQL (and Redis) do: skipped, with the reason, unless the run is on them.

    The run is on them with ``ASYNCLAB_STACK=postgres``; with ``ASYNCLAB_STACK_REQUIRED=1`` too (CI),
    a missing server fails the test instead of skipping it.
    """
    from asynclab.bench import stack

    try:
        here = stack.postgres_here()
    except stack.StackUnavailable as missing:
        if stack.required():
            pytest.fail(str(missing))
        pytest.skip(str(missing))
    if not here:
        if stack.required():
            pytest.fail("ASYNCLAB_STACK_REQUIRED=1 but ASYNCLAB_STACK is not 'postgres'")
        pytest.skip("runs on PostgreSQL and Redis only: set ASYNCLAB_STACK=postgres (README, 'The production stack')")
