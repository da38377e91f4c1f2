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

from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc import linux

_RESOLVE = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS


def split(path: str) -> list[str]:
    return [part for part in path.split("/") if part and part != "."]


def open_in_root(rootfd: int, path: str, flags: int = os.O_PATH) -> int:
    """An fd for `path` as seen from inside the root; symlinks and `..` cannot escape it."""
    return linux.openat2(rootfd, "/".join(split(path)) or ".", flags, _RESOLVE)


def mkdir_all(rootfd: int, path: str, mode: int = 0o755, probe: bool = True) -> int:
    """Create every missing directory of `path` inside the root; returns an O_PATH fd of the last.

    A dangling symlink on the way (an image's /var/run -> /run that does not exist yet) is
    followed the way the kernel would follow it, but re-rooted at the rootfs, and its target
    is created there: never on the host. probe=False: the caller just found `path` missing.
    """
    if probe:
        try:  # the common case: it all exists already, one lookup
            return open_in_root(rootfd, path, os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            pass
    parts = split(path)
    hops = 0
    index, parent = _deepest_existing(rootfd, parts)
    try:
        while index < len(parts):
            target = None
            try:
                os.mkdir(parts[index], mode, dir_fd=parent)
            except FileExistsError:
                # A (dangling) symlink, or lost a race with another creator (then the next
                # open decides).
                try:
                    target = os.readlink(parts[index], dir_fd=parent)
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOENT):  # not a symlink, gone
                        raise
            if target is not None:
                hops += 1
                if hops > 40:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
                head = [] if target.startswith("/") else parts[:index]
                parts = head + split(target) + parts[index + 1:]
                os.close(parent)
                parent = -1
                index, parent = _deepest_existing(rootfd, parts)
                continue
            os.close(parent)
            parent = -1
            index += 1
            if index < len(parts):
                # Resolved again from the root, never through the fd we made it in: what is
                # there now (a racing swap included) is what the next step works on.
                parent = open_in_root(rootfd, "/".join(parts[:index]),
                                      os.O_PATH | os.O_DIRECTORY)
    finally:
        if parent >= 0:
            os.close(parent)
    return open_in_root(rootfd, "/".join(parts) or ".", os.O_PATH | os.O_DIRECTORY)


def _deepest_existing(rootfd: int, parts: list[str]) -> tuple[int, int]:
    """(n, fd of parts[:n]) for the longest prefix that resolves to a directory, shorter than
    parts (the whole was just found missing): the deepest first, as a target usually misses
    only its last component or two. One that is not a directory is passed over here, so the
    walk down reaches it and fails on it, naming it."""
    for depth in range(len(parts) - 1, 0, -1):
        try:
            return depth, open_in_root(rootfd, "/".join(parts[:depth]), os.O_PATH | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            continue
    return 0, open_in_root(rootfd, ".", os.O_PATH | os.O_DIRECTORY)


def ensure_target(rootfd: int, path: str, is_dir: bool, _hops: int = 0) -> int:
    """An O_PATH fd of a mount target, creating it (a directory, or an empty file) when missing."""
    try:
        # For a directory the kernel checks the type (O_DIRECTORY): no fstat afterwards.
        return open_in_root(rootfd, path, os.O_PATH | os.O_DIRECTORY if is_dir else os.O_PATH)
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        if not is_dir:
            raise
        # The target itself, or a component on the way? This lookup raises for the latter.
        os.close(open_in_root(rootfd, path))
        raise NotADirectoryError(errno.ENOTDIR, "mount target is not a directory", path) from None
    parts = split(path)
    if is_dir:
        return mkdir_all(rootfd, path, probe=False)
    if not parts:
        raise IsADirectoryError(errno.EISDIR, "mount target is the root", path)
    parent = mkdir_all(rootfd, "/".join(parts[:-1]))
    try:
        try:
            os.close(os.open(parts[-1], os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o755, dir_fd=parent))
        except FileExistsError:
            try:
                target = os.readlink(parts[-1], dir_fd=parent)
            except OSError:
                target = None  # a racing creator made a real file: open it below
            if target is not None:
                if _hops > 40:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", path) from None
                head = [] if target.startswith("/") else parts[:-1]
                return ensure_target(rootfd, "/".join(head + split(target)), is_dir, _hops + 1)
    finally:
        os.close(parent)
    return open_in_root(rootfd, path)


def proc_fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"
