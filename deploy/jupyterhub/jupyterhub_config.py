"""JupyterHub for a room: one machine, one JupyterLab per learner, the course from one shared venv.

Run it as root (PAM and the spawner switch to each learner's account), from the course's venv:

    sudo --preserve-env=JPY_COOKIE_SECRET,CONFIGPROXY_AUTH_TOKEN \\
        /srv/course/.venv/bin/jupyterhub -f /srv/course/deploy/jupyterhub/jupyterhub_config.py

Who logs in: PAMAuthenticator, JupyterHub's own (no extra package). Each learner has an account on
the machine with a password (docs/instructors.md, "A room", makes them). It is real login, each
learner's server runs under their own user ID, so one learner cannot read another's files.

Secrets come from the environment, never from this file, each at least 32 random bytes
(`openssl rand -hex 32`); a short or repetitive one (`abcd`, `x`) stops the hub with a line why:
- JPY_COOKIE_SECRET (required): 64 hex digits; signs the login cookies.
- CONFIGPROXY_AUTH_TOKEN (required): the hub's key to its proxy.
- ASYNCLAB_ROOM_TOKEN (optional): the token of the `class-view` service, which lets an instructor
  run `python -m asynclab class --hub URL` (with JUPYTERHUB_API_TOKEN set to it): it may list the
  users and their servers and use the running ones, nothing else.
Other settings:
- ASYNCLAB_LEARNERS (required): the learners' user names, separated by commas or spaces.
- ASYNCLAB_INSTRUCTORS: admin user names (they can start and stop servers from the admin page).
- ASYNCLAB_HUB_URL: where the hub listens (default http://127.0.0.1:8000, behind a TLS proxy).
- JUPYTERHUB_SSL_CERT / JUPYTERHUB_SSL_KEY: files, to serve HTTPS from the hub itself instead.
- ASYNCLAB_TLS_IN_FRONT=1: you state that a reverse proxy in front of the hub does TLS.
- ASYNCLAB_STATE: folder for the hub's database (default /srv/jupyterhub; made, mode 700, if missing).

TLS: learners type passwords, so the hub never serves plain HTTP off the machine. An http:// address
that is not a loopback address stops the hub, unless JUPYTERHUB_SSL_CERT is set or
ASYNCLAB_TLS_IN_FRONT=1 says that TLS ends in front of it. Either put it behind a reverse proxy
that does TLS (nginx, Caddy) and keep the default 127.0.0.1 address, or give it a certificate with
the two JUPYTERHUB_SSL_* variables and ASYNCLAB_HUB_URL=https://0.0.0.0:443.

Home folders: Debian's `useradd -m` makes them 755, which lets every learner read every other's
notebooks. docs/room.md makes the accounts with UMASK=0077 (700), and before each learner's server
starts, the pre-spawn hook below closes a home folder that is still open to others.

Sizing (measured, see docs/instructors.md): a learner's kernel holds about 150 MB, and JupyterLab
keeps one per notebook left open, so jupyter_server_config.py (next to this file) shuts idle
kernels down after 20 minutes and an idle server after an hour; the learner's files stay.

tests/test_hub.py loads this file, then swaps in test-only shortcuts (a dummy login, one shared
user ID, temporary folders) and runs it for real on 127.0.0.1.
"""

import ipaddress
import os
import re
import stat
import string
import sys
from pathlib import Path
from urllib.parse import urlsplit

c = get_config()  # noqa: F821 - JupyterHub provides get_config() to its config files


def _stop(why: str) -> None:
    sys.exit(f"jupyterhub_config.py: {why}")


