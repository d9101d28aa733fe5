"""JupyterHub for a room: one machine, one JupyterLab per learner, the course from one shared venv.

Run it as root (PAM and the spawner switch to each learner's account), from the course's venv:

    sudo --preserve-env=JPY_COOKIE_SECRET,CONFIGPROXY_AUTH_TOKEN \\
        /srv/course/.venv/bin/jupyterhub -f /srv/course/deploy/jupyterhub/jupyterhub_config.py

Who logs in: PAMAuthenticator, JupyterHub's own (no extra package). Each learner has an account on
the machine with a password (docs/instructors.md, "A room", makes them). It is real login, each
learner's server runs under their own user ID, so one learner cannot read another's files.

Secrets come from the environment, never from this file:
- JPY_COOKIE_SECRET (required): 64 hex digits, `openssl rand -hex 32`; signs the login cookies.
- CONFIGPROXY_AUTH_TOKEN (required): `openssl rand -hex 32`; the hub's key to its proxy.
- ASYNCLAB_LEARNERS (required): the learners' user names, separated by commas or spaces.
- ASYNCLAB_INSTRUCTORS: admin user names (they can start and stop servers from the admin page).
- ASYNCLAB_HUB_URL: where the hub listens (default http://127.0.0.1:8000, behind a TLS proxy).
- JUPYTERHUB_SSL_CERT / JUPYTERHUB_SSL_KEY: files, to serve HTTPS from the hub itself instead.
- ASYNCLAB_STATE: folder for the hub's database (default /srv/jupyterhub).

TLS: learners type passwords, so never serve the hub over plain HTTP off the machine. Either put
it behind a reverse proxy that does TLS (nginx, Caddy) and keep the default 127.0.0.1 address, or
give it a certificate with the two JUPYTERHUB_SSL_* variables and ASYNCLAB_HUB_URL=https://0.0.0.0:443.

Sizing (measured, see docs/instructors.md): a learner's kernel holds about 150 MB, and JupyterLab
keeps one per notebook left open, so jupyter_server_config.py (next to this file) shuts idle
kernels down after 20 minutes and an idle server after an hour; the learner's files stay.

tests/test_hub.py loads this file, then swaps in test-only shortcuts (a dummy login, one shared
user ID, temporary folders) and runs it for real on 127.0.0.1.
"""

import os
import re
import sys
from pathlib import Path

c = get_config()  # noqa: F821 - JupyterHub provides get_config() to its config files


def _required(name: str, why: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        sys.exit(f"jupyterhub_config.py: set {name} in the environment ({why}).")
    return value


_required("JPY_COOKIE_SECRET", "64 hex digits, e.g. `openssl rand -hex 32`; JupyterHub reads it from there")
c.ConfigurableHTTPProxy.auth_token = _required("CONFIGPROXY_AUTH_TOKEN", "e.g. `openssl rand -hex 32`")

# --- Who may log in ------------------------------------------------------------------------------
c.JupyterHub.authenticator_class = "pam"
learners = set(re.split(r"[,\s]+", _required("ASYNCLAB_LEARNERS", "the learners' user names, e.g. 'ana,ben,chen'"))) - {""}
instructors = set(re.split(r"[,\s]+", os.environ.get("ASYNCLAB_INSTRUCTORS", ""))) - {""}
c.Authenticator.allowed_users = learners | instructors
c.Authenticator.admin_users = instructors
c.PAMAuthenticator.open_sessions = False  # no systemd-logind session per learner: fewer moving parts on a shared box

# --- Where the hub listens -----------------------------------------------------------------------
c.JupyterHub.bind_url = os.environ.get("ASYNCLAB_HUB_URL", "http://127.0.0.1:8000")
if os.environ.get("JUPYTERHUB_SSL_CERT"):
    c.JupyterHub.ssl_cert = os.environ["JUPYTERHUB_SSL_CERT"]
    c.JupyterHub.ssl_key = _required("JUPYTERHUB_SSL_KEY", "the private key that goes with JUPYTERHUB_SSL_CERT")
state = Path(os.environ.get("ASYNCLAB_STATE", "/srv/jupyterhub"))
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")  # used only if JPY_COOKIE_SECRET is unset
c.ConfigurableHTTPProxy.pid_file = str(state / "jupyterhub-proxy.pid")

# --- Each learner's server -----------------------------------------------------------------------
# The hub and every learner's JupyterLab run from the course's venv: same Python, same pins.
c.Spawner.cmd = [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]
# `python` in a learner's terminal is the course's Python too (progress, reset, class).
c.Spawner.environment = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])}
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"  # each learner's home; nbgitpuller clones the course into it
c.Spawner.start_timeout = 120  # 30 servers starting at 9:00 on a busy machine
c.Spawner.http_timeout = 90
# Culling idle kernels and servers, and a clean stop that takes the kernels (and any uvicorn
# workers they started) with it: see jupyter_server_config.py next to this file.
c.Spawner.args = [f"--config={Path(__file__).with_name('jupyter_server_config.py')}"]
# Section 7 and the capstone start real uvicorn worker groups from a kernel; "Stop my server" (or
# the hub's admin page, or the idle stop) takes them with it: tests/test_hub.py checks.
