"""NOTIFY_SOCKET: the sd_notify proxy between a container and the supervisor (systemd) above us.

A service run as `Type=notify` is ready when its main process says READY=1 on $NOTIFY_SOCKET.
The container cannot reach that socket (another mount namespace), so, as runc does:
- create (or run) with NOTIFY_SOCKET set makes <state dir>/notify/ (0755), bind-mounts it
  read-only (nosuid, noexec, nodev) at /run/notify in the container, and gives the container's
  process NOTIFY_SOCKET=/run/notify/notify.sock;
- start (or run) binds a datagram socket there (0777, any container uid may send) before the
  user program starts, waits until a datagram carries a READY= line or the init is gone, then
  sends the supervisor that line, MAINPID (the init's host pid; the foreground `run`'s own pid,
  since pyrunc stays the main process there) and BARRIER=1 with a pipe whose closing tells us
  the supervisor has read the rest (sd_notify_barrier; we give up after 30 s with a warning).
Differences from runc: the wait ends when the init dies even under a foreground `run` (runc's
watches its own pid there and can wait forever), the supervisor's socket is connected before
the container starts (a wrong NOTIFY_SOCKET fails `start` before the program runs), and a
READY= line anywhere in a datagram counts, not only at its start.

Nothing here is imported unless NOTIFY_SOCKET is set.
"""

from __future__ import annotations

import _socket
import os
import select
import struct

from pyrunc.errors import PyruncError

DIR_NAME = "notify"
SOCKET_NAME = "notify.sock"
IN_CONTAINER_DIR = "/run/notify"
BARRIER_TIMEOUT_MS = 30_000


def setup_create(state_dir: str, cfg: dict) -> None:
    """Make the socket's directory and add its mount and env to the container's config."""
    source = os.path.join(state_dir, DIR_NAME)
    os.mkdir(source, 0o755)
    cfg["mounts"] = list(cfg.get("mounts") or []) + [{
        "destination": IN_CONTAINER_DIR, "source": source, "type": "bind",
        "options": ["bind", "nosuid", "noexec", "nodev", "ro"]}]
    proc = cfg["process"]
    proc["env"] = list(proc.get("env") or []) + [
        f"NOTIFY_SOCKET={IN_CONTAINER_DIR}/{SOCKET_NAME}"]


def _address(host: str) -> str:
    """systemd's convention: a leading '@' names an abstract socket."""
    return "\0" + host[1:] if host.startswith("@") else host


class Proxy:
    """The container-side socket and the connection to the supervisor, both made before start."""

    def __init__(self, state_dir: str, host: str, init_pid: int) -> None:
        self.host = host
        self.pidfd = os.pidfd_open(init_pid)  # the wait ends when the init does
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
        self.client = _socket.socket(_socket.AF_UNIX,
                                     _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
        try:
            self.client.connect(_address(host))
        except OSError as exc:
            self.close()
            raise PyruncError(f"NOTIFY_SOCKET={host}: cannot connect: "
                              f"{(exc.strerror or str(exc)).lower()}") from None
        # Bound through the directory's fd: a unix socket path may not exceed 107 bytes, and
        # state dirs under a long --root do.
        dfd = os.open(os.path.join(state_dir, DIR_NAME), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            short = f"/proc/self/fd/{dfd}/{SOCKET_NAME}"
            try:
                os.unlink(SOCKET_NAME, dir_fd=dfd)  # left by an earlier, failed start
            except FileNotFoundError:
                pass
            self.sock.bind(short)
            os.chmod(short, 0o777)
        except OSError as exc:
            self.close()
            raise PyruncError(f"{state_dir}/{DIR_NAME}/{SOCKET_NAME}: cannot bind the notify "
                              f"socket: {(exc.strerror or str(exc)).lower()}") from None
        finally:
            os.close(dfd)

    def close(self) -> None:
        self.sock.close()
        self.client.close()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def wait_ready(self) -> bytes | None:
        """The first READY= line the container sends, or None once the init has exited
        without sending one."""
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        poller.register(self.pidfd, select.POLLIN)
        while True:
            init_gone = any(fd == self.pidfd for fd, _ in poller.poll())
            # All that is queued counts before the init's death does: a service may send
            # STATUS=, then READY=1, then exit before we get to run; both fds are ready then.
            while True:
                try:
                    data = self.sock.recv(4096, _socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                for line in data.split(b"\n"):
                    if line.startswith(b"READY="):
                        return line
            if init_gone:
                return None

    def forward(self, ready: bytes, mainpid: int) -> None:
        """READY, then MAINPID, then a barrier: returns once the supervisor has read them."""
        self.client.send(ready + b"\n")
        self.client.send(f"MAINPID={mainpid}\n".encode())
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            self.client.sendmsg([b"BARRIER=1"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                                  struct.pack("i", write_end))])
            os.close(write_end)
            write_end = -1
            poller = select.poll()
            poller.register(read_end, select.POLLIN)
            if not poller.poll(BARRIER_TIMEOUT_MS):
                from pyrunc.log import Log
                Log.warning(f"NOTIFY_SOCKET={self.host}: no answer to BARRIER=1 after "
                            f"{BARRIER_TIMEOUT_MS // 1000} s; going on")
            elif os.read(read_end, 1):
                raise PyruncError(f"NOTIFY_SOCKET={self.host}: unexpected data on the barrier "
                                  "pipe")
        finally:
            if write_end >= 0:
                os.close(write_end)
            os.close(read_end)

    def run(self, mainpid: int) -> bool:
        """Wait for READY and forward it; True if the container said it, False if it died."""
        try:
            line = self.wait_ready()
            if line is None:
                return False
            self.forward(line, mainpid)
            return True
        except OSError as exc:
            raise PyruncError(f"NOTIFY_SOCKET={self.host}: forwarding READY: "
                              f"{(exc.strerror or str(exc)).lower()}") from None
        finally:
            self.close()

    def run_in_background(self, mainpid: int) -> None:
        """The foreground `run` keeps waiting for (or relaying) the container meanwhile; it
        calls join() before it exits."""
        import _thread

        self._done = _thread.allocate_lock()
        self._done.acquire()

        def proxy() -> None:
            try:
                self.run(mainpid)
            except PyruncError as exc:
                from pyrunc.log import Log
                Log.warning(str(exc))
            finally:
                self._done.release()
        _thread.start_new_thread(proxy, ())

    def join(self) -> None:
        """Wait for the background proxy to finish. pyrunc's exit kills its threads, and a
        service that says READY=1 and exits at once would otherwise leave the supervisor
        without READY or MAINPID whenever `run` reaped it before the thread had forwarded them.
        The init is gone by then, so only the barrier (BARRIER_TIMEOUT_MS at most) can wait."""
        self._done.acquire()
