"""`delete`: stop what is left of a container (with --force, a running one) and remove its
cgroups, its host mounts and its state directory; poststop hooks run last.

The common case, a stopped container whose cgroups are empty and a config without poststop
hooks, runs from this module and state.py alone: killing what is still alive, a leftover
pyrunc-shim and a state dir without a state are in delete_live.py, the hooks in lifecycle.py,
each loaded only when needed (~16 KB of code less to unmarshal on every delete).
"""

from __future__ import annotations

from pyrunc import cgroup_cleanup, errors, state
from pyrunc.state import locked, writable


def delete(root: str, container_id: str, force: bool = False,
           ctr: state.Container | None = None) -> None:
    try:
        ctr = locked(root, container_id, ctr)
    except (errors.ContainerNotFound, state.CorruptState):
        if force:
            from pyrunc.delete_live import remove_orphan_dir
            remove_orphan_dir(root, container_id)
            return  # runc: deleting what is already gone succeeds with --force
        raise
    status = ctr.status()
    if status != "stopped" and not force:
        raise errors.InvalidState(f"cannot delete container {container_id} that is not stopped: "
                           f"{status}")
    writable(ctr)
    state.pause_point("delete:locked")
    if ctr.data.get("shim"):
        from pyrunc.delete_live import stop_shim
        stop_shim(ctr)
    # A stopped container's cgroups with nothing left in them need no CgroupManager (nor
    # cgroups.py): see cgroup_cleanup.py. Its usual case, all of them empty, is one rmdir each:
    # only a directory the kernel refuses (EBUSY) leads to the look for stragglers (a container
    # sharing the host's pid ns) and their kill; kill_all(SIGKILL) makes the same check first.
    cgroup = ctr.data.get("cgroup", {})
    paths, created = dict(cgroup.get("paths", {})), list(cgroup.get("created", []))
    if status != "stopped":
        from pyrunc.delete_live import kill_and_wait
        kill_and_wait(ctr)
        removed = False
    else:
        removed = cgroup_cleanup.remove_if_empty(created, paths.get(""))
        if not removed and ((cgroup_cleanup.exclusive(paths, created) or not own_pid_namespace(ctr))
                            and not cgroup_cleanup.surely_empty(paths)):
            from pyrunc.lifecycle import cgroups_of
            cgroups_of(ctr).kill_all()
    state.pause_point("delete:after-kill")
    if not removed:
        cgroup_cleanup.remove_dirs(created)
    if ctr.data.get("host_mounts"):  # a container without a mount namespace: hostmounts.py
        from pyrunc import hostmounts
        hostmounts.undo(ctr.data.get("rootfs", ""), ctr.data["host_mounts"])
    state.pause_point("delete:after-cgroups")
    if ctr.may_have("poststop"):  # lifecycle.py (~11 KB of code) only for a config with hooks
        from pyrunc.lifecycle import run_late_hooks
        run_late_hooks(ctr, "poststop", "stopped")
    ctr.remove_dir()


def own_pid_namespace(ctr: state.Container) -> bool:
    try:
        namespaces = (ctr.config().get("linux") or {}).get("namespaces") or []
    except (OSError, errors.PyruncError):
        return True  # unknown: then only a cgroup of our own is emptied wholesale
    return any(ns.get("type") == "pid" and not ns.get("path") for ns in namespaces)
