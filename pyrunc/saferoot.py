"""Resolve and create paths inside the container rootfs without ever leaving it.

Every path under the rootfs is attacker-controlled (an image can ship symlinks such as
/proc -> /host, or swap one in while we work: CVE-2021-30465, CVE-2024-45310, CVE-2025-31133).
So nothing here joins strings: each lookup is one openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)
relative to an fd of the rootfs, and each creation is a single-component mkdirat/openat/mknodat
relative to an fd of its already-resolved parent. The caller then mounts onto the returned O_PATH
fd, so what is mounted on is what was checked.
"""

from __future__ import annotations

import errno
import os
import stat

from pyrunc import linux

_RESOLVE = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS


def split(path: str) -> list[str]:
    return [part for part in path.split("/") if part and part != "."]


def open_in_root(rootfd: int, path: str, flags: int = os.O_PATH) -> int:
    """An fd for `path` as seen from inside the root; symlinks and `..` cannot escape it."""
    return linux.openat2(rootfd, "/".join(split(path)) or ".", flags, _RESOLVE)


def mkdir_all(rootfd: int, path: str, mode: int = 0o755) -> int:
    """Create every missing directory of `path` inside the root; returns an O_PATH fd of the last."""
    parts = split(path)
    fd = os.dup(rootfd)
    try:
        for index, name in enumerate(parts):
            try:
                nxt = open_in_root(rootfd, "/".join(parts[: index + 1]), os.O_PATH | os.O_DIRECTORY)
            except FileNotFoundError:
                try:
                    os.mkdir(name, mode, dir_fd=fd)
                except FileExistsError:
                    pass  # lost a race with another creator; the open below decides
                nxt = open_in_root(rootfd, "/".join(parts[: index + 1]), os.O_PATH | os.O_DIRECTORY)
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def ensure_target(rootfd: int, path: str, is_dir: bool) -> int:
    """An O_PATH fd of a mount target, creating it (a directory, or an empty file) when missing."""
    try:
        fd = open_in_root(rootfd, path)
    except FileNotFoundError:
        pass
    else:
        is_dir_now = stat.S_ISDIR(os.fstat(fd).st_mode)
        if is_dir and not is_dir_now:
            os.close(fd)
            raise NotADirectoryError(errno.ENOTDIR, "mount target is not a directory", path)
        return fd
    parts = split(path)
    if is_dir:
        return mkdir_all(rootfd, path)
    if not parts:
        raise IsADirectoryError(errno.EISDIR, "mount target is the root", path)
    parent = mkdir_all(rootfd, "/".join(parts[:-1]))
    try:
        try:
            os.close(os.open(parts[-1], os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o755, dir_fd=parent))
        except FileExistsError:
            pass
    finally:
        os.close(parent)
    return open_in_root(rootfd, path)


def proc_fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"
