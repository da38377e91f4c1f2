"""The one place that calls libc directly: the syscalls Python 3.11's os module lacks.

Names and arguments follow the man pages; every failure raises OSError(errno, strerror, path)
so callers handle them like any other os error.
"""

from __future__ import annotations

import ctypes
import errno
import os

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

# x86_64 syscall numbers for calls glibc 2.36 has no wrapper for.
SYS_pivot_root = 155
SYS_open_tree = 428
SYS_move_mount = 429
SYS_close_range = 436
SYS_openat2 = 437
SYS_mount_setattr = 442

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

MNT_DETACH = 0x2

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

CLOSE_RANGE_CLOEXEC = 1 << 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36

PROC_SUPER_MAGIC = 0x9FA0


def _check(ret: int, path: str | None = None) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return ret


def _b(path: str | bytes | None) -> bytes | None:
    if path is None:
        return None
    return path if isinstance(path, bytes) else os.fsencode(path)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)))


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)))


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    ret = _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(ret, target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_syscall(ctypes.c_long(SYS_pivot_root), _b(new_root), _b(put_old)), new_root)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): the kernel resolves `path` so that it cannot leave `dirfd` (RESOLVE_IN_ROOT).

    With RESOLVE_IN_ROOT a lookup through ".." fails with EAGAIN when any mount or rename
    happened on the system meanwhile (the kernel cannot prove it stayed inside): retry then.
    """
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    raw = _b(path)
    for _ in range(64):
        ret = _syscall(ctypes.c_long(SYS_openat2), ctypes.c_int(dirfd), raw, ctypes.byref(how),
                       ctypes.c_size_t(ctypes.sizeof(how)))
        if ret >= 0 or ctypes.get_errno() != errno.EAGAIN:
            break
    return _check(ret, path)


def close_range(first: int, last: int, flags: int = 0) -> None:
    _check(_syscall(ctypes.c_long(SYS_close_range), ctypes.c_uint(first), ctypes.c_uint(last),
                    ctypes.c_uint(flags)))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                              ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)))


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, ctypes.c_size_t(len(raw))))


class _Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("f_rest", ctypes.c_long * 15)]


def fstatfs_type(fd: int) -> int:
    """The filesystem magic of an open fd: lets us refuse a fake /proc (CVE-2019-16884 class)."""
    buf = _Statfs()
    _check(_libc.fstatfs(ctypes.c_int(fd), ctypes.byref(buf)))
    return int(buf.f_type)


# --- the new mount API: every mount is attached through fds, never through a path string ---
SYS_fsopen = 430
SYS_fsconfig = 431
SYS_fsmount = 432

AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1

MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def open_tree(dirfd: int, path: str, flags: int) -> int:
    return _check(_syscall(ctypes.c_long(SYS_open_tree), ctypes.c_int(dirfd), _b(path),
                           ctypes.c_uint(flags)), path)


def move_mount(from_fd: int, from_path: str, to_fd: int, to_path: str, flags: int) -> None:
    _check(_syscall(ctypes.c_long(SYS_move_mount), ctypes.c_int(from_fd), _b(from_path),
                    ctypes.c_int(to_fd), _b(to_path), ctypes.c_uint(flags)), to_path or None)


def mount_setattr(dirfd: int, path: str, flags: int, attr_set: int = 0, attr_clr: int = 0,
                  propagation: int = 0, userns_fd: int = 0) -> None:
    attr = MountAttr(attr_set, attr_clr, propagation, userns_fd)
    _check(_syscall(ctypes.c_long(SYS_mount_setattr), ctypes.c_int(dirfd), _b(path),
                    ctypes.c_uint(flags), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
           path or None)


def fsopen(fstype: str) -> int:
    return _check(_syscall(ctypes.c_long(SYS_fsopen), _b(fstype), ctypes.c_uint(FSOPEN_CLOEXEC)),
                  fstype)


def fsconfig(fd: int, cmd: int, key: str | None = None, value: str | None = None) -> None:
    _check(_syscall(ctypes.c_long(SYS_fsconfig), ctypes.c_int(fd), ctypes.c_uint(cmd), _b(key),
                    _b(value), ctypes.c_int(0)), key)


def fsmount(fd: int, attr_flags: int) -> int:
    return _check(_syscall(ctypes.c_long(SYS_fsmount), ctypes.c_int(fd),
                           ctypes.c_uint(FSMOUNT_CLOEXEC), ctypes.c_uint(attr_flags)))


SYS_keyctl = 250
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_SETPERM = 5


def join_session_keyring(name: str) -> int:
    """A fresh session keyring, so the container cannot read the caller's keys."""
    serial = _check(_syscall(ctypes.c_long(SYS_keyctl), ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING),
                             _b(name)))
    # possessor: all; user: view/read/write/search/link; group and other: none.
    _check(_syscall(ctypes.c_long(SYS_keyctl), ctypes.c_long(KEYCTL_SETPERM), ctypes.c_long(serial),
                    ctypes.c_long(0x3F1F0000)))
    return serial
