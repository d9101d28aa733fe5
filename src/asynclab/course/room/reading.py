"""Report files: found without following links, read with a size cap, parsed and checked, or named in one line."""

from __future__ import annotations

import codecs
import datetime as dt
import json
import math
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asynclab.course import report as report_format
from asynclab.course.room.plain import plain

MAX_BYTES = 1_000_000  # a genuine report of 25 exercises is about 10 kB
MAX_FILES = 2000
MAX_DEPTH = 3  # reports/, reports/<group>/, reports/<group>/<day>/
MAX_NESTING = 8  # a report nests 3 deep (report > exercises > exercise)
NAME_LIMIT = report_format.NAME_LIMIT  # characters in a learner's name
TEXT_LIMIT = 300  # characters kept of an observation or a title
MISSING_NOTEBOOK = "the notebook is missing"  # progress's trouble for a notebook not there: not started, not broken

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not wait for a writer
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BY_FD = os.open in os.supports_dir_fd and os.scandir in os.supports_fd and bool(_NOFOLLOW)
LINK = "a link, not followed (a report is a file of its own); left out"


@dataclass
class Raw:
    """A candidate report's bytes and where they came from (a path, or "alice's server" on a hub)."""

    source: str
    data: bytes
    name: str = ""  # the file's own name, for short mentions ("also in ana.json")
    identity: tuple[int, int] | None = None  # device and inode: the same file reached twice is read once
    owner: str = ""  # on a hub: the user whose server made it, which is the learner whatever the report says


@dataclass
class Outcome:
    solved: bool
    seen: str = ""  # what the check saw when it did not pass
    seconds: float | None = None
    broken: str = ""  # why the exercise's notebook did not run to its check ('' if it did)


@dataclass
class Report:
    """One usable report, every string in it already plain text."""

    source: str
    name: str  # the file's name, or the hub user
    learner: str
    ran_at: dt.datetime
    version: str
    results: dict[str, Outcome]  # only the course's exercises; titles and sections come from the course, not the report


class Unusable(Exception):
    """A file that is not a usable report; ``str()`` says why, in a few words."""


# --- Finding files -------------------------------------------------------------------------------


def _mode(path: Path) -> str:
    try:
        st = path.lstat()
        import pwd

        return f"mode {stat.S_IMODE(st.st_mode):o}, owner {pwd.getpwuid(st.st_uid).pw_name}"
    except (OSError, ImportError, KeyError):
        return "its permissions"


def _permission_line(path: Path, what: str) -> str:
    return (
        f"{path}: you may not {what} ({_mode(path)}). A drop folder made with chmod 1733 lets learners write into it "
        "but only its owner and root list and read it: run the command as the folder's owner, or with sudo"
    )


def _read_fd(fd: int) -> tuple[bytes, tuple[int, int]]:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "not a file"
        )
        raise Unusable(f"{kind}, not a report file; left out unread")
    if st.st_size > MAX_BYTES:
        raise Unusable(
            f"{st.st_size / 1e6:.1f} MB, far larger than any report (at most {MAX_BYTES // 1_000_000} MB); left out unread"
        )
    chunks, size = [], 0
    while size <= MAX_BYTES:
        chunk = os.read(fd, MAX_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > MAX_BYTES:  # it grew while we read it
        raise Unusable(f"larger than any report (at most {MAX_BYTES // 1_000_000} MB); left out")
    return b"".join(chunks), (st.st_dev, st.st_ino)


def _open_read(name: str | Path, dir_fd: int | None, shown: Path) -> Raw:
    flags = os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd) if dir_fd is not None else os.open(name, flags)
    except PermissionError:
        raise Unusable(f"you may not read it ({_mode(shown)}): run the command as the folder's owner, or with sudo") from None
    except OSError as exc:
        if os.path.islink(shown):  # ELOOP from O_NOFOLLOW
            raise Unusable(LINK) from None
        raise Unusable(f"cannot be opened ({exc.strerror or type(exc).__name__}); left out") from None
    try:
        data, identity = _read_fd(fd)
    finally:
        os.close(fd)
    return Raw(str(shown), data, shown.name, identity)


def _entries(path: Path, dir_fd: int | None) -> list[os.DirEntry[str]]:
    with os.scandir(dir_fd if dir_fd is not None else path) as listing:
        return sorted(listing, key=lambda e: e.name)


