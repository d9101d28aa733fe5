"""Write a file the safe way in a folder others can write to: never through a link, never over someone else's file."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class Refused(Exception):
    """The file was not written; ``str()`` is one line saying why, for the person who ran the command."""


def _owner(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"user {uid}"


def taken(path: Path) -> str | None:
    """Why ``path`` is not ours to replace (one phrase), or None if it is free or our own file."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "is a link, not a report"
    if not stat.S_ISREG(st.st_mode):
        return "is not a file"
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return f"is {_owner(st.st_uid)}'s file"
    return None


def check_folder(folder: Path) -> None:
    """Raise :class:`Refused` unless ``folder`` is a folder we can create files in (tried, not guessed from its mode)."""
    if not folder.is_dir():
        raise Refused(f"{folder} is not a folder")
    probe = folder / f".asynclab-probe.{secrets.token_hex(6)}.tmp"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600))
    except PermissionError:
        raise Refused(f"you may not write in {folder} (ask whoever set it up for write access)") from None
    except OSError as exc:
        raise Refused(f"cannot write in {folder}: {exc.strerror or exc}") from None
    with contextlib.suppress(OSError):
        probe.unlink()


def write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Put ``data`` at ``path`` through a new temporary file and a rename; raise :class:`Refused` if it cannot be done.

    A shared drop folder (``chmod 1733``) lets every learner create files in it, links included. A
    plain ``open(path, "w")`` follows a link planted at ``path`` and overwrites whatever it points to,
    with the writer's rights. Here the bytes go to a new temporary file in the same folder (created
    with ``O_EXCL | O_NOFOLLOW``: it cannot already exist, nor be a link), which is then renamed over
    the name: a rename replaces a link itself, never its target. A name that is already taken by a
    link, by something that is not a file, or by a file another user owns is refused with a
    :class:`Refused` that says so in one line.
    """
    why = taken(path)
    if why is not None:
        raise Refused(f"{path} already exists and {why}: nothing written there")
    folder = path.parent
    temp = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"  # a dot-file: the class view never reads it
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)
    except PermissionError:
        raise Refused(f"you may not write in {folder}") from None
    except FileNotFoundError:
        raise Refused(f"there is no folder {folder}") from None
    except OSError as exc:
        raise Refused(f"cannot write in {folder}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temp, path)  # replaces a link planted since the check above, never what it points to
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(exc, PermissionError):
            raise Refused(f"{path} already exists and is not yours to replace (someone else's file)") from None
        raise Refused(f"cannot write {path}: {exc.strerror or exc}") from None
