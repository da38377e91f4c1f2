"""Being the parent of a container process in the foreground (`run`, `exec`): forward the signals
we receive, reap, and exit with its status.

Its own module, not part of run.py, so that `exec` supervises without importing create and
lifecycle (about 1 M instructions of imports it never uses).
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum

from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.errors import PyruncError

_NOT_FORWARDED = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}


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
