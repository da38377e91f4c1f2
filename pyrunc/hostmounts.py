"""A container without a mount namespace: its mounts live in the host's, and delete undoes them.

runtime-spec config-linux.md: a namespace type left out of `linux.namespaces` is inherited from
the runtime. For the mount namespace that means the container's /proc, /dev, /sys, binds and
masked paths are mounted in the host's mount table, below the rootfs (the init chroots into it:
pivot_root would move the host's root). runc does the same and leaves those mounts behind when
the container is deleted; we record exactly the mounts that appeared below the rootfs during
create and detach them at delete, or when create fails. A chroot is no mount namespace: a
process given CAP_SYS_CHROOT can leave it and see the host's files, which is what a config
without a mount namespace asks for (runc's default capabilities do not include it).
"""

from __future__ import annotations

import errno
import os

from pyrunc import linux, saferoot


def _unescape(field: str) -> str:
    """mountinfo octal-escapes space, tab, newline and backslash."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit() and len(field[i + 1:i + 4]) == 3:
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def below(rootfs: str) -> set[tuple[str, str]]:
    """(mount id, mount point) of every mount strictly below rootfs in our mount table."""
    prefix = rootfs.rstrip("/") + "/"
    found = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" ", 5)
            point = _unescape(fields[4])
            if point.startswith(prefix):
                found.add((fields[0], point))
    return found


def created_since(rootfs: str, before: set[tuple[str, str]]) -> list[list[str]]:
    """[mount id, mount point] of the mounts below rootfs that appeared after `before`."""
    return sorted([mid, point] for mid, point in below(rootfs) - before)


def _mnt_id(fd: int) -> str:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return line.split()[1]
    return ""


def undo(rootfs: str, recorded: list[list[str]]) -> None:
    """Detach what create mounted, deepest first.

    The container shares these mounts and may have replaced a directory on the way with a
    symlink, so no path is given to umount2 as a string: each point is opened inside the rootfs
    (saferoot: symlinks cannot leave it), and detached through /proc/self/fd only while the mount
    on top there is one we recorded. Points already gone (the detach of a parent took them
    along) are skipped.
    """
    ours = {mid for mid, _ in recorded}
    points = sorted({point for _, point in recorded}, key=lambda p: (p.count("/"), p),
                    reverse=True)
    try:
        rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        for point in points:
            rel = point[len(rootfs.rstrip("/")):]
            for _ in range(len(recorded)):
                try:
                    fd = saferoot.open_in_root(rootfd, rel, os.O_PATH | os.O_NOFOLLOW)
                except OSError:
                    break
                try:
                    if _mnt_id(fd) not in ours:
                        break
                    try:
                        linux.umount2(f"/proc/self/fd/{fd}", linux.MNT_DETACH)
                    except OSError as exc:
                        if exc.errno not in (errno.EINVAL, errno.ENOENT):
                            raise OSError(exc.errno, f"unmounting {point}: "
                                          f"{os.strerror(exc.errno or 0)}") from None
                        break
                finally:
                    os.close(fd)
    finally:
        os.close(rootfd)
