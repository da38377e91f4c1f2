"""`pyrunc run`: create, start, then wait in the foreground as the container's parent.

pyrunc becomes a child subreaper before forking, so when the intermediate process exits the
container's init is reparented to us: we reap it, forward the signals we receive, and exit with
its status (128+N when a signal N killed it), as runc does.
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum
import os

from pyrunc import create, lifecycle, linux
from pyrunc.errors import PyruncError

_NOT_FORWARDED = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}


def run(root: str, container_id: str, opts: create.CreateOptions, detach: bool, keep: bool) -> int:
    if detach:
        from pyrunc import detached
        return detached.launch(root, container_id, opts, start=True)
    if not detach:
        linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
        opts.keep_pty = True
    ctr = create.create(root, container_id, opts)
    pid = ctr.pid
    try:
        if not detach:
            forward_signals(pid)
        proxy = lifecycle.start(root, container_id, wait_ready=False)
        if proxy is not None:  # NOTIFY_SOCKET: pyrunc stays the main process (MAINPID)
            proxy.run_in_background(os.getpid())
        if ctr.pty_master >= 0:
            from pyrunc import relay
            status = relay.relay_until_exit(ctr.pty_master, pid)
        elif detach:
            return 0
        else:
            status = wait_for(pid)
    except BaseException:
        lifecycle.delete(root, container_id, force=True)
        raise
    if not keep:
        lifecycle.delete(root, container_id, force=True)
    return status


def forward_signals(pid: int) -> None:
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    for sig in signal.valid_signals():
        if sig in _NOT_FORWARDED:
            continue
        try:
            signal.signal(sig, forward)
        except (OSError, ValueError):
            continue


def wait_for(pid: int) -> int:
    """Reap until the init is gone (orphans reparented to us are reaped on the way)."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            raise PyruncError("lost track of the container's init process") from None
        if got == pid:
            return exit_code(status)


def exit_code(status: int) -> int:
    """The shell's convention, as runc reports it: the code, or 128+N for death by signal N."""
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