def _walk(path: Path, dir_fd: int | None, depth: int, raws: list[Raw], warnings: list[str], budget: list[int]) -> None:
    try:
        entries = _entries(path, dir_fd)
    except PermissionError:
        warnings.append(_permission_line(path, "list this folder"))
        return
    except OSError as exc:
        warnings.append(f"{path}: cannot be listed ({exc.strerror or type(exc).__name__})")
        return
    for entry in entries:
        shown = path / entry.name
        if entry.name.startswith("."):
            continue  # a report being written (.ana.json.1a2b.tmp), .ipynb_checkpoints, ...
        try:
            is_link = entry.is_symlink()
            is_dir = not is_link and entry.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if is_link:
            warnings.append(f"{shown}: {LINK}")
            continue
        if is_dir:
            if depth >= MAX_DEPTH:
                continue
            if dir_fd is None:
                _walk(shown, None, depth + 1, raws, warnings, budget)
                continue
            try:
                sub = os.open(entry.name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=dir_fd)
            except PermissionError:
                warnings.append(_permission_line(shown, "list this folder"))
                continue
            except OSError:
                warnings.append(f"{shown}: {LINK}")  # swapped for a link since the listing
                continue
            try:
                _walk(shown, sub, depth + 1, raws, warnings, budget)
            finally:
                os.close(sub)
            continue
        if not entry.name.endswith(".json"):
            continue
        if budget[0] <= 0:
            if budget[0] == 0:
                warnings.append(f"{shown}: more than {MAX_FILES} report files; this one and the rest are not read")
                budget[0] = -1
            continue
        budget[0] -= 1
        try:
            raws.append(_open_read(entry.name if dir_fd is not None else shown, dir_fd, shown))
        except Unusable as why:
            warnings.append(f"{shown}: {why}")


