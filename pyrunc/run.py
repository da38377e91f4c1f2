"""`pyrunc run`: create, start, then wait in the foreground as the container's parent.

pyrunc becomes a child subreaper before forking, so when the intermediate process exits the
container's init is reparented to us: we reap it, forward the signals we receive, and exit with
its status (128+N when a signal N killed it), as runc does.
"""

from __future__ import annotations

from pyrunc import create, linux, state, supervise
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.state import START_ERROR

_forward_to: list = []   # supervise.hold_signals' answer, once _after_fork ran
_released: list = []     # _start_now's outcome: start's (fifo fd, proxy), or what it raised


def _after_fork() -> None:
    """What run needs once the container exists, imported while its init builds the rootfs on
    the other core (create calls this after the fork) rather than before that fork; and the
    signal handlers (signals are held back until the program runs: run, supervise.hold_back)."""
    import pyrunc.lifecycle_delete
    import pyrunc.lifecycle_start  # noqa: F401
    _forward_to.append(supervise.hold_signals())


def _start_now(ctr: state.Container) -> None:
    """create's on_created: start's first half (its checks, then the byte the init reads once
    it waits) as soon as the init is ready and the state final, while the init still ends its
    last steps and execs the trampoline: the trampoline then finds the byte at once instead of
    waiting for create to return and start to get there (~0.3-0.5 ms of the critical path).
    What it raises is raised again by run, after create returns, where a failed start has
    always been handled (the delete with its poststop hooks), not by create's own undo."""
    from pyrunc import lifecycle_start
    try:
        if _forward_to:  # signals are forwarded once let through, after the start
            _forward_to[0](ctr.pid)
        else:
            supervise.forward_signals(ctr.pid)
        _released.append(lifecycle_start.release(ctr))
    except BaseException as exc:  # noqa: BLE001 (re-raised in run)
        _released.append(exc)


def run(root: str, container_id: str, opts: create.CreateOptions, detach: bool, keep: bool) -> int:
    if detach:
        from pyrunc import detached
        return detached.launch(root, container_id, opts, start=True)
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    # Until the program runs; what comes meanwhile goes to it then.
    opts.child_sigmask = supervise.hold_back()
    try:
        return _run(root, container_id, opts, keep)
    finally:
        supervise.drop_held()  # failed before the program ran (else a no-op)


def _run(root: str, container_id: str, opts: create.CreateOptions, keep: bool) -> int:
    opts.keep_pty = True
    opts.keep_lock = True
    opts.after_fork = _after_fork
    opts.on_created = _start_now
    ctr = create.create(root, container_id, opts)
    from pyrunc import lifecycle_delete, lifecycle_start
    pid = ctr.pid
    try:
        # The Container create returned (still locked) goes on to finish the start begun in it
        # and to delete: its state is create's own, so neither reads state.json again, and
        # config.json is read once (hooks).
        released = _released.pop()
        if isinstance(released, BaseException):
            raise released
        proxy = lifecycle_start.finish(ctr, released[0], released[1], wait_ready=False)
        supervise.let_through()  # the program runs: what came meanwhile is forwarded to it now
        # start has read start.err, where nothing writes once the program runs: removed now,
        # while the container runs, not by the delete its exit waits for (an unlink and an
        # inode eviction of this host's ext4 fewer after the exit).
        try:
            os.unlink(ctr.path(START_ERROR))
        except FileNotFoundError:
            pass
        if proxy is not None:  # NOTIFY_SOCKET: pyrunc stays the main process (MAINPID)
            proxy.run_in_background(os.getpid())
        if ctr.pty_master >= 0:
            from pyrunc import relay
            status = relay.relay_until_exit(ctr.pty_master, pid)
        else:
            status = supervise.wait_for(pid)
        if proxy is not None:
            proxy.join()
    except BaseException:
        lifecycle_delete.delete(root, container_id, force=True, ctr=ctr)
        raise
    if not keep:
        lifecycle_delete.delete(root, container_id, force=True, ctr=ctr)
    return status
