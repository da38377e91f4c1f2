"""Messages between `pyrunc create` and the processes it forks (one JSON object per packet).

SOCK_SEQPACKET keeps message boundaries, and EOF on the socket means the other side died, so a
crash anywhere turns into an error instead of a hang.
"""

from __future__ import annotations

import _socket
import _struct as struct  # not `struct`: it only re-exports _struct (~0.25 M instructions)

from pyrunc import (
    errors,  # its classes are made on first use: errors.X at the raise sites
    jsonlite,
)
from pyrunc import lightos as os  # os minus its import cost: see lightos.py

MAX = 65536
MAX_FDS = 32  # in one message: a direct init's join files (one per cgroup hierarchy) the most


# _socket, not socket: the socket module imports enum and selectors (~3.5 ms) for nothing we use.
Socket = _socket.socket


def pair() -> tuple[Socket, Socket]:
    return _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)


def send(sock: Socket, kind: str, fds: list[int] | None = None, **fields: object) -> None:
    fields["type"] = kind
    data = jsonlite.dumps(fields).encode()
    text = fields.get("msg")
    if len(data) > MAX // 2 and isinstance(text, str):
        # An error naming a megabyte-long path from config.json must still fit one packet.
        fields["msg"] = f"{text[:2048]}...{text[-1024:]}"
        data = jsonlite.dumps(fields).encode()
    if fds:
        # struct, not array: importing array pulls in collections (~3 ms).
        sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                               struct.pack(f"{len(fds)}i", *fds))])
    else:
        sock.send(data)


def _decode(data: bytes, expect: str, what: str) -> dict:
    if not data:
        raise errors.PyruncError(f"{what}: the container process exited before reporting")
    msg = jsonlite.loads(data)
    if msg.get("type") == "error":
        raise errors.PyruncError(msg.get("msg", "unknown error in the container process"))
    if msg.get("type") != expect:
        raise errors.PyruncError(f"{what}: unexpected message {msg.get('type')!r}")
    return msg


def recv(sock: Socket, expect: str, what: str) -> dict:
    """The next message, which must be `expect`; an error message from the child is raised."""
    return _decode(_recvmsg(sock, 0)[0], expect, what)


def _recvmsg(sock: Socket, ancsize: int, flags: int = 0) -> tuple:
    """A peer that exits with a message of ours still unread (a direct init that failed before
    reading "cgroups") leaves ECONNRESET pending here, reported once, before what it sent us
    (its error message): read on past it."""
    try:
        return sock.recvmsg(MAX, ancsize, flags)
    except ConnectionResetError:
        return sock.recvmsg(MAX, ancsize, flags)


def wait_closed(sock: Socket) -> None:
    """Block until every other holder of the peer end has closed it (exit or close-on-exec)."""
    while sock.recv(MAX):
        pass


def recv_with_fds(sock: Socket, expect: str, what: str, most: int = 4,
                  cloexec: bool = False) -> tuple[dict, list[int]]:
    """The next message and the fds (at most `most`) that came with it."""
    fds: list[int] = []
    data, ancdata, _flags, _addr = _recvmsg(sock, _socket.CMSG_LEN(4 * most),
                                            _socket.MSG_CMSG_CLOEXEC if cloexec else 0)
    for level, kind, payload in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds.extend(struct.unpack(f"{usable // 4}i", payload[:usable]))
    return _decode(data, expect, what), fds


def raise_reported_error(sock: Socket) -> None:
    """The child is gone while the parent was busy (e.g. joining it to its cgroups): raise the
    error it reported before exiting, if any, so the user sees the cause and not our ESRCH."""
    while True:
        data, ancdata, _flags, _addr = _recvmsg(sock, _socket.CMSG_LEN(4 * 4))
        for level, kind, payload in ancdata:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                for fd in struct.unpack(f"{usable // 4}i", payload[:usable]):
                    os.close(fd)
        if not data:
            return
        msg = jsonlite.loads(data)
        if msg.get("type") == "error":
            raise errors.PyruncError(msg.get("msg", "unknown error in the container process"))
