"""`start`: let a created container's init execve the user's program, and report how that went."""

from __future__ import annotations

import select  # here, not in wait_for_exec: the preload then creates it (~75 K instructions less)
from posix import environ as _environ  # bytes keys; os.environ would import os (lightos.py)
from posix import stat as _stat

from pyrunc import errors, state
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.state import locked, writable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyrunc.notify import Proxy


def start(root: str, container_id: str, wait_ready: bool = True,
          ctr: state.Container | None = None) -> Proxy | None:
    """Let the init execve the user program. With NOTIFY_SOCKET (notify.py), return only once
    the container said READY=1 (or died); with wait_ready False, return the proxy for `run`."""
    ctr = locked(root, container_id, ctr)
    fd, proxy = release(ctr)
    return finish(ctr, fd, proxy, wait_ready)


def release(ctr: state.Container) -> tuple[int, Proxy | None]:
    """start's first half, on a locked container: check that it can start, then write the byte
    the waiting init reads. Returns the fifo (open: finish waits on it) and the NOTIFY_SOCKET
    proxy, if any. `run` calls it from within create, as soon as the state is final."""
    status = ctr.status()
    if status == "stopped":
        raise errors.InvalidState("cannot start a container that has stopped")
    if status != "created":
        raise errors.InvalidState(f"cannot start an already {status} container")
    state.pause_point("start:locked")
    writable(ctr)
    proxy: Proxy | None = None
    host = _environ.get(b"NOTIFY_SOCKET")
    if host and os.path.isdir(ctr.path("notify")):
        from pyrunc import notify
        try:
            proxy = notify.Proxy(ctr.dir, os.fsdecode(host), ctr.pid)
        except ProcessLookupError:
            raise errors.InvalidState("cannot start a container that has stopped") from None
    try:
        # O_NONBLOCK: if no reader is left (the init died), this fails at once with ENXIO
        # instead of blocking forever.
        fd = os.open(ctr.path(state.FIFO), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        import errno  # here, not at the top: its table costs every short command ~0.2 M instructions
        if exc.errno in (errno.ENXIO, errno.ENOENT):
            # An init that failed after create returned (its last steps before the wait,
            # where the trampoline waits) said why in START_ERROR.
            died = _start_error(ctr)
            if died:
                raise errors.PyruncError(died) from None
            raise errors.InvalidState("cannot start a container that has stopped") from None
        raise
    try:
        # Unlink first, write second: if we die in between, the init reads EOF and exits (the
        # container reads "stopped"); after the write it runs and no fifo says "created".
        os.unlink(ctr.path(state.FIFO))
        state.pause_point("start:after-unlink")
        os.write(fd, b"0")
    except BaseException:
        os.close(fd)
        raise
    return fd, proxy


def finish(ctr: state.Container, fd: int, proxy: Proxy | None,
           wait_ready: bool = True) -> Proxy | None:
    """start's second half, once release wrote: wait until the program runs (closing the
    fifo), report why it did not, run the poststart hooks and unlock."""
    # While the init wakes up and execs (on the other CPU, usually): whether there can be
    # poststart hooks at all, which reads config.json but parses it only if so.
    hooks = ctr.may_have("poststart")
    try:
        wait_for_exec(fd)
    finally:
        os.close(fd)
    state.pause_point("start:after-write")
    died = _start_error(ctr)
    if died:
        # The init is gone (a startContainer hook failed, or execve did): the container is
        # stopped, and `start` says why (runtime-spec lifecycle step 7).
        ctr.unlock()
        raise errors.PyruncError(died)
    if hooks:  # lifecycle.py (~11 KB of code to load) only for a config that may have them
        from pyrunc.lifecycle import run_late_hooks
        run_late_hooks(ctr, "poststart", "running")
    ctr.unlock()  # kill and delete must not wait behind a container that never gets ready
    if proxy is not None and wait_ready:
        proxy.run(ctr.pid)
        return None
    return proxy


def _start_error(ctr: state.Container) -> str:
    """The last line the init left in START_ERROR (why it never ran the program), or ""."""
    try:  # one stat for the usual empty file, instead of open, read and close
        if _stat(ctr.path(state.START_ERROR)).st_size == 0:
            return ""
        fd = os.open(ctr.path(state.START_ERROR), os.O_RDONLY | os.O_CLOEXEC)
        try:  # posix, not open(): io's layers cost ~9 syscalls for this (usually empty) file
            raw = b""
            while chunk := os.read(fd, 65536):
                raw += chunk
        finally:
            os.close(fd)
    except FileNotFoundError:
        return ""
    if raw[:1] == b"\0":  # the exec trampoline's report of a failed execve (exeguard.py)
        from pyrunc.exeguard import failure
        raw = f"container process: {failure(raw)}".encode()
    died = raw.decode(errors="replace").strip()
    return died.splitlines()[-1].removeprefix("pyrunc: ") if died else ""


def wait_for_exec(fifo_fd: int) -> None:
    """Return once the init has exec'd the user's program (or died).

    The init keeps its close-on-exec read end of the fifo open until execve, and a fifo's
    writer sees POLLERR once no reader is left. Without this, `start` returned while the init
    was still between the fifo and execve: a `kill` right after it could reach a program that
    had not yet installed its signal handlers (runtime-tools' killsig), and poststart hooks
    ran before the program did.
    """
    poller = select.poll()
    poller.register(fifo_fd, 0)  # POLLERR/POLLHUP are always reported
    while True:
        try:
            if poller.poll():
                return
        except InterruptedError:
            continue
