"""The course on a real JupyterHub: three learners, each with their own server, progress run inside each.

The hub runs deploy/jupyterhub/jupyterhub_config.py (the room's configuration) on 127.0.0.1 with
random free ports, then this test swaps in TEST-ONLY shortcuts, which a room must never use:

- DummyAuthenticator with a test password (a room uses PAM: real accounts and passwords);
- SimpleLocalProcessSpawner: every learner's server runs under the test's own user ID, with a
  temporary home folder (a room runs each under the learner's own account);
- a service API token made up by the test (an instructor would create one on the hub's token page).

Through the Hub's REST API the test lists the learners and starts three servers (a fourth learner
never starts one; the instructor is an admin); through each learner's own server (the kernels API
and its websocket, the contents API) it runs `python -m asynclab progress --report reports/` and
fetches the report. Then one learner hand-edits their report to claim every exercise: the drop-folder
view believes it, and `python -m asynclab class --hub URL` (the instructor's command, with the room's
own `class-view` service token) does not: it runs progress in each running server itself. It also
checks that every learner's home folder was closed (700) before their server started. In one
learner's kernel it starts a section-7 worker group (uvicorn, 2 workers), then stops that
learner's server and checks that the worker processes are gone.

Needs jupyterhub (pip) and configurable-http-proxy (npm). The proxy is found on PATH, in
$ASYNCLAB_CHP, or in build/node/node_modules/.bin (where `.ci/run` puts it); without it the test
is skipped and says why.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from asynclab.bench.ports import free_port
from asynclab.course import authoring, classview
from asynclab.course.room import hub as room_hub
from tests.browser import required, unavailable

ROOT = authoring.ROOT
DEPLOY = ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py"
LEARNERS = ("alice", "bob", "carol")  # each starts a server
ABSENT = "dave"  # on the hub's list, never starts a server
INSTRUCTOR = "kim"  # an admin: not part of the room
TEST_PASSWORD = "test-only-not-a-room-password"  # DummyAuthenticator: any user, this password


def _proxy() -> str | None:
    for candidate in (
        os.environ.get("ASYNCLAB_CHP"),
        shutil.which("configurable-http-proxy"),
        str(ROOT / "build" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


CHP = _proxy()
try:
    import jupyterhub  # noqa: F401

    HUB = True
except ImportError:
    HUB = False

# CI (.ci/run) installs both and sets ASYNCLAB_HUB_REQUIRED=1: there a missing one fails instead of skipping.
VARIABLE = "ASYNCLAB_HUB_REQUIRED"
REQUIRED = required(VARIABLE)
_NO_HUB = "jupyterhub is not installed (pip install -r requirements-room.txt)"
_NO_PROXY = (
    "configurable-http-proxy is not installed (npm install --prefix build/node configurable-http-proxy@5.3.0, as .ci/run does)"
)
pytestmark = pytest.mark.skipif(not HUB and not REQUIRED, reason=_NO_HUB)
needs_proxy = pytest.mark.skipif(CHP is None and not REQUIRED, reason=_NO_PROXY)


@pytest.fixture(autouse=True)
def _installed_when_required() -> None:
    if REQUIRED and not (HUB and CHP):
        unavailable(_NO_HUB if not HUB else _NO_PROXY, VARIABLE)  # fails: CI must run the room test


TEST_CONFIG = """
# TEST-ONLY: the room's configuration, then shortcuts a room must never use (see tests/test_hub.py).
load_subconfig({deploy!r})
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r} + "/{{username}}"
c.Spawner.env_keep = ["PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "ASYNCLAB_TEST_RUN"]  # the suite's leftover guard
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.JupyterHub.services.append({{"name": "room-test", "api_token": {token!r}}})  # the room's class-view service stays
c.JupyterHub.load_roles.append({{"name": "room-test", "services": ["room-test"],
                                "scopes": ["admin:users", "admin:servers", "access:servers"]}})
c.JupyterHub.log_level = "INFO"
if {root!r}:  # this sandbox and CI run as root; in a room each server runs as its learner, never as root
    c.Spawner.args = [*c.Spawner.args, "--allow-root"]
"""


class Hub:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(32)  # the test's own service: starts and stops servers
        self.room_token = secrets.token_hex(32)  # the room's class-view service (deploy config), for `class --hub`
        self.log = folder / "hub.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.seen: set[int] = set()  # every process of the hub's tree we ever saw, to be sure they all end

    def start(self) -> None:
        homes = self.folder / "homes"
        homes.mkdir()
        config = self.folder / "test_config.py"
        config.write_text(
            TEST_CONFIG.format(
                deploy=str(DEPLOY),
                password=TEST_PASSWORD,
                homes=str(homes),
                hub_port=free_port(),
                api_port=free_port(),
                chp=CHP,
                token=self.token,
                root=os.geteuid() == 0,
            ),
            encoding="utf-8",
        )
        env = {
            **os.environ,
            "JPY_COOKIE_SECRET": secrets.token_hex(32),
            "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(32),
            "ASYNCLAB_ROOM_TOKEN": self.room_token,
            "ASYNCLAB_LEARNERS": ",".join((*LEARNERS, ABSENT)),
            "ASYNCLAB_INSTRUCTORS": INSTRUCTOR,
            "ASYNCLAB_HUB_URL": self.url,
            "ASYNCLAB_STATE": str(self.folder / "state"),
        }
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(config)],
                cwd=self.folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def remember(self) -> None:
        if self.process is None:
            return
        try:
            self.seen |= {p.pid for p in psutil.Process(self.process.pid).children(recursive=True)} | {self.process.pid}
        except psutil.NoSuchProcess:
            pass

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:]) if self.log.exists() else ""

    def stop(self) -> list[str]:
        """SIGTERM (the hub stops every server and its proxy), then SIGKILL for anything left; say what had to be killed."""
        self.remember()
        killed = []
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                killed.append(f"hub {self.process.pid}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and alive(self.seen):
            time.sleep(0.2)
        for pid in alive(self.seen):
            try:
                proc = psutil.Process(pid)
                killed.append(f"{pid} {' '.join(proc.cmdline()[:3])}")
                proc.kill()
            except psutil.NoSuchProcess:
                continue
        return killed


def alive(pids: set[int] | list[int]) -> list[int]:
    found = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                found.append(pid)
        except psutil.NoSuchProcess:
            continue
    return sorted(found)


async def until(what: str, probe: Any, hub: Hub, seconds: float = 120) -> Any:
    """Poll ``probe()`` until it returns something truthy; fail with the hub's log after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = await probe()
        if value:
            return value
        if hub.process is not None and hub.process.poll() is not None:
            pytest.fail(f"the hub exited ({hub.process.returncode}) while waiting for {what}:\n{hub.tail()}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {seconds:.0f} s:\n{hub.tail()}")
        await asyncio.sleep(0.3)


async def execute(hub: Hub, user: str, kernel: str, code: str, timeout: float = 240) -> str:
    """Run ``code`` in a kernel of ``user``'s server, through the proxy and the kernel's websocket, as the class view
    does (``room.hub.execute``); return what it printed, failing on an error in the kernel."""
    url = f"ws://127.0.0.1:{hub.port}/user/{user}/api/kernels/{kernel}/channels"
    printed = await room_hub.execute(url, hub.token, code, timeout)
    assert "(the kernel raised" not in printed, f"{user}'s kernel raised: {printed}"
    return printed


PROGRESS = """
import shutil, subprocess, sys
print("python on PATH:", shutil.which("python"))  # a learner's terminal finds the course's Python
done = subprocess.run([sys.executable, "-m", "asynclab", "progress", "--folder", "exercises", "--report", "reports/"],
                      capture_output=True, text=True)
print("exit", done.returncode)
print(done.stderr[-1500:])
"""

WORKERS = textwrap.dedent("""
    import json
    from asynclab.bench.workers import fresh_requests, serve_workers
    from asynclab.bench.workspace import workspace

    apps = workspace()
    (apps / "hello.py").write_text("import os\\nfrom fastapi import FastAPI\\napp = FastAPI()\\n\\n"
                                   "@app.get('/')\\nasync def root():\\n    return {'pid': os.getpid()}\\n")
    running = serve_workers("hello:app", app_dir=apps, workers=2)  # left running on purpose: the server stops with it
    server = await running.__aenter__()
    answers = await fresh_requests(server, "/")
    print(json.dumps({"group": server.running(), "workers": server.worker_pids,
                      "answered": sorted({a.pid for a in answers}), "statuses": sorted({a.status for a in answers})}))
""")


def _homes(hub: Hub) -> None:
    """alice has solved notebook 01, bob has it as handed out, carol has not started (no notebooks).

    Each home is made 755, as Debian's `useradd -m` makes it: the hub must close it before the server starts.
    """
    for name in LEARNERS:
        (hub.folder / "homes" / name / "exercises").mkdir(parents=True)
        (hub.folder / "homes" / name).chmod(0o755)
    name = authoring.exercise_name(authoring.find_solution("1"))
    shutil.copy(authoring.find_solution("1"), hub.folder / "homes" / "alice" / "exercises" / name)
    shutil.copy(ROOT / "exercises" / name, hub.folder / "homes" / "bob" / "exercises" / name)


async def _room(hub: Hub, class_folder: Path) -> dict[str, Any]:
    api = f"{hub.url}/hub/api"
    auth = {"Authorization": f"token {hub.token}"}
    async with httpx.AsyncClient(headers=auth, timeout=60) as http:

        async def hub_up() -> bool:
            try:
                return (await http.get(f"{api}/")).status_code == 200
            except httpx.TransportError:
                return False

        await until("the hub to answer", hub_up, hub)
        listed = await http.get(f"{api}/users")  # the config's allowed users exist from the start
        assert sorted(u["name"] for u in listed.json()) == sorted((*LEARNERS, ABSENT, INSTRUCTOR)), listed.text

        async def start(name: str) -> None:
            started = await http.post(f"{api}/users/{name}/server")
            assert started.status_code in (201, 202), started.text

            async def ready() -> bool:
                hub.remember()
                server = (await http.get(f"{api}/users/{name}")).json().get("servers", {}).get("")
                if server is None:
                    pytest.fail(f"{name}'s server failed to start:\n{hub.tail()}")
                return bool(server.get("ready"))

            await until(f"{name}'s server", ready, hub)

        await asyncio.gather(*(start(name) for name in LEARNERS))
        hub.remember()
        servers = {name: (await http.get(f"{api}/users/{name}")).json()["servers"][""] for name in LEARNERS}

        kernels = {}
        for name in LEARNERS:
            made = await http.post(f"{hub.url}/user/{name}/api/kernels", json={"name": "python3"})
            assert made.status_code == 201, made.text
            kernels[name] = made.json()["id"]
        outputs = await asyncio.gather(*(execute(hub, name, kernels[name], PROGRESS) for name in LEARNERS))
        for name, printed in zip(LEARNERS, outputs, strict=True):
            assert f"python on PATH: {Path(sys.executable).parent / 'python'}\nexit 0" in printed, f"{name}: {printed}"
            assert f"Report for {name} written to reports/{name}.json" in printed, printed  # named by JUPYTERHUB_USER
            got = await http.get(
                f"{hub.url}/user/{name}/api/contents/reports/{name}.json", params={"content": 1, "format": "text", "type": "file"}
            )
            assert got.status_code == 200, got.text
            (class_folder / f"{name}.json").write_text(got.json()["content"], encoding="utf-8")

        # bob hand-edits his report: every exercise solved. A drop folder would believe it; the collected view must not.
        forged = json.loads((class_folder / "bob.json").read_text(encoding="utf-8"))
        for exercise in forged["exercises"]:
            exercise.update(solved=True, seen="")
        forged["solved"] = len(forged["exercises"])
        edited = await http.put(
            f"{hub.url}/user/bob/api/contents/reports/bob.json",
            json={"type": "file", "format": "text", "content": json.dumps(forged)},
        )
        assert edited.status_code in (200, 201), edited.text
        (class_folder / "bob.json").write_text(json.dumps(forged), encoding="utf-8")

        # The instructor's command, as an instructor runs it: the room's class-view service token, nothing else.
        collected = hub.folder / "collected"
        env = {**os.environ, "JUPYTERHUB_API_TOKEN": hub.room_token}
        started = time.perf_counter()
        command = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "asynclab",
            "class",
            "--hub",
            hub.url,
            "--out",
            str(collected),
            "--csv",
            str(collected / "room.csv"),
            "--exercises",
            "exercises",
            cwd=str(hub.folder),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(command.communicate(), timeout=600)
        print(f"class --hub on {len(LEARNERS)} running servers: {time.perf_counter() - started:.1f} s")
        hub.remember()
        home_modes = {name: stat.S_IMODE((hub.folder / "homes" / name).stat().st_mode) for name in LEARNERS}

        memory = {}  # each learner's JupyterLab server process, for sizing a room (printed, not asserted)
        memory: dict[str, str] = {}
        for proc in psutil.Process(hub.process.pid).children(recursive=True) if hub.process else []:
            try:
                if any("jupyterhub-singleuser" in part for part in proc.cmdline()):
                    memory[proc.environ().get("JUPYTERHUB_USER", "?")] = f"{proc.memory_info().rss / 2**20:.0f} MB"
            except psutil.Error:
                continue
        print("single-user server memory after progress:", memory)

        workers = json.loads((await execute(hub, "alice", kernels["alice"], WORKERS, timeout=90)).strip().splitlines()[-1])
        hub.remember()
        stopped = await http.delete(f"{api}/users/alice/server")
        assert stopped.status_code in (202, 204), stopped.text

        async def alice_stopped() -> bool:
            return (await http.get(f"{api}/users/alice")).json().get("servers", {}).get("") is None

        await until("alice's server to stop", alice_stopped, hub)
        return {
            "servers": servers,
            "workers": workers,
            "class": (command.returncode, out.decode(), err.decode()),
            "collected": collected,
            "homes": home_modes,
        }


LOAD_CONFIG = """
import json, sys
from traitlets.config.loader import PyFileConfigLoader
c = PyFileConfigLoader(sys.argv[1]).load_config()
services = c.JupyterHub.services if isinstance(c.JupyterHub.services, list) else []
roles = {r["name"]: r["scopes"] for r in (c.JupyterHub.load_roles if isinstance(c.JupyterHub.load_roles, list) else [])}
print(json.dumps({"auth": c.JupyterHub.authenticator_class, "allowed": sorted(c.Authenticator.allowed_users),
                  "admins": sorted(c.Authenticator.admin_users), "args": c.Spawner.args, "url": c.JupyterHub.bind_url,
                  "services": [[x["name"], roles.get(x["name"])] for x in services],
                  "hook": c.Spawner.pre_spawn_hook.__name__}))
"""


def _load_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LOAD_CONFIG, str(DEPLOY)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_room_config_takes_its_secrets_from_the_environment(tmp_path: Path) -> None:
    names = (
        "JPY_COOKIE_SECRET",
        "CONFIGPROXY_AUTH_TOKEN",
        "ASYNCLAB_LEARNERS",
        "ASYNCLAB_ROOM_TOKEN",
        "ASYNCLAB_HUB_URL",
        "JUPYTERHUB_SSL_CERT",
        "JUPYTERHUB_SSL_KEY",
        "ASYNCLAB_TLS_IN_FRONT",
        "ASYNCLAB_INSTRUCTORS",
    )
    bare = {k: v for k, v in os.environ.items() if k not in names}
    missing = _load_config(bare)
    assert missing.returncode != 0 and "set JPY_COOKIE_SECRET in the environment" in missing.stderr, missing.stderr
    state = tmp_path / "state" / "jupyterhub"  # not there yet: the config makes it, for root alone
    env = {
        **bare,
        "JPY_COOKIE_SECRET": secrets.token_hex(32),
        "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(32),
        "ASYNCLAB_LEARNERS": "ana, ben chen",
        "ASYNCLAB_INSTRUCTORS": "kim",
        "ASYNCLAB_STATE": str(state),
    }
    done = _load_config(env)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["auth"] == "pam" and seen["allowed"] == ["ana", "ben", "chen", "kim"] and seen["admins"] == ["kim"]
    assert seen["url"] == "http://127.0.0.1:8000"  # behind a TLS proxy unless told otherwise
    server_config = Path(seen["args"][0].removeprefix("--config="))
    assert server_config == DEPLOY.with_name("jupyter_server_config.py") and server_config.is_file()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert seen["services"] == [] and seen["hook"] == "_home_is_private"

    room = _load_config({**env, "ASYNCLAB_ROOM_TOKEN": secrets.token_hex(32)})
    assert room.returncode == 0, room.stderr
    assert json.loads(room.stdout)["services"] == [["class-view", ["list:users", "read:users", "read:servers", "access:servers"]]]


@pytest.mark.parametrize(
    ("changes", "saying"),
    [
        ({"JPY_COOKIE_SECRET": "abcd"}, "JPY_COOKIE_SECRET is too short or not random enough"),
        ({"JPY_COOKIE_SECRET": "ab" * 32}, "JPY_COOKIE_SECRET is too short or not random enough"),
        (
            {"JPY_COOKIE_SECRET": "z" * 10 + secrets.token_urlsafe(40)},
            "JPY_COOKIE_SECRET is too short or not random enough",
        ),  # not hex
        ({"CONFIGPROXY_AUTH_TOKEN": "x"}, "CONFIGPROXY_AUTH_TOKEN is too short or not random enough"),
        ({"ASYNCLAB_ROOM_TOKEN": "room"}, "ASYNCLAB_ROOM_TOKEN is too short or not random enough"),
        ({"ASYNCLAB_HUB_URL": "http://0.0.0.0:8000"}, "plain HTTP beyond this machine"),
        ({"ASYNCLAB_HUB_URL": "http://class.example.org:80"}, "plain HTTP beyond this machine"),
        ({"ASYNCLAB_HUB_URL": "https://0.0.0.0:443"}, "there is no certificate"),
        ({"STATE_OPEN": "1"}, "is open to other users"),
    ],
)
def test_the_room_config_refuses_what_would_expose_the_room(tmp_path: Path, changes: dict[str, str], saying: str) -> None:
    changes = dict(changes)
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o755 if changes.pop("STATE_OPEN", None) else 0o700)
    env = {
        **os.environ,
        "JPY_COOKIE_SECRET": secrets.token_hex(32),
        "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(32),
        "ASYNCLAB_LEARNERS": "ana",
        "ASYNCLAB_STATE": str(state),
        **changes,
    }
    env.pop("ASYNCLAB_TLS_IN_FRONT", None)
    done = _load_config(env)
    assert done.returncode != 0 and saying in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_tls_in_front_is_stated_not_guessed(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "JPY_COOKIE_SECRET": secrets.token_hex(32),
        "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(32),
        "ASYNCLAB_LEARNERS": "ana",
        "ASYNCLAB_STATE": str(tmp_path / "s"),
        "ASYNCLAB_HUB_URL": "http://0.0.0.0:8000",
        "ASYNCLAB_TLS_IN_FRONT": "1",
    }
    done = _load_config(env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["url"] == "http://0.0.0.0:8000"


@needs_proxy
def test_a_room_of_three_on_a_real_jupyterhub(tmp_path: Path) -> None:
    started = time.perf_counter()
    hub = Hub(tmp_path)
    class_folder = tmp_path / "class"
    class_folder.mkdir()
    try:
        hub.start()
        _homes(hub)
        seen = asyncio.run(_room(hub, class_folder))
        workers = seen["workers"]
        # Section 7 inside a learner's server: two workers both answered...
        assert len(workers["workers"]) == 2 and workers["answered"] == sorted(workers["workers"]) and workers["statuses"] == [200]
        # ...and the whole uvicorn group ended with the learner's server (waiting, with a deadline, for it to go).
        deadline = time.monotonic() + 30
        while alive(workers["group"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert alive(workers["group"]) == [], "uvicorn processes outlived alice's server"
    finally:
        killed = hub.stop()
        print(f"hub test: {time.perf_counter() - started:.1f} s")
    assert killed == [], f"had to be killed after the hub stopped: {killed}"

    # Every home folder was made 755 (Debian's useradd -m); the hub closed each before its server started.
    assert seen["homes"] == dict.fromkeys(LEARNERS, 0o700)

    # The reports the learners wrote record the course version (the shared install's commit), and a drop
    # folder's view believes them all, bob's hand-edited one too.
    version = json.loads((class_folder / "alice.json").read_text(encoding="utf-8"))["course"]["commit"]
    assert re.fullmatch("[0-9a-f]{40}", version or "")
    dropped = classview.load([class_folder], version=version)
    assert dropped.warnings == [] and [x.name for x in dropped.learners] == list(LEARNERS)
    bob = dropped.learners[1]
    assert bob.results and bob.count(dropped.exercises) == len(bob.results)  # bob's forgery, believed

    # The collected view ran progress in each learner's server itself: bob's file plays no part.
    status, out, err = seen["class"]
    assert status == 0, err
    assert out.startswith(f"{len(LEARNERS)} learners, 1 absent, ") and "Collected from the hub at http://127.0.0.1:" in out
    notes = [
        line for line in err.splitlines() if line.startswith("⚠️") and "course version" not in line
    ]  # HEAD may move meanwhile
    assert notes == [f"⚠️  warning: no server running for 1 learner(s): {ABSENT}"], err
    assert f"Not reported yet (1): {ABSENT}" in out and INSTRUCTOR not in out  # the roster is the hub's users, admins aside
    rows = list(csv.DictReader(io.StringIO((seen["collected"] / "room.csv").read_text(encoding="utf-8-sig"))))
    by = {name: [r for r in rows if r["learner"] == name] for name in (*LEARNERS, ABSENT)}
    ones = [r["exercise"] for r in by["alice"] if r["exercise"].startswith("1.")]
    assert ones and [r["exercise"] for r in by["alice"] if r["solved"] == "1"] == ones
    assert all(r["solved"] == "0" for r in by["bob"]) and all(
        r["observation"] and "is missing:" not in r["observation"] for r in by["bob"] if r["exercise"] in ones
    )  # his check ran and said why
    assert all(r["solved"] == "0" and "is missing:" in r["observation"] for r in by["carol"])
    assert {r["status"] for r in by[ABSENT]} == {"absent"}
    assert all(r["source"] == f"{r['learner']}'s server" for name in LEARNERS for r in by[name])
    assert "Where the room is stuck, up to 1.1, the furthest exercise half the room has solved" in out
    assert "1.1 Unblock the weather route: 2 of 3 have not solved it" in out
    assert (seen["collected"] / classview.HTML_NAME).is_file()
