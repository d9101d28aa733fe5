"""Text a learner reads at the end of a burst and of every lesson (issue 13, item 8)."""

from __future__ import annotations

import pytest

from asynclab.bench import leftovers
from asynclab.bench.leftovers import nothing_left_running
from asynclab.bench.load import NO_ANSWER, LoadReport, RequestResult


def test_a_summary_names_status_codes_as_http_statuses() -> None:
    results = [RequestResult(i, 200, 0.0, 0.2, None) for i in range(9)] + [RequestResult(9, NO_ANSWER, 0.0, 0.5, None)]
    summary = LoadReport(results, wall=2.04, max_in_flight=1).summary()
    assert (
        summary == "10 requests (1 × no answer, 9 × HTTP 200) · at most 1 in flight · 2.04 s"
    )  # never "9 × 200" next to seconds


def test_nothing_left_running_says_it_once(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # What this test process has running depends on the tests that ran before it on the same worker
    # (kernels still shutting down): only the wording is under test here.
    monkeypatch.setattr(leftovers, "leftovers", list)
    assert nothing_left_running() is None  # a notebook's last cell shows the printed line only, not a repr too
    assert capsys.readouterr().out.count("nothing left running") == 1
