"""The guards in conftest.py, proven: each test writes a small service with one fault, runs
pytest on it with this folder's conftest.py in a fresh process, and reads the verdict.

Every stall planted here lasts 1 s, against a 0.3 s threshold: far above it on any machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

# This service's conftest.py, loop_watchdog.py and pyproject.toml: what each run copies.
ROOT = Path(__file__).resolve().parents[1]

CLIENT = """
    from collections.abc import AsyncIterator

    import httpx
    import pytest
    from asgi_lifespan import LifespanManager

    from app.main import app

    pytestmark = pytest.mark.anyio


    @pytest.fixture(scope="{scope}")
    async def client() -> AsyncIterator[httpx.AsyncClient]:
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                yield client
"""


def run_pytest(
    folder: Path,
    files: dict[str, str],
    conftest: str | None = None,
    stalls: bool = True,
) -> str:
    """Run pytest in ``folder``: this service's conftest.py and settings, and ``files``.

    ``stalls=False`` turns the stall guard off, for a run about blockbuster alone: a loaded
    machine cannot then add a stall to its verdict.
    """
    for name in ("loop_watchdog.py", "pyproject.toml", "conftest.py"):
        shutil.copy(ROOT / name, folder / name)
    if conftest is not None:
        (folder / "conftest.py").write_text(conftest, encoding="utf-8")
    for name, text in {"app/__init__.py": "", "tests/__init__.py": "", **files}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "STALL_"))
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if not stalls:
        env["STALL_THRESHOLD"] = "0"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--color=no"]
    done = subprocess.run(
        command,
        check=False,
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout + done.stderr


def outcome(output: str) -> dict[str, int]:
    """The last line's counts: ``{"passed": 2, "errors": 2}``."""
    last = [
        line
        for line in output.splitlines()
        if re.search(r"\d+ (passed|failed|error)", line)
    ]
    counts = re.findall(r"(\d+) (passed|failed|errors?)", last[-1] if last else "")
    return {
        ("errors" if word.startswith("error") else word): int(n) for n, word in counts
    }


def test_a_wait_in_c_passes_blockbuster_and_fails_the_stall_guard(
    tmp_path: Path,
) -> None:
    """A sync psycopg 3 query waits for the server in C (libpq), below anything blockbuster
    wraps; so does a key derivation. Each test passes (blockbuster saw nothing), then fails at
    teardown: the stall guard saw the loop stuck, and shows where."""
    main = """
        import hashlib
        import select
        import time

        from fastapi import FastAPI

        app = FastAPI()


        @app.get("/orders")
        async def orders() -> list[str]:
            select.select([], [], [], 1.0)  # as a sync driver waits for its server: in C
            return []


        @app.get("/token")
        async def token() -> dict[str, str]:
            deadline = time.monotonic() + 1.0  # 1 s of CPU in C, on any machine
            while time.monotonic() < deadline:
                hashlib.pbkdf2_hmac("sha256", b"secret", b"salt", 10_000)
            return {}
    """
    tests = (
        CLIENT.format(scope="function")
        + """

    async def test_orders(client: httpx.AsyncClient) -> None:
        assert (await client.get("/orders")).json() == []


    async def test_token(client: httpx.AsyncClient) -> None:
        assert (await client.get("/token")).json() == {}
    """
    )
    output = run_pytest(tmp_path, {"app/main.py": main, "tests/test_it.py": tests})
    assert outcome(output) == {"passed": 2, "errors": 2}, output
    assert "BlockingError" not in output
    assert output.count("ERROR at teardown") == 2
    # The watchdog thread names the line; if a loaded machine kept it from looking in time,
    # the heartbeat, 1 s late, still fails the test.
    for line in ("select.select([], [], [], 1.0)", 'hashlib.pbkdf2_hmac("sha256"'):
        assert line in output or "the watchdog thread did not get to see" in output, (
            output
        )


def test_a_blocking_call_in_the_lifespan_fails_under_a_module_scoped_client(
    tmp_path: Path,
) -> None:
    """The detector is on for the whole session, so a module-scoped client's startup and
    shutdown run under it: startup fails the module's tests at setup; shutdown, the last test
    at teardown."""
    startup = """
        from collections.abc import AsyncIterator
        from contextlib import asynccontextmanager
        from pathlib import Path

        from fastapi import FastAPI

        SETTINGS = Path(__file__).with_name("settings.txt")
        SETTINGS.write_text("Hei")


        def load_greeting() -> str:
            return SETTINGS.read_text()  # a blocking file read, at startup


        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            app.state.greeting = load_greeting()
            yield


        app = FastAPI(lifespan=lifespan)


        @app.get("/")
        async def greeting() -> str:
            return app.state.greeting
    """
    shutdown = startup.replace(
        "app.state.greeting = load_greeting()\n            yield",
        'app.state.greeting = "Hei"\n            yield\n            load_greeting()',
    )
    assert shutdown != startup
    tests = (
        CLIENT.format(scope="module")
        + """

    async def test_greets(client: httpx.AsyncClient) -> None:
        assert (await client.get("/")).json() == "Hei"


    async def test_greets_again(client: httpx.AsyncClient) -> None:
        assert (await client.get("/")).json() == "Hei"
    """
    )
    output = run_pytest(
        tmp_path,
        {
            "app/main.py": startup,
            "app/stops.py": shutdown,
            "tests/test_startup.py": tests,
            "tests/test_shutdown.py": tests.replace("from app.main", "from app.stops"),
        },
        stalls=False,
    )
    assert outcome(output) == {"passed": 2, "errors": 3}, output
    assert "ERROR at setup of test_greets " in output
    assert "ERROR at setup of test_greets_again" in output
    assert "ERROR at teardown of test_greets_again" in output
    assert "Blocking call to io.TextIOWrapper.read" in output
    assert "in load_greeting" in output


