"""A forgotten ``await`` as a learner meets it in a notebook: named, on one screen, and never again under a later cell.

One real kernel runs the cells a learner would: exercise 1.1 with the forgotten ``await``, its try-it
cell, its check, the fix, the check again, ``%tb``. What each cell shows is asserted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

from asynclab.course.notebook import kernel_client

IMPORTS = "from fastapi import FastAPI\nfrom asynclab import check, inprocess_client, load\nfrom asynclab.standins.s01_handlers import WeatherService"
ROUTE = """def build_app(weather: WeatherService) -> FastAPI:
    app = FastAPI()

    @app.get("/weather/{{city}}")
    async def forecast(city: str) -> dict[str, str]:
        report = {call}
        return {{"city": city, "forecast": report}}

    return app"""
TRY_IT = (
    'async with inprocess_client(build_app(WeatherService())) as client:\n    print(await load(client, "/weather/oslo", n=10))'
)
CELLS = [
    IMPORTS,
    ROUTE.format(call="weather.afetch(city)"),
    TRY_IT,
    "%tb",
    'check("1.1", build_app)',
    ROUTE.format(call="await weather.afetch(city)"),
    'check("1.1", build_app)',
    "import gc\ngc.collect()\nprint('collected')",
    "import httpx\nhttpx.get('http://127.0.0.1:1/')",
    "undefined_name",
]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def text(output: Any) -> str:
    if output.output_type == "error":
        return ANSI.sub("", "\n".join(output.traceback))
    return str(output.get("text", ""))


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    folder: Path = tmp_path_factory.mktemp("tracebacks")
    with kernel_client(nb, folder, timeout=120, allow_errors=True) as client:
        client.execute()
    return [c.outputs for c in nb.cells]


def test_the_try_it_cell_names_the_forgotten_await_on_one_screen(ran: list[Any]) -> None:
    [error] = [o for o in ran[2] if o.output_type == "error"]
    shown = text(error)
    assert error.ename == "ResponseValidationError"
    assert "Cell In[3], line 2" in shown and "in forecast" in shown  # the learner's frames
    assert (
        "What happened: `forecast()` returned a coroutine from `weather.afetch(city)` instead of its result: did you forget `await`?"
        in shown
    )
    assert "What to do: Write `report = await weather.afetch(city)`." in shown
    assert "starlette" not in shown and "site-packages" not in shown  # the library's frames are hidden...
    assert re.search(
        r"\((\d+) frames of the libraries underneath are hidden: `%tb` in a new cell shows the whole traceback\.\)", shown
    )
    assert len(shown.splitlines()) <= 25


def test_tb_shows_the_whole_traceback(ran: list[Any]) -> None:
    whole = "\n".join(text(o) for o in ran[3])
    assert "starlette" in whole and "fastapi" in whole  # ...and one `%tb` away


def test_the_check_names_the_mistake_and_no_warning_is_left_for_a_later_cell(ran: list[Any]) -> None:
    [failed] = [o for o in ran[4] if o.output_type == "error"]
    assert failed.ename == "CheckFailed" and len(failed.traceback) == 1
    assert "did you forget `await`?\n   in forecast(): report = weather.afetch(city)" in text(failed)
    passed = "✅ passed · Exercise 1.1 (Unblock the weather route): 8 concurrent requests, 8 inside the weather service at once"
    assert [text(o).split(",")[0] + "," + text(o).split(",")[1] for o in ran[6]] == [passed]
    assert [text(o) for o in ran[7]] == ["collected\n"]
    assert not [o for outputs in ran for o in outputs if "never awaited" in text(o) and o.output_type == "stream"]


def test_an_error_deep_in_a_library_shows_the_learners_line_and_a_plain_error_stays_plain(ran: list[Any]) -> None:
    [connect] = [o for o in ran[8] if o.output_type == "error"]
    shown = text(connect)
    assert (
        connect.ename == "ConnectError"
        and "Cell In[9], line 2" in shown
        and "frames of the libraries underneath are hidden" in shown
    )
    [plain] = [o for o in ran[9] if o.output_type == "error"]
    assert plain.ename == "NameError" and "hidden" not in text(plain)
