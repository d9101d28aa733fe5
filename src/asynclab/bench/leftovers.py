"""Prove that a notebook leaves nothing running: no child process, no listening port."""

from __future__ import annotations

import psutil


def _listening_ports(proc: psutil.Process) -> set[tuple[str, int]]:
    try:
        conns = proc.net_connections(kind="inet")
    except (psutil.AccessDenied, psutil.NoSuchProcess):  # pragma: no cover - platform dependent
        return set()
    return {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN and c.laddr}


def _children(proc: psutil.Process) -> set[int]:
    return {p.pid for p in proc.children(recursive=True) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE}


_ME = psutil.Process()
_BASELINE_PORTS = _listening_ports(_ME)  # the kernel's own sockets, open before the course was imported
_BASELINE_CHILDREN = _children(_ME)


def leftovers() -> list[str]:
    """What this process started since asynclab was imported and has not stopped."""
    from asynclab.bench.process_group import running_groups  # worker processes whose parent died are no longer our children

    found = [f"a port listening on {ip}:{port}" for ip, port in sorted(_listening_ports(_ME) - _BASELINE_PORTS)]
    found += [f"uvicorn process group {group} (processes {pids})" for group, pids in running_groups().items()]
    for pid in sorted(_children(_ME) - _BASELINE_CHILDREN):
        try:
            found.append(f"process {pid} ({' '.join(psutil.Process(pid).cmdline()[:3])})")
        except psutil.NoSuchProcess:
            continue
    return found


def nothing_left_running() -> None:
    """Assert that no server, worker process or open port outlives the notebook; say so in one line.

    It prints the line and returns nothing, so a notebook's last cell shows it once, not twice.
    """
    found = leftovers()
    assert not found, "still running: " + "; ".join(found)
    print("✅ nothing left running: no server, no worker process, no open port.")
