"""The runtime's own procfs, held as an fd, for every write the init or an exec'd process makes
into /proc (oom_score_adj aside, sysctls, LSM attributes, time offsets).

Its own module, not part of rootfs.py: `exec` needs these two functions and none of the mount
code, and every module the exec path imports costs its start-up (see README, Performance).
"""

from __future__ import annotations

import errno

from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc import linux, saferoot

_PROC = [-1]  # the host's procfs, opened before the container's rootfs replaces our view
_PROC_RESOLVE = linux.RESOLVE_BENEATH | linux.RESOLVE_NO_MAGICLINKS | linux.RESOLVE_NO_XDEV


def hold_proc() -> int:
    """Keep an fd of the runtime's own /proc (checked to be procfs) for every later write into
    /proc: the container's /proc is built from config.json and the image, so a fake one, or a
    procfs file bind-mounted over another (CVE-2019-16884 / CVE-2025-52881 class), must never
    receive oom_score_adj, sysctls or LSM attributes. Call while the host's / is still ours."""
    if _PROC[0] < 0:
        fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        if linux.fstatfs_type(fd) != linux.PROC_SUPER_MAGIC:
            os.close(fd)
            raise OSError(errno.EXDEV, "the runtime's /proc is not procfs", "/proc")
        _PROC[0] = fd
    return _PROC[0]


def drop_proc() -> None:
    """Close the held procfs (exec's CLI, once its child has its own copy)."""
    if _PROC[0] >= 0:
        os.close(_PROC[0])
        _PROC[0] = -1


def _proc_fd(path: str, flags: int) -> int:
    """Open a /proc path through the held procfs fd, never crossing a mount or a symlink.

    "self" is named by our pid in that procfs (a host pid: the held procfs is the host's); the
    sysctl files under sys/ show the opener's own namespaces whichever procfs holds them."""
    parts = saferoot.split(path)
    if parts[:1] != ["proc"] or len(parts) < 2:
        raise OSError(errno.EINVAL, "not a /proc path", path)
    proc = hold_proc()
    if parts[1] == "self":
        parts[1] = os.readlink("self", dir_fd=proc)
    try:
        fd = linux.openat2(proc, "/".join(parts[1:]), flags, _PROC_RESOLVE)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    if linux.fstatfs_type(fd) != linux.PROC_SUPER_MAGIC:  # cannot happen without a crossed mount
        os.close(fd)
        raise OSError(errno.EXDEV, "not on procfs, refusing to write", path)
    return fd


def write_proc(path: str, value: str) -> None:
    fd = _proc_fd(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
