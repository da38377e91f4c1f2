"""The engines' side of --console-socket, for tests: a unix socket that receives the pty master
pyrunc sends over it (SCM_RIGHTS), in a thread, while the test runs the command that sends it."""

from __future__ import annotations

import os
import socket
import threading
from typing import Self


def read_until_eio(fd: int) -> bytes:
    """A pty master's output until EOF, or EIO once the last holder of its peer is gone."""
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


class ConsoleSocket:
    """`with ConsoleSocket(path) as console:` listens at path; on leaving the block it waits for
    the receiver (10 s at most). Then console.fd is the master received (None if nothing came),
    console.error why accepting failed, console.finished whether the receiver is done; with
    read_output, console.data is all the pty showed and the master is closed."""

    def __init__(self, path: str, read_output: bool = False) -> None:
        self.path = path
        self.read_output = read_output
        self.fd: int | None = None
        self.data = b""
        self.error: OSError | None = None
        self.finished = False
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._receiver = threading.Thread(target=self._receive)

    def __enter__(self) -> Self:
        self._listener.bind(self.path)
        self._listener.listen(1)
        self._receiver.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._receiver.join(10)
            self.finished = not self._receiver.is_alive()
        finally:
            self._listener.close()

    def _receive(self) -> None:
        self._listener.settimeout(20)
        try:
            conn, _ = self._listener.accept()
        except OSError as exc:
            self.error = exc
            return
        with conn:
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
        self.fd = fds[0] if fds else None
        if self.read_output and self.fd is not None:
            self.data = read_until_eio(self.fd)
            os.close(self.fd)
