"""Free TCP ports on 127.0.0.1: the one place the course asks the system for one."""

from __future__ import annotations

import socket


def bound_socket() -> socket.socket:
    """A socket bound to 127.0.0.1 on a port the system chose; pass it to the server (no race for the port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    """A port that was free a moment ago, for a server in another process that binds it itself.

    Another process may take it first; prefer :func:`bound_socket` where the server can take a socket.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
