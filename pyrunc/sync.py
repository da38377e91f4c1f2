"""Messages between `pyrunc create` and the processes it forks (one JSON object per packet).

SOCK_SEQPACKET keeps message boundaries, and EOF on the socket means the other side died, so a
crash anywhere turns into an error instead of a hang.
"""

from __future__ import annotations

import json
import socket

from pyrunc.errors import PyruncError

MAX = 65536


def pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, kind: str, fds: list[int] | None = None, **fields: object) -> None:
    fields["type"] = kind
    data = json.dumps(fields).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def recv(sock: socket.socket, expect: str, what: str) -> dict:
    """The next message, which must be `expect`; an error message from the child is raised."""
    data = sock.recv(MAX)
    if not data:
        raise PyruncError(f"{what}: the container process exited before reporting")
    msg = json.loads(data)
    if msg.get("type") == "error":
        raise PyruncError(msg.get("msg", "unknown error in the container process"))
    if msg.get("type") != expect:
        raise PyruncError(f"{what}: unexpected message {msg.get('type')!r}")
    return msg


def recv_with_fds(sock: socket.socket, expect: str, what: str) -> tuple[dict, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX, 4)
    if not data:
        raise PyruncError(f"{what}: the container process exited before reporting")
    msg = json.loads(data)
    if msg.get("type") == "error":
        raise PyruncError(msg.get("msg", "unknown error in the container process"))
    if msg.get("type") != expect:
        raise PyruncError(f"{what}: unexpected message {msg.get('type')!r}")
    return msg, fds
