"""What `delete` needs beyond a stopped container with empty cgroups: SIGKILL for a live one
(--force), a stopped one's stragglers, stopping a pyrunc-shim that still runs, and a state dir
left without a readable state.json.
lifecycle_delete.py imports this only when one of those is the case."""

from __future__ import annotations

import _signal as signal  # the signal module imports enum (~8 ms) for names we do not need
import time

from pyrunc import errors, state
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.cgroup_cleanup import exclusive, surely_empty
from pyrunc.lifecycle import cgroups_of, signal_init
from pyrunc.lifecycle_delete import delete, shim_alive


def remove_orphan_dir(root: str, container_id: str) -> None:
    """A state dir without a readable state.json: a create killed before it wrote one, or a file
    lost or damaged by someone else. Once its lock is ours (so no live create owns it), the
    container's processes are killed in the cgroups its config.json names, cgroup directories
    named after the container are removed, and then the directory."""
    ctr = state.Container(root, container_id)
    try:
        ctr.lock()
    except FileNotFoundError:
        return
    try:
        ctr.load()
    except (errors.ContainerNotFound, state.CorruptState):
        pass
    else:  # a create finished meanwhile: an ordinary delete
        ctr.unlock()
        delete(root, container_id, force=True)
        return
    try:
        cfg = ctr.config()
        cgroups_path = (cfg.get("linux") or {}).get("cgroupsPath")
        from pyrunc.cgroups import CgroupManager
        cg = CgroupManager.for_container(cgroups_path if isinstance(cgroups_path, str) else None,
                                         container_id)
    except (OSError, ValueError, AttributeError):
        cg = None  # no config either: create died before anything but the directory existed
    if cg is not None:
        # Only leaves that bear the container's id can be ours with certainty; only a cgroup
        # wholly ours may be emptied wholesale.
        cg.created = [p for p in cg.paths.values() if container_id in os.path.basename(p)]
        if cg.exclusive():
            cg.kill_all()
        cg.destroy()
    ctr.remove_dir()


def kill_stragglers(ctr: state.Container) -> None:
    """A stopped container whose cgroup2 directory the kernel would not remove: a process may
    be left (a child of an init that shared the host's pid namespace). It is killed, as runc
    does, only in cgroups wholly ours or for a container without a pid namespace of its own,
    and only if cgroup2 does not say the cgroup is empty (kill_all checks that too)."""
    cgroup = ctr.data.get("cgroup", {})
    paths, created = cgroup.get("paths", {}), cgroup.get("created", [])
    if (exclusive(paths, created) or not own_pid_namespace(ctr)) and not surely_empty(paths):
        cgroups_of(ctr).kill_all()


def own_pid_namespace(ctr: state.Container) -> bool:
    try:
        namespaces = (ctr.config().get("linux") or {}).get("namespaces") or []
    except (OSError, errors.PyruncError):
        return True  # unknown: then only a cgroup of our own is emptied wholesale
    return any(ns.get("type") == "pid" and not ns.get("path") for ns in namespaces)


def kill_and_wait(ctr: state.Container, timeout: float = 10.0) -> None:
    """SIGKILL everything (thawing a paused container so the kill lands) and wait for the init.

    In a cgroup we joined rather than made, other processes may live: then, as runc does, only
    the init is killed (its pid namespace goes with it) unless the container shares the host's.
    """
    cg = cgroups_of(ctr)
    if cg.exclusive() or not own_pid_namespace(ctr):
        cg.kill_all(signal.SIGKILL)
    elif cg.is_paused():
        cg.freeze(False)
    try:
        signal_init(ctr, signal.SIGKILL)
    except errors.InvalidState:
        pass
    deadline = time.monotonic() + timeout
    while ctr.init_alive():
        if time.monotonic() > deadline:
            raise errors.PyruncError(f"container {ctr.id}: init {ctr.pid} did not die after SIGKILL")
        time.sleep(0.002)


def stop_shim(ctr: state.Container) -> None:
    """pyrunc-shim goes first, so that it cannot write into a state dir being removed (called
    when shim_alive said it runs). Its start time is checked again once the pidfd pins the pid,
    and the pidfd turns readable when the shim has exited (no polling of /proc)."""
    shim = ctr.data["shim"]
    try:
        pidfd = os.pidfd_open(int(shim["pid"]))
    except ProcessLookupError:
        return
    try:
        if not shim_alive(shim):
            return
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        import select  # built in: only here
        waiter = select.poll()
        waiter.register(pidfd, select.POLLIN)
        waiter.poll(5000)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)