def _required(name: str, why: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        _stop(f"set {name} in the environment ({why}).")
    return value


def _strong(name: str, value: str, *, hex_only: bool = False) -> str:
    """At least 32 random bytes: 64 hex digits, or 43 characters of base64; not a short or repeated pattern."""
    is_hex = all(ch in string.hexdigits for ch in value)
    enough = len(value) >= 64 if is_hex else len(value) >= 43
    if (hex_only and not is_hex) or not enough or len(set(value)) < 10:
        _stop(f"{name} is too short or not random enough: it must be at least 32 random bytes, e.g. `openssl rand -hex 32`.")
    return value


_strong(
    "JPY_COOKIE_SECRET", _required("JPY_COOKIE_SECRET", "`openssl rand -hex 32`; JupyterHub reads it from there"), hex_only=True
)
c.ConfigurableHTTPProxy.auth_token = _strong(
    "CONFIGPROXY_AUTH_TOKEN", _required("CONFIGPROXY_AUTH_TOKEN", "`openssl rand -hex 32`")
)

# --- Who may log in ------------------------------------------------------------------------------
c.JupyterHub.authenticator_class = "pam"
learners = set(re.split(r"[,\s]+", _required("ASYNCLAB_LEARNERS", "the learners' user names, e.g. 'ana,ben,chen'"))) - {""}
instructors = set(re.split(r"[,\s]+", os.environ.get("ASYNCLAB_INSTRUCTORS", ""))) - {""}
c.Authenticator.allowed_users = learners | instructors
c.Authenticator.admin_users = instructors
c.PAMAuthenticator.open_sessions = False  # no systemd-logind session per learner: fewer moving parts on a shared box

# --- Where the hub listens -----------------------------------------------------------------------
c.JupyterHub.bind_url = bind_url = os.environ.get("ASYNCLAB_HUB_URL", "http://127.0.0.1:8000")
tls = bool(os.environ.get("JUPYTERHUB_SSL_CERT"))
if tls:
    c.JupyterHub.ssl_cert = os.environ["JUPYTERHUB_SSL_CERT"]
    c.JupyterHub.ssl_key = _required("JUPYTERHUB_SSL_KEY", "the private key that goes with JUPYTERHUB_SSL_CERT")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_where = urlsplit(bind_url)
if _where.scheme == "https" and not tls:
    _stop(f"ASYNCLAB_HUB_URL is {bind_url}, but there is no certificate: set JUPYTERHUB_SSL_CERT and JUPYTERHUB_SSL_KEY.")
if (
    _where.scheme == "http"
    and not tls
    and not _loopback(_where.hostname or "")
    and os.environ.get("ASYNCLAB_TLS_IN_FRONT") != "1"
):
    _stop(
        f"ASYNCLAB_HUB_URL is {bind_url}: plain HTTP beyond this machine, and learners type passwords. Either set "
        "JUPYTERHUB_SSL_CERT and JUPYTERHUB_SSL_KEY (HTTPS from the hub), or keep 127.0.0.1 behind a reverse proxy that does "
        "TLS, or set ASYNCLAB_TLS_IN_FRONT=1 if that proxy is on another machine and TLS ends there."
    )

state = Path(os.environ.get("ASYNCLAB_STATE", "/srv/jupyterhub"))
try:
    state.mkdir(mode=0o700, parents=True, exist_ok=True)  # the hub's database and secrets: root's alone
except OSError as exc:
    _stop(f"cannot make the state folder {state} ({exc.strerror}): make it with `mkdir -p {state} && chmod 700 {state}`.")
if stat.S_IMODE(state.stat().st_mode) & 0o077:
    _stop(f"the state folder {state} is open to other users: `chmod 700 {state}` (it holds the hub's database).")
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")  # used only if JPY_COOKIE_SECRET is unset
c.ConfigurableHTTPProxy.pid_file = str(state / "jupyterhub-proxy.pid")

# --- Each learner's server -----------------------------------------------------------------------
# The hub and every learner's JupyterLab run from the course's venv: same Python, same pins.
c.Spawner.cmd = [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]
# `python` in a learner's terminal is the course's Python too (progress, reset, class).
c.Spawner.environment = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])}
# The room's stack: start the hub with ASYNCLAB_STACK=postgres (PostgreSQL and Redis installed) to run sections 4-9 on them.
c.Spawner.environment["ASYNCLAB_STACK"] = os.environ.get("ASYNCLAB_STACK", "sqlite")
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"  # each learner's home; nbgitpuller clones the course into it
c.Spawner.start_timeout = 120  # 30 servers starting at 9:00 on a busy machine
c.Spawner.http_timeout = 90
# Culling idle kernels and servers, and a clean stop that takes the kernels (and any uvicorn
# workers they started) with it: see jupyter_server_config.py next to this file.
c.Spawner.args = [f"--config={Path(__file__).with_name('jupyter_server_config.py')}"]
# Section 7 and the capstone start real uvicorn worker groups from a kernel; "Stop my server" (or
# the hub's admin page, or the idle stop) takes them with it: tests/test_hub.py checks.


def _home_is_private(spawner):
    """Before a learner's server starts: their home folder is theirs alone (700), so no one else reads their notebooks."""
    home = getattr(spawner, "home_dir", "")  # SimpleLocalProcessSpawner (tests); LocalProcessSpawner: the account's home
    if not home:
        import pwd

        try:
            home = pwd.getpwnam(spawner.user.name).pw_dir
        except KeyError:
            return  # no such account: PAM has already refused the login
    home = Path(home)
    if home.is_dir() and not home.is_symlink() and stat.S_IMODE(home.stat().st_mode) & 0o077:
        spawner.log.warning(
            "closing %s's home folder %s to other users (it was %o)", spawner.user.name, home, stat.S_IMODE(home.stat().st_mode)
        )
        home.chmod(0o700)


c.Spawner.pre_spawn_hook = _home_is_private

# --- The instructor's class view, collected from the hub -----------------------------------------
# `python -m asynclab class --hub URL` with JUPYTERHUB_API_TOKEN set to this token: the service may
# list the users, see their servers and use the running ones (it runs progress in each); no more.
room_token = os.environ.get("ASYNCLAB_ROOM_TOKEN", "").strip()
if room_token:
    c.JupyterHub.services = [{"name": "class-view", "api_token": _strong("ASYNCLAB_ROOM_TOKEN", room_token)}]
    c.JupyterHub.load_roles = [
        {
            "name": "class-view",
            "description": "python -m asynclab class --hub: list the room and run progress in each running server",
            "services": ["class-view"],
            "scopes": ["list:users", "read:users", "read:servers", "access:servers"],
        }
    ]