def test_a_blocking_error_the_app_swallows_still_fails_the_test(tmp_path: Path) -> None:
    """The app's own `except Exception` turns the BlockingError into a fallback, FastAPI's into
    "400 There was an error parsing the body": each test fails at teardown with the
    BlockingError's own traceback."""
    main = """
        import time
        from collections.abc import Callable, Coroutine
        from pathlib import Path
        from typing import Any

        from fastapi import FastAPI, Request, Response
        from fastapi.routing import APIRoute

        AUDIT = Path(__file__).with_name("audit.log")
        CACHED = {"EUR": 1.0}


        def fetch_rates() -> dict[str, float]:
            time.sleep(0.01)  # a sync SDK
            return {"EUR": 1.0, "USD": 1.08}


        class AuditedRequest(Request):
            async def body(self) -> bytes:
                body = await super().body()
                with AUDIT.open("ab") as log:  # a blocking write, while FastAPI reads the body
                    log.write(body)
                return body


        class AuditedRoute(APIRoute):
            def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
                handler = super().get_route_handler()

                async def audited(request: Request) -> Response:
                    return await handler(AuditedRequest(request.scope, request.receive))

                return audited


        app = FastAPI()
        app.router.route_class = AuditedRoute


        @app.get("/rates")
        async def rates() -> dict[str, float]:
            try:
                return fetch_rates()
            except Exception:  # the upstream is down: serve what we had
                return CACHED


        @app.post("/orders", status_code=201)
        async def place(order: dict[str, int]) -> dict[str, int]:
            return order
    """
    tests = (
        CLIENT.format(scope="function")
        + """

    async def test_rates(client: httpx.AsyncClient) -> None:
        assert (await client.get("/rates")).status_code == 200


    async def test_order(client: httpx.AsyncClient) -> None:
        response = await client.post("/orders", json={"sku": 1})
        assert response.status_code == 201, response.text
    """
    )
    files = {"app/main.py": main, "tests/test_it.py": tests}
    output = run_pytest(tmp_path, files, stalls=False)
    assert outcome(output) == {"failed": 1, "passed": 1, "errors": 2}, output
    assert "There was an error parsing the body" in output  # what the test saw
    assert "ERROR at teardown of test_rates" in output
    assert "ERROR at teardown of test_order" in output
    for seen in (
        "in fetch_rates",
        "Blocking call to time.sleep",
        "in body",
        "log.write(body)",
    ):
        assert seen in output, (seen, output)


def test_allow_admits_every_blocking_call_of_one_function(tmp_path: Path) -> None:
    """A legacy loader stats, sleeps and reads: one line in ALLOWED admits all three, in that
    function only (the same calls elsewhere still fail). The template's own entries admit
    mimetypes reading /etc/mime.types at the first FileResponse."""
    files = {
        "app/legacy.py": """
            import time
            from pathlib import Path

            RATES = Path(__file__).with_name("rates.csv")
            RATES.write_text("EUR,1.0")


            def load_rates() -> str:
                if RATES.exists():  # os.stat
                    time.sleep(0.01)  # a retry's back-off
                    return RATES.read_text()  # io.TextIOWrapper.read
                return ""


            def load_rates_again() -> str:
                time.sleep(0.01)
                return ""
        """,
        "app/main.py": """
            from fastapi import FastAPI
            from fastapi.responses import FileResponse

            from app import legacy

            app = FastAPI()


            @app.get("/rates")
            async def rates() -> str:
                return legacy.load_rates()


            @app.get("/again")
            async def again() -> str:
                return legacy.load_rates_again()


            @app.get("/rates.csv")
            async def download() -> FileResponse:
                return FileResponse(legacy.RATES)  # guesses the type: text/csv
        """,
        "tests/test_it.py": CLIENT.format(scope="function")
        + """

    async def test_rates(client: httpx.AsyncClient) -> None:
        assert (await client.get("/rates")).json() == "EUR,1.0"


    async def test_again(client: httpx.AsyncClient) -> None:
        assert (await client.get("/again")).json() == ""


    async def test_download(client: httpx.AsyncClient) -> None:
        assert (await client.get("/rates.csv")).headers["content-type"].startswith("text/csv")
    """,
    }
    conftest = (ROOT / "conftest.py").read_text(encoding="utf-8")
    allowed = re.search(
        r"^ALLOWED: .*? = \[\n(.*?)^\]\n", conftest, re.MULTILINE | re.DOTALL
    )
    assert allowed is not None
    (tmp_path / "strict").mkdir()
    strict = run_pytest(
        tmp_path / "strict", files, conftest.replace(allowed.group(1), ""), stalls=False
    )
    assert outcome(strict) == {"failed": 3}, strict
    assert "Blocking call to os.stat" in strict and "in init" in strict  # mimetypes

    entry = '    ("app/legacy.py", "load_rates"),\n'
    (tmp_path / "allowed").mkdir()
    admitted = run_pytest(
        tmp_path / "allowed",
        files,
        conftest.replace(allowed.group(1), allowed.group(1) + entry),
        stalls=False,
    )
    assert outcome(admitted) == {"failed": 1, "passed": 2}, admitted
    assert "FAILED tests/test_it.py::test_again" in admitted
