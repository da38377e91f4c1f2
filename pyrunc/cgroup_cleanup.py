"""What `delete` of a stopped container needs of its cgroups: are they ours, is anything left
in them, and removing the directories we made.

Apart from cgroups.py, which uses these (one implementation), so that the common delete (an
exited container, an empty cgroup) does not load that whole module: CgroupManager is built
only when a process may still be there to kill.
"""

from __future__ import annotations

import time

from pyrunc import errors
from pyrunc import lightos as os  # os minus its import cost: see lightos.py


def exclusive(paths: dict[str, str], created: list[str]) -> bool:
    """Whether every directory the container is in was made by us: only then may killing
    "everything in the cgroup" be done, since a joined cgroup can hold other processes."""
    return all(path in created for path in paths.values())


def populated(directory: str) -> bool:
    """Whether a cgroup2 directory or any below it holds a process ("populated" of
    cgroup.events). Read before writing cgroup.kill: that write takes the kernel's cgroup_mutex,
    which a cgroup migration elsewhere on the host can hold for a whole RCU grace period (10-20
    ms), while this read takes no lock. True when unknown."""
    from pyrunc.cgroup_freezer import read_small  # here: delete's usual case reads no cgroup file
    try:
        return b"populated 0" not in read_small(os.path.join(directory, "cgroup.events"))
    except OSError:
        return True


def surely_empty(paths: dict[str, str]) -> bool:
    """cgroup2 says nothing is left in the container's cgroup or below it (a stopped
    container's usual case): no process for a SIGKILL to kill, and none a freezer could hold.
    False without a cgroup2 directory (then only a look at the processes can tell)."""
    unified = paths.get("")
    return not populated(unified) if unified else False


def remove_if_empty(created: list[str], unified: str | None) -> bool:
    """remove_dirs for a stopped container, with rmdir as its own emptiness check: its usual
    delete then reads no cgroup.events (a kernfs open and read, ~50 us). The cgroup2 directory
    (unified) goes first: refused with EBUSY, a process (or a child cgroup) is left there, and
    False says so with nothing removed, for the caller to look for stragglers and kill them
    before remove_dirs, as it would have without this pass. A later EBUSY (the cgroup2
    directory, or the first tried, was empty: nothing to kill, as populated() would have said)
    is waited out as remove_dirs does. True when every directory is gone."""
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
            if exc.errno != 16:  # EBUSY (errno not imported: see remove_dirs)
                raise errors.PyruncError(f"cannot remove cgroup {directory}: {exc.strerror}") from None
            if not removed:
                return False
            remove_dirs(order[i:])
            return True
    return True


def remove_dirs(created: list[str], timeout: float = 5.0) -> None:
    """rmdir what we created, deepest first; EBUSY while killed tasks are still exiting."""
    deadline = time.monotonic() + timeout
    for directory in sorted(created, key=len, reverse=True):
        while True:
            try:
                os.rmdir(directory)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                import errno  # only here: `import errno` costs ~0.2 M instructions
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise errors.PyruncError(f"cannot remove cgroup {directory}: {exc.strerror}") from None
                time.sleep(0.005)
