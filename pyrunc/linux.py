"""The one place that calls libc directly: the syscalls Python 3.11's os module lacks.

Names and arguments follow the man pages; every failure raises OSError(errno, strerror, path)
so callers handle them like any other os error.
"""

from __future__ import annotations

import _ctypes  # not `ctypes`: its Python layer costs ~6 M instructions (2 ms) per call
import errno
import sys

from pyrunc import lightos as os  # os minus its import cost: see lightos.py

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

RTLD_NOW = 2
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


class c_int(_ctypes._SimpleCData):
    _type_ = "i"


class c_long(_ctypes._SimpleCData):
    _type_ = "l"


# The unsigned types as their signed twins: an argument is the same bits either way (ctypes
# truncates any int to the type's width, neither side raising), and nothing here reads one back
# (.value, a restype, a struct field), where the sign would show. A ctypes type is a class
# made by a metaclass: ~0.13 M instructions each, on the path of every create, run and exec.
c_uint = c_int
c_ulong = c_long
c_size_t = c_ulong
Structure = _ctypes.Structure
byref = _ctypes.byref
sizeof = _ctypes.sizeof
get_errno = _ctypes.get_errno


class _Function(_ctypes.CFuncPtr):
    """A libc function called with errno saved (what CDLL(use_errno=True) makes), int result."""
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _LongFunction(_ctypes.CFuncPtr):   # the metaclass reads _flags_ from the class itself
    _flags_ = _Function._flags_
    _restype_ = c_long


def _libc_function(name: str) -> _Function:
    func = _Function((name, _libc))  # type: ignore[arg-type]  # CFuncPtr reads only _handle
    setattr(_libc, name, func)
    return func


# The C library already loaded into the interpreter; functions looked up on first use (PEP 562).
# A module object, not a class: a class costs ~45 K instructions to make, on every create and exec.
_libc: Any = type(sys)("pyrunc.linux.libc")
_libc._handle = _ctypes.dlopen(None, RTLD_NOW)  # type: ignore[arg-type]  # None: the program itself
_libc.__getattr__ = _libc_function
_syscall = _LongFunction(("syscall", _libc))  # type: ignore[arg-type]  # as in _Libc


def resolve(*names: str) -> None:
    """Look these libc functions up now: before a fork, for a child that calls them (exec's),
    each later look-up (dlsym) in that child faults in the symbol tables and copies pages."""
    for name in names:
        getattr(_libc, name)


class _HoldingGil(_ctypes.CFuncPtr):
    """A function called without releasing the GIL (what PyDLL makes): the interpreter's own
    fork hooks, and a clone between them, during which no other thread may run Python."""
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_PYTHONAPI | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_long

# x86_64 syscall numbers for calls glibc 2.36 has no wrapper for.
SYS_pivot_root = 155
SYS_open_tree = 428
SYS_move_mount = 429
SYS_close_range = 436
SYS_clone3 = 435
SYS_openat2 = 437
SYS_mount_setattr = 442

CLONE_NEWTIME = 0x00000080
CLONE_INTO_CGROUP = 0x200000000
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
        err = get_errno()
        raise OSError(err, os.strerror(err), path)
    return ret


def _b(path: str | bytes | None) -> bytes | None:
    if path is None:
        return None
    path = os.fspath(path)
    if isinstance(path, bytes):
        return path
    return path.encode(_FS_ENCODING, _FS_ERRORS)   # what os.fsencode does


def unshare(flags: int) -> None:
    _check(_libc.unshare(c_int(flags)))


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(c_int(fd), c_int(nstype)))


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    ret = _libc.mount(_b(source), _b(target), _b(fstype), c_ulong(flags), _b(data))
    _check(ret, target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), c_int(flags)), target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_syscall(c_long(SYS_pivot_root), _b(new_root), _b(put_old)), new_root)


