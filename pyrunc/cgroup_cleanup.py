"""What `delete` of a stopped container with something left in its cgroups needs of them:
are they ours, is anything left in them, and removing the directories we made.

Apart from cgroups.py, which uses these (one implementation), so that such a delete does not
load that whole module: CgroupManager is built only when a process may still be there to kill.
The common delete (an exited container, empty cgroups) loads neither: its rmdirs are
lifecycle_delete.remove_if_empty.
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
