"""`delete`: stop what is left of a container (with --force, a running one) and remove its
cgroups, its host mounts and its state directory; poststop hooks run last."""

from __future__ import annotations

import _signal as signal  # the signal module imports enum (~8 ms) for names we do not need
import time

from pyrunc import errors, state
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.lifecycle import cgroups_of, locked, run_late_hooks, signal_init, writable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyrunc.cgroups import CgroupManager


def delete(root: str, container_id: str, force: bool = False,
           ctr: state.Container | None = None) -> None:
    try:
        ctr = locked(root, container_id, ctr)
    except (errors.ContainerNotFound, state.CorruptState):
        if force:
            remove_orphan_dir(root, container_id)
            return  # runc: deleting what is already gone succeeds with --force
        raise
    status = ctr.status()
    if status != "stopped" and not force:
        raise errors.InvalidState(f"cannot delete container {container_id} that is not stopped: "
                           f"{status}")
    writable(ctr)
    state.pause_point("delete:locked")
    stop_shim(ctr)
    # A stopped container's cgroups with nothing left in them need no CgroupManager (nor
    # cgroups.py): see cgroup_cleanup.py. kill_all(SIGKILL) would make the same check first.
    from pyrunc import cgroup_cleanup
    cgroup = ctr.data.get("cgroup", {})
    paths, created = dict(cgroup.get("paths", {})), list(cgroup.get("created", []))
    if status != "stopped":
        kill_and_wait(ctr, cgroups_of(ctr))
    elif ((cgroup_cleanup.exclusive(paths, created) or not own_pid_namespace(ctr))
          and not cgroup_cleanup.surely_empty(paths)):
        cgroups_of(ctr).kill_all()  # stragglers (a container sharing the host's pid ns)
    state.pause_point("delete:after-kill")
    cgroup_cleanup.remove_dirs(created)
    if ctr.data.get("host_mounts"):  # a container without a mount namespace: hostmounts.py
        from pyrunc import hostmounts
        hostmounts.undo(ctr.data.get("rootfs", ""), ctr.data["host_mounts"])


    state.pause_point("delete:after-cgroups")
    run_late_hooks(ctr, "poststop", "stopped")
    ctr.remove_dir()


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


def kill_and_wait(ctr: state.Container, cg: CgroupManager, timeout: float = 10.0) -> None:
    """SIGKILL everything (thawing a paused container so the kill lands) and wait for the init.

    In a cgroup we joined rather than made, other processes may live: then, as runc does, only
    the init is killed (its pid namespace goes with it) unless the container shares the host's.
    """
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


def own_pid_namespace(ctr: state.Container) -> bool:
    try:
        namespaces = (ctr.config().get("linux") or {}).get("namespaces") or []
    except (OSError, errors.PyruncError):
        return True  # unknown: then only a cgroup of our own is emptied wholesale
    return any(ns.get("type") == "pid" and not ns.get("path") for ns in namespaces)


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
