"""Run notebooks headless without port races."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # nbclient is imported on use: `import asynclab` stays light for uvicorn workers
    from nbclient import NotebookClient


@contextmanager
def kernel_client(nb: Any, folder: Path, **options: Any) -> Iterator[NotebookClient]:
    """An nbclient ``NotebookClient`` for ``nb``, run with ``folder`` as its working directory.

    On Linux and macOS its kernel talks over Unix sockets in a private temporary folder instead of
    TCP ports: a kernel picks its five ports before it binds them, and a server starting at the same
    moment (the course starts many) can take one first ("Address already in use": the kernel dies).
    The folder is removed when the block ends.
    """
    from nbclient import NotebookClient

    options.setdefault("kernel_name", "python3")
    options.setdefault("resources", {"metadata": {"path": str(folder)}})
    if os.name != "posix":
        yield NotebookClient(nb, **options)
        return
    from jupyter_client.manager import AsyncKernelManager

    sockets = tempfile.mkdtemp(prefix="asynclab-kernel-")
    try:
        manager = AsyncKernelManager(kernel_name=options["kernel_name"], transport="ipc", ip=os.path.join(sockets, "k"))
        client = NotebookClient(nb, km=manager, **options)
        client.owns_km = True  # nbclient shuts down only kernels of managers it made: this one is made for it
        yield client
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