def _u64s(*fields: int) -> bytes:
    """A struct of u64 fields that the kernel only reads (open_how, mount_attr): a bytes object
    does, ctypes passing its buffer, without a ctypes type per struct (~0.1 M instructions
    each to create, on every command that imports this module)."""
    return b"".join(field.to_bytes(8, sys.byteorder) for field in fields)


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): the kernel resolves `path` so that it cannot leave `dirfd` (RESOLVE_IN_ROOT).

    With RESOLVE_IN_ROOT a lookup through ".." fails with EAGAIN when any mount or rename
    happened on the system meanwhile (the kernel cannot prove it stayed inside): retry then.
    """
    how = _u64s(flags | os.O_CLOEXEC, mode, resolve)   # struct open_how
    raw = _b(path)
    for _ in range(64):
        ret = _syscall(c_long(SYS_openat2), c_int(dirfd), raw, how, c_size_t(len(how)))
        if ret >= 0 or get_errno() != errno.EAGAIN:
            break
    return _check(ret, path)


RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def renameat2(old: str, new: str, flags: int) -> None:
    _check(_libc.renameat2(c_int(_AT_FDCWD), _b(old), c_int(_AT_FDCWD), _b(new), c_uint(flags)),
           new)


def close_range(first: int, last: int, flags: int = 0) -> None:
    _check(_syscall(c_long(SYS_close_range), c_uint(first), c_uint(last),
                    c_uint(flags)))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(c_int(option), c_ulong(arg2), c_ulong(arg3),
                              c_ulong(arg4), c_ulong(arg5)))


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, c_size_t(len(raw))))


def prlimit(resource: int, soft: int, hard: int) -> None:
    """setrlimit for ourselves (prlimit(2) with pid 0): soft and hard as unsigned 64-bit."""
    try:
        new = soft.to_bytes(8, "little") + hard.to_bytes(8, "little")
    except OverflowError:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL)) from None
    _check(_libc.prlimit(c_int(0), c_int(resource), new, None))


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """The calling thread's three capability sets (bit masks), exactly: version 3, two 32-bit
    halves per set."""
    header = _LINUX_CAPABILITY_VERSION_3.to_bytes(4, "little") + bytes(4)   # pid 0: ourselves
    data = b"".join((effective >> shift & 0xFFFFFFFF).to_bytes(4, "little")
                    + (permitted >> shift & 0xFFFFFFFF).to_bytes(4, "little")
                    + (inheritable >> shift & 0xFFFFFFFF).to_bytes(4, "little")
                    for shift in (0, 32))
    _check(_libc.capset(header, data))


_Statfs = c_long * 16   # struct statfs on 64-bit Linux: f_type first, then 15 more words


def fstatfs_type(fd: int) -> int:
    """The filesystem magic of an open fd: lets us refuse a fake /proc (CVE-2019-16884 class)."""
    buf = _Statfs()
    _check(_libc.fstatfs(c_int(fd), byref(buf)))
    return int(buf[0])


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


def open_tree(dirfd: int, path: str, flags: int) -> int:
    return _check(_syscall(c_long(SYS_open_tree), c_int(dirfd), _b(path),
                           c_uint(flags)), path)


def move_mount(from_fd: int, from_path: str, to_fd: int, to_path: str, flags: int) -> None:
    _check(_syscall(c_long(SYS_move_mount), c_int(from_fd), _b(from_path),
                    c_int(to_fd), _b(to_path), c_uint(flags)), to_path or None)


def mount_setattr(dirfd: int, path: str, flags: int, attr_set: int = 0, attr_clr: int = 0,
                  propagation: int = 0, userns_fd: int = 0) -> None:
    attr = _u64s(attr_set, attr_clr, propagation, userns_fd)   # struct mount_attr
    _check(_syscall(c_long(SYS_mount_setattr), c_int(dirfd), _b(path),
                    c_uint(flags), attr, c_size_t(len(attr))),
           path or None)


def fsopen(fstype: str) -> int:
    return _check(_syscall(c_long(SYS_fsopen), _b(fstype), c_uint(FSOPEN_CLOEXEC)),
                  fstype)


def fsconfig(fd: int, cmd: int, key: str | None = None, value: str | None = None) -> None:
    _check(_syscall(c_long(SYS_fsconfig), c_int(fd), c_uint(cmd), _b(key),
                    _b(value), c_int(0)), key)


def fsmount(fd: int, attr_flags: int) -> int:
    return _check(_syscall(c_long(SYS_fsmount), c_int(fd),
                           c_uint(FSMOUNT_CLOEXEC), c_uint(attr_flags)))


SYS_keyctl = 250
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_SETPERM = 5


def join_session_keyring(name: str) -> int:
    """A fresh session keyring, so the container cannot read the caller's keys."""
    serial = _check(_syscall(c_long(SYS_keyctl), c_long(KEYCTL_JOIN_SESSION_KEYRING),
                             _b(name)))
    # possessor: all; user: view/read/write/search/link; group and other: none.
    _check(_syscall(c_long(SYS_keyctl), c_long(KEYCTL_SETPERM), c_long(serial),
                    c_long(0x3F1F0000)))
    return serial


_SIGCHLD = 17


def fork_into_cgroup(cgroup_fd: int) -> int:
    """os.fork(), with the child born in the cgroup2 directory cgroup_fd names (clone3 with
    CLONE_INTO_CGROUP, Linux 5.7): no cgroup.procs write, so no wait for the RCU grace period
    that the first migration after a quiet period costs (10-18 ms here; cgroup_join.py).

    What os.fork does around fork(2), around clone3 instead: the interpreter's own hooks
    (PyOS_BeforeFork takes the import lock and runs os.register_at_fork's callbacks;
    PyOS_AfterFork_Child resets the GIL, thread states and locks), all with the GIL held.
    What glibc's fork adds (malloc's and stdio's locks taken across it, atfork handlers, its
    cached thread id of the child) only matters with other threads running: callers make sure
    none is (cgroup_join.fork), and no libc call in the child reads that cached id (raise and
    getpid ask the kernel). OSError from clone3 (ENOSYS on old kernels or under a seccomp
    filter that refuses it, EBUSY for a cgroup that may not hold processes, ...) is raised
    with nothing forked."""
    args = _u64s(CLONE_INTO_CGROUP, 0, 0, 0, _SIGCHLD, 0, 0, 0, 0, 0, cgroup_fd)  # clone_args
    _before_fork()
    pid = _clone3(c_long(SYS_clone3), args, c_size_t(len(args)))
    if pid == 0:
        _after_fork_child()
        return 0
    err = get_errno()
    _after_fork_parent()
    if pid < 0:
        raise OSError(err, os.strerror(err))
    return pid


_clone3 = _HoldingGil(("syscall", _libc))  # type: ignore[arg-type]  # as in _Libc
_before_fork = _HoldingGil(("PyOS_BeforeFork", _libc))  # type: ignore[arg-type]
_after_fork_child = _HoldingGil(("PyOS_AfterFork_Child", _libc))  # type: ignore[arg-type]
_after_fork_parent = _HoldingGil(("PyOS_AfterFork_Parent", _libc))  # type: ignore[arg-type]
