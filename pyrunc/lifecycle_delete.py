"""`delete`: stop what is left of a container (with --force, a running one) and remove its
cgroups, its host mounts and its state directory; poststop hooks run last.

The common case, a stopped container whose cgroups are empty and a config without poststop
hooks, runs from this module and state.py alone: killing what is still alive, a leftover
pyrunc-shim and a state dir without a state are in delete_live.py, the hooks in lifecycle.py,
each loaded only when needed (~16 KB of code less to unmarshal on every delete).
"""

from __future__ import annotations

from pyrunc import errors, state
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
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
    shim = ctr.data.get("shim")
    if shim and shim_alive(shim):  # usually gone by now (or a zombie): delete_live not loaded
        from pyrunc.delete_live import stop_shim
        stop_shim(ctr)
    # A stopped container's cgroups with nothing left in them need no CgroupManager (nor
    # cgroups.py): one rmdir each, the kernel's own emptiness check (remove_if_empty). Only a
    # directory it refuses (EBUSY) leads to delete_live's look for stragglers (a container
    # sharing the host's pid ns) and their kill.
    cgroup = ctr.data.get("cgroup", {})
    created = list(cgroup.get("created", []))
    if status != "stopped":
        from pyrunc.delete_live import kill_and_wait
        kill_and_wait(ctr)
        removed = False
    else:
        removed = remove_if_empty(created, cgroup.get("paths", {}).get(""))
        if not removed:
            from pyrunc.delete_live import kill_stragglers
            kill_stragglers(ctr)
    state.pause_point("delete:after-kill")
    if not removed:
        from pyrunc.cgroup_cleanup import remove_dirs
        remove_dirs(created)
    if ctr.data.get("host_mounts"):  # a container without a mount namespace: hostmounts.py
        from pyrunc import hostmounts
        hostmounts.undo(ctr.data.get("rootfs", ""), ctr.data["host_mounts"])
    state.pause_point("delete:after-cgroups")
    if ctr.may_have("poststop"):  # lifecycle.py (~11 KB of code) only for a config with hooks
        from pyrunc.lifecycle import run_late_hooks
        run_late_hooks(ctr, "poststop", "stopped")
    remove_state_dir(ctr)


def shim_alive(shim: dict) -> bool:
    """Whether the container's pyrunc-shim still runs. Once the init has exited it records
    the exit and leaves; its parent is gone by then, so it often stays a zombie until this
    host's PID 1 reaps it: neither is signalled or waited for (delete_live.stop_shim)."""
    info = state.proc_start_time(int(shim.get("pid", 0)))
    return info is not None and info[0] == shim.get("start") and info[1] not in ("Z", "X")


def remove_state_dir(ctr: state.Container) -> None:
    """Container.remove_dir without listing the directory first (an open, a stat, two getdents
    and a close): the files a container has go by name, state.json first (a directory without
    it is what `delete --force` cleans up; start.err is already gone after `run`'s start), and
    only when the rmdir finds something else left (a NOTIFY_SOCKET dir, a fifo never opened,
    whatever else someone put there) does remove_dir list and empty the directory."""
    names = [state.STATE_FILE, state.CONFIG_FILE, state.START_ERROR]
    if ctr.data.get("shim"):
        names += [state.SHIM_EXIT, state.OUTPUT_LOG]
    for name in names:
        try:
            os.unlink(ctr.path(name))
        except (FileNotFoundError, IsADirectoryError):
            pass  # a directory (someone's): remove_dir below deals with it
    try:
        os.rmdir(ctr.dir)
    except OSError as exc:
        if exc.errno != 39:  # ENOTEMPTY (errno not imported: ~0.2 M instructions)
            raise
        ctr.remove_dir()  # lists what is left; unlocks
        return
    ctr.unlock()


def remove_if_empty(created: list[str], unified: str | None) -> bool:
    """cgroup_cleanup.remove_dirs for a stopped container, with rmdir as its own emptiness
    check: the usual delete then reads no cgroup.events (a kernfs open and read, ~50 us). The
    cgroup2 directory (unified) goes first: refused with EBUSY, a process (or a child cgroup)
    is left there, and False says so with nothing removed, for the caller to look for
    stragglers and kill them before remove_dirs. A later EBUSY (the cgroup2 directory, or the
    first tried, was empty: nothing to kill, as cgroup2's "populated" would have said) is
    waited out by remove_dirs. True when every directory is gone."""
    order = sorted(created, key=len, reverse=True)
    if unified in order:  # the leaf of its hierarchy: no directory of ours below it
        order.remove(unified)
        order.insert(0, unified)
    removed = False
    for i, directory in enumerate(order):
        try:
            os.rmdir(directory)
            removed = True
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != 16:  # EBUSY (errno not imported: ~0.2 M instructions)
                raise errors.PyruncError(f"cannot remove cgroup {directory}: {exc.strerror}") from None
            if not removed:
                return False
            from pyrunc.cgroup_cleanup import remove_dirs
            remove_dirs(order[i:])
            return True
    return True