def gather(paths: Iterable[str | Path], warnings: list[str]) -> list[Raw]:
    """The bytes of every candidate report under ``paths`` (files, or folders of them); what cannot be read becomes a warning.

    A folder named on the command line is used even if it is a link (you chose it); nothing inside
    it is followed. A file named on the command line is never read through a link either.
    """
    raws: list[Raw] = []
    budget = [MAX_FILES]
    seen: set[tuple[int, int]] = set()
    for given in paths:
        path = Path(given)
        try:
            st = path.stat()
        except PermissionError:
            warnings.append(f"{path}: you may not reach it (a folder on the way is closed to you)")
            continue
        except OSError:
            if path.is_symlink():
                warnings.append(f"{path}: a link to nothing; left out")
            else:
                warnings.append(f"{path}: no such file or folder")
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        if stat.S_ISDIR(st.st_mode):
            before = len(raws)
            if _BY_FD:
                try:
                    fd = os.open(path, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
                except PermissionError:
                    warnings.append(_permission_line(path, "list this folder"))
                    continue
                try:
                    _walk(path, fd, 0, raws, warnings, budget)
                finally:
                    os.close(fd)
            else:  # pragma: no cover - Windows: no dir_fd; links are still skipped by the listing
                _walk(path, None, 0, raws, warnings, budget)
            if len(raws) == before and not any(w.startswith(f"{path}") for w in warnings):
                warnings.append(f"{path}: no .json reports in this folder")
        else:
            try:
                raws.append(_open_read(path, None, path))
            except Unusable as why:
                warnings.append(f"{path}: {why}")
    unique: dict[object, Raw] = {}  # the same file reached twice (a folder, and a file in it): read once
    for raw in raws:
        unique.setdefault(raw.identity or raw.source, raw)
    return list(unique.values())


# --- Parsing and checking ------------------------------------------------------------------------


class _Refused(ValueError):
    pass


def _no_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Refused(f"the key {plain(k, 40)!r} is given twice in one object (hand-edited?)")
        out[k] = v
    return out


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {plain(text, 20)} is too large")
    return value


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > 18:
        raise _Refused(f"a number {len(text)} digits long")
    return int(text)


def _constant(text: str) -> None:
    raise _Refused(f"{text} is not a number JSON allows")


def _too_deep(data: Any) -> bool:
    level: list[Any] = [data]
    for _ in range(MAX_NESTING):
        level = [v for x in level for v in (x.values() if isinstance(x, dict) else x if isinstance(x, list) else ())]
        if not level:
            return False
    return True


def decode(data: bytes) -> Any:
    """The JSON in ``data``, or :class:`Unusable` saying in a few words why not."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]  # Notepad and PowerShell 7's "utf8BOM": fine
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data[:4]:
        raise Unusable(
            "saved as UTF-16 (Windows PowerShell 5's `>` does that), not UTF-8; "
            "write it with `progress --report FOLDER/` instead of `>`; left out"
        )
    if not data.strip():
        raise Unusable("empty; left out")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unusable(f"not UTF-8 text (byte {exc.start} is not); left out") from None
    try:
        parsed = json.loads(text, object_pairs_hook=_no_twice, parse_float=_number, parse_int=_integer, parse_constant=_constant)
    except _Refused as exc:
        raise Unusable(f"{exc}; left out") from None
    except RecursionError:
        raise Unusable("JSON nested far deeper than a report; left out") from None
    except json.JSONDecodeError as exc:
        raise Unusable(f"not complete JSON (cut short or hand-edited?): {exc.msg} at line {exc.lineno}; left out") from None
    except ValueError as exc:  # pragma: no cover - anything else json refuses
        raise Unusable(f"not JSON ({plain(exc, 80)}); left out") from None
    if _too_deep(parsed):
        raise Unusable("JSON nested far deeper than a report; left out")
    return parsed


_VALIDATOR: Any = None


def _schema_problem(data: Any) -> str | None:
    global _VALIDATOR
    import jsonschema

    if _VALIDATOR is None:
        _VALIDATOR = jsonschema.Draft202012Validator(report_format.SCHEMA)
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(data))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "the top level"
    value = error.instance
    if error.validator == "pattern" and where.endswith("/id"):
        return f"exercise id {plain(repr(value), 24)} is not a number such as 1.1"
    if error.validator == "pattern" and where == "ran_at":
        return f"ran_at {plain(repr(value), 40)} is not a time such as 2026-11-30T12:00:00Z"
    if error.validator == "pattern" and where == "course/commit":
        return f"course commit {plain(repr(value), 50)} is not a git commit"
    if error.validator == "maxLength" and where == "learner":
        return f"the learner name is {len(value)} characters long (at most {NAME_LIMIT})"
    if error.validator == "maxItems" and where == "exercises":
        return f"it lists {len(value)} exercises, more than any course has"
    return f"at {plain(where, 60)}: {plain(error.message, 100)}"


def _when(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Unusable(f"ran_at {plain(repr(text), 40)} is not a real date and time; left out") from None
    if when.tzinfo is None:  # pragma: no cover - the schema's pattern asks for Z or an offset
        raise Unusable("ran_at has no time zone; left out")
    return when.astimezone(dt.UTC)


def check(raw: Raw, course: set[str], notes: list[str]) -> Report:
    """The usable report in ``raw`` (exercises outside ``course`` dropped, with a note), or :class:`Unusable`."""
    data = decode(raw.data)
    problem = _schema_problem(data)
    if problem is not None:
        raise Unusable(f"not a progress report in the {report_format.FORMAT} format: {problem}; left out")
    learner = plain(raw.owner or data["learner"], NAME_LIMIT)
    if not learner:
        raise Unusable("the learner name has no visible characters; left out")
    ran_at = _when(data["ran_at"])
    entries = data["exercises"]
    ids = [e["id"] for e in entries]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise Unusable(f"exercise {twice[0]} is listed {ids.count(twice[0])} times (hand-edited?); left out")
    broken = {
        t["notebook"]: plain(f"cell {t['cell']}: {t['what']}" if t.get("cell") else t["what"], TEXT_LIMIT)
        for t in data.get("troubles", [])
        if t["what"] != MISSING_NOTEBOOK
    }
    results: dict[str, Outcome] = {}
    foreign: list[str] = []
    for e in entries:
        if e["id"] not in course:
            foreign.append(e["id"])
            continue
        seconds = e.get("seconds")
        results[e["id"]] = Outcome(
            e["solved"],
            "" if e["solved"] else plain(e["seen"], TEXT_LIMIT),
            float(seconds) if seconds is not None else None,
            "" if e["solved"] else broken.get(e.get("notebook", ""), ""),
        )
    if foreign:
        shown = ", ".join(foreign[:3]) + (", …" if len(foreign) > 3 else "")
        notes.append(f"{len(foreign)} exercise id(s) this course does not have ({shown}): ignored")
    course_info = data["course"]
    version = plain(course_info.get("commit") or course_info["version"], 40) or "unknown"
    return Report(raw.source, raw.name or raw.source, learner, ran_at, version, results)


def read(raws: Iterable[Raw], course: set[str], warnings: list[str]) -> Iterator[Report]:
    """Each usable report in ``raws``; every other one, and every note on a usable one, becomes one warning line.

    Every file under the folders given is a candidate if its name ends in ``.json`` (dot-files, such
    as a report still being written, are skipped). What can go wrong with one file becomes one line,
    ``<file>: <what is wrong>; left out``, and never stops the others:

    - a link (to /etc/passwd, to a file outside the folder, to another folder) is never followed, and
      nothing of what it points to is read or named; a FIFO or a device is not a file;
    - a file larger than :data:`MAX_BYTES` is not read at all; a folder is walked at most
      :data:`MAX_DEPTH` levels down, and at most :data:`MAX_FILES` files are read;
    - UTF-8 with a byte-order mark is read; UTF-16 (Windows PowerShell 5's ``>``) is named as such;
    - JSON that is cut short, nested deeper than a report, with a 5,000-digit number, ``NaN``, or a key
      given twice; a report that the schema refuses, or whose name, time or exercises are not usable.

    Only the course's own exercise ids count (the instructor's copy of the course says which): an id
    the course does not have is ignored and counted in the file's line, so a report cannot add columns.
    """
    for raw in raws:
        notes: list[str] = []
        try:
            found = check(raw, course, notes)
        except Unusable as why:
            warnings.append(f"{raw.source}: {why}")
            continue
        warnings += [f"{raw.source}: {note}" for note in notes]
        yield found
