"""Being the parent of a container process in the foreground (`run`, `exec`): forward the signals
we receive, reap, and exit with its status.

Its own module, not part of run.py, so that `exec` supervises without importing create and
lifecycle (about 1 M instructions of imports it never uses).
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum

from pyrunc import errors  # its classes are made on first use: errors.X at the raise sites
from pyrunc import lightos as os  # os minus its import cost: see lightos.py

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

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


def block_signals() -> set[int]:
    """Hold every signal back (pending, not lost) across a fork whose child may run the program
    before we have handlers and know its pid (exec's child does not wait for us): a signal sent
    to the CLI then is forwarded once restore_signals lets it through. Returns the mask to give
    back: the child restores it at once, the parent after forward_to (or on failure)."""
    return signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())


def restore_signals(mask: set[int]) -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def hold_signals() -> Callable[[int], None]:
    """forward_signals for `run`, installed while its init still works (create's after_fork
    hook) rather than between create and start, where its ~60 sigactions (~0.12 ms) delay the
    start byte, and for `exec` while its child sets itself up. Both hold signals back until
    the returned function names the pid to forward to (hold_back, block_signals); one let
    through before that (a failure: no process to forward to) does what it did before it was
    caught (its default action, nothing if it was ignored, Python's KeyboardInterrupt for
    SIGINT); from then on it is forwarded, as forward_signals does."""
    target = [0]
    before: dict[int, object] = {}

    def handle(signum: int, frame: object) -> None:
        if target[0]:
            try:
                os.kill(target[0], signum)
            except ProcessLookupError:
                pass
            return
        old = before.get(signum, signal.SIG_DFL)
        if callable(old):
            old(signum, frame)  # SIGINT: default_int_handler raises KeyboardInterrupt
        elif old == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)  # the default action, on this thread, now
            signal.signal(signum, handle)  # still running: it stopped us, or it is ignored
    for sig in signal.valid_signals():
        if sig in _NOT_FORWARDED:
            continue
        try:
            before[sig] = signal.signal(sig, handle)
        except (OSError, ValueError):
            continue

    def forward_to(pid: int) -> None:
        target[0] = pid
    return forward_to


_caller_mask: list[set[int]] = []  # while `run` holds signals back: the mask it was started with


def hold_back() -> set[int]:
    """`run` in the foreground, from its start until its program runs: every signal held back
    (pending, not lost) and forwarded once the program runs (let_through), as runc buffers
    them. Acting on one before (its default action on pyrunc) left a half-made container
    behind: a state directory, cgroups, an init waiting for a start that never comes.
    Returns the caller's mask, for create's children (CreateOptions.child_sigmask)."""
    mask = block_signals()
    _caller_mask.append(mask)
    return mask


def let_through() -> None:
    """The program runs: what was held back is delivered now, and forwarded."""
    if _caller_mask:
        restore_signals(_caller_mask.pop())


def drop_held() -> None:
    """`run` failed before its program ran: what was held back is dropped (there is no program
    to forward it to, and the error is on its way), and the mask given back."""
    if _caller_mask:
        mask = _caller_mask.pop()
        held = set(signal.valid_signals()) - mask - {signal.SIGKILL, signal.SIGSTOP}
        while signal.sigtimedwait(held, 0) is not None:
            pass
        restore_signals(mask)


def in_child() -> None:
    """First thing in a hook's child forked while signals are held back: the mask `run` was
    started with, which the hook gets, not ours. (create's own children get it as
    CreateOptions.child_sigmask: plain create does not load this module.)"""
    if _caller_mask:
        restore_signals(_caller_mask[0])


def wait_for(pid: int) -> int:
    """Reap until the init is gone (orphans reparented to us are reaped on the way)."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            raise errors.PyruncError("lost track of the container's init process") from None
        if got == pid:
            return exit_code(status)


def exit_code(status: int) -> int:
    """The shell's convention, as runc reports it: the code, or 128+N for death by signal N."""
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
