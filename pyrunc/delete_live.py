"""What `delete` needs beyond a stopped container with empty cgroups: SIGKILL for a live one
(--force), stopping a pyrunc-shim, and a state dir left without a readable state.json.
lifecycle_delete.py imports this only when one of those is the case."""

from __future__ import annotations

import _signal as signal  # the signal module imports enum (~8 ms) for names we do not need
import time

from pyrunc import errors, state
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.lifecycle import cgroups_of, signal_init
from pyrunc.lifecycle_delete import delete, own_pid_namespace


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
    """pyrunc-shim goes first, so that it cannot write into a state dir being removed."""
    shim = ctr.data.get("shim")
    if not shim:
        return
    info = state.proc_start_time(int(shim.get("pid", 0)))
    if info is None or info[0] != shim.get("start"):
        return
    try:
        pidfd = os.pidfd_open(int(shim["pid"]))
    except ProcessLookupError:
        return
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            info = state.proc_start_time(int(shim["pid"]))
            if info is None or info[1] in ("Z", "X"):
                break
            time.sleep(0.002)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)
