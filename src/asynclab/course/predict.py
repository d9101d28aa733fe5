"""Predict, then run: a learner's guess shown beside what the lesson measured."""

from __future__ import annotations

from typing import Any

NO_GUESS = "(No prediction this time: guessing first, then looking, is what makes a result stick.)"


def _same(prediction: Any, measured: Any) -> bool:
    if isinstance(prediction, str) and isinstance(measured, str):
        return prediction.strip().casefold() == measured.strip().casefold()
    return bool(prediction == measured)


def reveal(prediction: Any, measured: Any, what: str = "") -> None:
    """Print the learner's ``prediction`` beside ``measured`` (nothing returned: the cell shows only the line).

    A lesson writes ``my_prediction = None`` in the cell before its demo and asks the learner to
    change it; ``None`` (no guess) is fine: the measurement is shown all the same.
    """
    label = f" {what}" if what else ""
    if prediction is None or prediction == "":
        print(f"Measured{label}: {measured!r}. {NO_GUESS}")
        return
    agree = _same(prediction, measured)
    verdict = "You were right." if agree else "Not what you predicted: the next cells show why."
    print(f"You predicted{label} {prediction!r}; measured {measured!r}. {verdict}")
