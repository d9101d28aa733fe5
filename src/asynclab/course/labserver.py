"""The course's JupyterLab server (loaded by ``tools/jupyter_server_config.py``), and what ``reset`` asks it."""

from __future__ import annotations

import copy
import functools
import json
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupyter_server.utils import url_escape, url_path_join
from tornado import web
from tornado.httputil import url_concat

from asynclab.course import authoring

OPEN = "asynclab/open"  # the course's start page: /asynclab/open/notebooks/00-start-here.ipynb
FILE_BROWSER_AT_ROOT = ("file-browser-path", "/")


class OpenNotebook(JupyterHandler):
    """``/asynclab/open/<path>``: on to ``/lab/tree/<path>`` with the file browser at the root, the query kept.

    A link that works when you copy it: JupyterLab prints its address with ``?token=…`` added to
    its start page. The course's start page is ``/asynclab/open/<notebook>``, with no query of its own,
    so the printed link keeps a token that works; the page sends the browser on to
    ``/lab/tree/<notebook>?file-browser-path=/``: the notebook open, the file browser at the course
    root (JupyterLab's own ``file-browser-path`` parameter). With that parameter in the start page
    itself, the printed link had two ``?`` and its token was never read.
    """

    @web.authenticated
    def get(self, path: str) -> None:
        kept = [
            (k, v.decode()) for k, values in self.request.query_arguments.items() for v in values if k != FILE_BROWSER_AT_ROOT[0]
        ]
        self.redirect(url_concat(url_path_join(self.base_url, "lab", "tree", url_escape(path)), [FILE_BROWSER_AT_ROOT, *kept]))


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Add the start page (:class:`OpenNotebook`); the config also makes :class:`CourseContents` the file manager."""
    web_app = serverapp.web_app
    web_app.add_handlers(".*$", [(url_path_join(web_app.settings["base_url"], OPEN, "(.*)"), OpenNotebook)])


@functools.cache
def kernel_language_info() -> dict[str, Any]:
    """``language_info`` as the course's kernel reports it: ipykernel on this server's Python."""
    from ipykernel.ipkernel import IPythonKernel

    return dict(IPythonKernel.language_info)


def as_the_kernel_reports(metadata: dict[str, Any]) -> dict[str, Any]:
    """A clean notebook's metadata, its language_info filled in as its kernel will report it; other metadata as it is."""
    if (
        metadata.get("kernelspec", {}).get("name") == authoring.KERNELSPEC["name"]
        and metadata.get("language_info") == authoring.LANGUAGE_INFO
    ):
        metadata["language_info"] = copy.deepcopy(kernel_language_info())
    return metadata


class CourseContents(AsyncLargeFileManager):
    """Jupyter server's own file manager, with each clean notebook's language_info filled in as it is sent.

    So lessons open unchanged: when a kernel starts, JupyterLab records the kernel's ``language_info``
    in the notebook, and a notebook whose stored value differs is marked as changed: closing an
    untouched lesson asked "Save your work?". That value names the exact Python version, so no file
    can hold it for every learner. The notebooks store ``{"name": "python"}`` (see ``authoring.clean``)
    and this server fills in the rest, as the kernel will report it, when it sends a notebook to the
    browser. The file on disk is not touched.
    """

    async def get(
        self, path: str, content: bool = True, type: str | None = None, format: str | None = None, require_hash: bool = False
    ) -> Any:
        # jupyter_server's get() has no annotations, and mypy's untyped_calls_exclude does not see through super()
        model = await super().get(  # type: ignore[no-untyped-call]
            path, content=content, type=type, format=format, require_hash=require_hash
        )
        if model.get("type") == "notebook" and model.get("content"):
            as_the_kernel_reports(model["content"]["metadata"])
        return model


# --------------------------------------------------------------------------- for reset


def open_in(path: Path, timeout: float = 10.0) -> list[str]:
    """The address of each Jupyter server on this machine that has ``path`` open (its kernel is running).

    JupyterLab keeps a notebook's session, and its kernel, until the notebook is shut down, also after
    its tab is closed. A server that does not answer, or asks for a password, is left out.
    """
    from jupyter_server.serverapp import list_running_servers

    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never goes through a proxy
    target = path.resolve()
    found = []
    for server in list_running_servers():
        headers = {"Authorization": f"token {server['token']}"} if server.get("token") else {}
        try:
            with direct.open(
                urllib.request.Request(urljoin(server["url"], "api/sessions"), headers=headers), timeout=timeout
            ) as answer:
                sessions = json.load(answer)
        except (OSError, ValueError):
            continue
        root = Path(server.get("root_dir", ""))
        if any((root / session.get("path", "")).resolve() == target for session in sessions):
            found.append(server["url"])
    return found
