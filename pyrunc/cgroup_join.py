"""Putting a new process into a container's cgroups without the kernel's RCU grace period.

A write of a pid to cgroup.procs takes a global percpu rwsem for writing, and the first such
writer after a quiet period waits out a whole RCU grace period (10-18 ms on this host: more
than the rest of `run` together). runc pays it on every create and exec. Two ways in take
only the read side of that rwsem, and together they cover every hierarchy:

- cgroup v1: a thread writing "0" (itself) into a hierarchy's `tasks` file moves just that
  thread, and the kernel skips the global lock for it (~20 us a hierarchy). Our init and
  exec'd processes are forked, so single-threaded: moving the thread moves the process.
- cgroup v2 (a pure v2 host, or the cgroup2 mount of a hybrid one): `tasks` does not exist
  and cgroup.threads moves no thread across domains, but clone3's CLONE_INTO_CGROUP makes the
  child in the cgroup it names (linux.fork_into_cgroup).

Where either is refused (a kernel before 5.7, a seccomp filter of our caller's returning
ENOSYS for clone3, a cgroup that may not hold processes), the cgroup.procs write remains: the
same result, only slower. The rootless path keeps cgroup.procs too: a delegated v1 directory
need not have given us its `tasks` file.
"""

from __future__ import annotations

import _thread

from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc import linux

# clone3 errors after which a plain fork does the same job: no clone3 (ENOSYS, EPERM from a
# seccomp filter), no CLONE_INTO_CGROUP (EINVAL, E2BIG), a directory that is not a cgroup2
# one or may not take processes (EBADF, EOPNOTSUPP, EBUSY), no permission on it (EACCES).
_FALL_BACK = frozenset({38, 1, 22, 7, 9, 95, 16, 13})


def open_v2(dirs: dict[str, str]) -> int:
    """An fd of the cgroup2 directory among dirs (key "", as /proc/<pid>/cgroup names it) for
    fork, or -1: none, or it cannot be opened (the fallback then reports the real error)."""
    path = dirs.get("")
    if path is None:
        return -1
    try:
        return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return -1


def fork(cgroup_fd: int) -> tuple[int, bool]:
    """os.fork(); where the kernel can, the child is born in cgroup_fd's cgroup2 directory.
    Returns (pid, born in it). Only while we are single-threaded (see linux.fork_into_cgroup:
    glibc's fork protects other threads' locks, the raw clone does not); _thread._count
    counts the threads still running that _thread started (the cgroup keeper's)."""
    if cgroup_fd >= 0 and _thread._count() == 0:
        try:
            return linux.fork_into_cgroup(cgroup_fd), True
        except OSError as exc:
            if exc.errno not in _FALL_BACK:
                raise
    return os.fork(), False


def join_self(dirs: dict[str, str], born_in_v2: bool, rootless: bool = False) -> None:
    """Move the calling process, single-threaded, into each directory (hierarchy key ->
    directory): v1 ones through `tasks`, the cgroup2 one through cgroup.procs unless it was
    born there. Errors name the file."""
    for key, directory in dirs.items():
        if key == "" and born_in_v2:
            continue
        path = join_file(key, directory, rootless)
        try:
            write_self(path)
        except OSError as exc:
            raise _join_error(exc, key, path) from None


def join_file(key: str, directory: str, rootless: bool = False) -> str:
    return directory + ("/tasks" if key and not rootless else "/cgroup.procs")


def open_for_join(dirs: dict[str, str], born_in_v2: bool) -> list[tuple[str, str, int]]:
    """(key, path, fd) of each file join_self would write, opened for a direct init by its
    parent while the init works: the first open of a new cgroup's file makes its inode
    (~45 us a hierarchy here, against ~7 us for the write). A write of "0" moves the writer,
    whoever opened the file, and only root opens these (the direct path is never rootless).
    All or nothing: on error none stays open, and the error names the file."""
    files: list[tuple[str, str, int]] = []
    try:
        for key, directory in dirs.items():
            if key == "" and born_in_v2:
                continue
            path = join_file(key, directory)
            try:
                files.append((key, path, os.open(path, os.O_WRONLY | os.O_CLOEXEC)))
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, path) from None
    except BaseException:
        close_all(files)
        raise
    return files


def join_through(files: list[tuple[str, str, int]]) -> None:
    """join_self through the files open_for_join opened (in another process): "0" into each,
    in order; every fd is closed, whatever happens."""
    try:
        for key, path, fd in files:
            try:
                os.write(fd, b"0")
            except OSError as exc:
                raise _join_error(OSError(exc.errno, exc.strerror, path), key, path) from None
    finally:
        close_all(files)


def close_all(files: list[tuple[str, str, int]]) -> None:
    for _key, _path, fd in files:
        os.close(fd)


def _join_error(exc: OSError, key: str, path: str) -> OSError:
    if exc.errno == 22 and "cpu" in key.split(",") and realtime():  # EINVAL
        return OSError(exc.errno, f"{exc.strerror}: a process with a realtime scheduling "
                       "policy only joins a cpu cgroup given realtime time (set "
                       "linux.resources.cpu.realtimeRuntime)", path)
    return exc


def realtime() -> bool:
    """Whether we run SCHED_FIFO or SCHED_RR (the caller's policy, inherited): the kernel then
    refuses to move us into a v1 cpu cgroup whose cpu.rt_runtime_us is 0, with a bare EINVAL."""
    try:
        return os.sched_getscheduler(0) & 0xFF in (1, 2)   # masks SCHED_RESET_ON_FORK
    except OSError:
        return False


def write_self(path: str) -> None:
    """Write "0" (the writer itself) into a tasks or cgroup.procs file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
