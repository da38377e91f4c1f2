"""The cgroup "keeper" thread, and the two /proc files it needs to find our own cgroup.procs.

Only the intermediate's paths (user namespaces, rootless, a joined pid or time namespace, exec
without root) still move a process by a cgroup.procs write and start the keeper, once create or
exec knows it will come; the direct paths join without that wait (cgroup_join.py). A module of
its own, importing only builtins (posix, _thread, time, sys): what exec, state and the others
need of it (mounts, own_cgroups, read_all, the keeper's fd) comes without cgroups.py's ~1 M
instructions. cgroups.py re-exports it; this is its only implementation.
"""

from __future__ import annotations

import _thread
import posix  # not os: see lightos.py
import sys
import time

_V1_SKIP_OPTS = {"rw", "ro", "nosuid", "nodev", "noexec", "relatime", "noatime", "strictatime",
                 "nodiratime", "clone_children", "noprefix", "xattr", "cpuset_v2_mode",
                 "favordynmods"}
_MOUNTS: list[tuple[str, str]] = []   # mounts' answer, once per process
_OWN: dict[str, str] = {}             # own_cgroups' answer for "self", once per process


def read_all(path: str) -> bytes:
    """A /proc file whole, through posix (io's layers cost ~9 syscalls and ~50 us per file)."""
    fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        chunks: list[bytes] = []
        while True:
            chunk = posix.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        posix.close(fd)


def mounts() -> list[tuple[str, str]]:
    """(hierarchy key, mount point) of every cgroup mount of the host, once per hierarchy (bind
    mounts of subtrees ignored); the key is what /proc/<pid>/cgroup names ("" for cgroup2).

    Read once per process: create needs it twice (the keeper's own cgroup.procs, then the
    container's paths) before the init can be forked, and a command lives for milliseconds."""
    if _MOUNTS:
        return list(_MOUNTS)
    found: dict[str, str] = {}
    for line in read_all("/proc/self/mountinfo").decode(errors="surrogateescape").split("\n"):
        pre, _, post = line.partition(" - ")
        if not post.startswith("cgroup"):
            continue
        fstype, _src, superopts = (post.split() + ["", ""])[:3]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        fields = pre.split()
        root, mountpoint = fields[3], fields[4]
        if root != "/":
            continue
        if fstype == "cgroup2":
            key = ""
        else:
            key = ",".join(o for o in superopts.split(",") if o not in _V1_SKIP_OPTS)
        found.setdefault(key, mountpoint.replace("\\040", " "))
    _MOUNTS[:] = found.items()
    return list(_MOUNTS)


def own_cgroups(pid: str = "self") -> dict[str, str]:
    """hierarchy key -> cgroup path of a process (ours read once: see mounts)."""
    if pid == "self" and _OWN:
        return dict(_OWN)
    paths: dict[str, str] = {}
    for line in read_all(f"/proc/{pid}/cgroup").decode(errors="surrogateescape").split("\n"):
        if not line:
            continue
        _, key, path = line.split(":", 2)
        paths[key] = path
    if pid == "self":
        _OWN.update(paths)
    return paths


_KEEP_PERIOD = 0.005     # well inside the ~10 ms the rwsem stays fast after a writer leaves
_KEEP_AT_MOST = 1.0      # a create or exec makes its writes within this (hooks aside)
_KEEP_SWITCH = 0.0002    # s: the GIL switch interval while a keeper runs
_KEEP_MIN_FDS = 64      # RLIMIT_NOFILE below which there is no keeper
_keeper = [0, 0]         # [generation running (0: none), last generation started]
_KEEP_FD_MARGIN = 8      # the keeper's fd sits this far below RLIMIT_NOFILE
KEEPER_FD = [-1]         # its fd on our own cgroup.procs (see _keeper_fd), never closed


def prewarm_migration() -> int:
    """Keep the kernel's cgroup-migration slow path out of our way, in a thread of our own.

    Every cgroup.procs write takes a global percpu rwsem for writing, and the first writer after
    a quiet period waits a whole RCU grace period (10-18 ms here; runc pays it too) holding
    cgroup_mutex, so a mkdir in any hierarchy waits as well. Writers that come within about one
    grace period of the previous one pass in microseconds. So a thread makes no-op moves of
    our process into its own cgroup: the first pays the wait (in the kernel, without the GIL)
    while we import and parse, then one every 5 ms keeps the rwsem on its fast path for our
    mkdirs and writes. A thread, not a child: a child forked at start-up shares our memory
    copy-on-write, and every page we then touch during our imports faults and is copied
    (~400 faults, 3-7 ms of CPU per call, measured on exec). Started at most once per process.
    Returns its generation while it runs (for reap_prewarm), or 0.
    """
    if _keeper[0]:
        return _keeper[0]     # one runs already
    limit = posix.sysconf("SC_OPEN_MAX")
    if limit < _KEEP_MIN_FDS:
        return 0   # it shares our fd table: under a tiny RLIMIT_NOFILE, our own opens come first
    if KEEPER_FD[0] < 0:
        try:
            target = _own_procs_file()
            if target is None:
                return 0
            KEEPER_FD[0] = _keeper_fd(target, limit - _KEEP_FD_MARGIN, limit)
        except OSError:     # e.g. a rootless caller may not move itself: only slower
            return 0
    # The thread needs the GIL for the few bytecodes around each write, and the main thread,
    # importing, would hold it for the default 5 ms switch interval: the first (slow) write
    # would start that much later. A handover happens only when the keeper asks for it.
    sys.setswitchinterval(_KEEP_SWITCH)
    _keeper[1] += 1
    _keeper[0] = generation = _keeper[1]
    # And we wait until the thread runs: it releases `started` and enters its first write
    # (which releases the GIL) at once. Left to the switch interval, that first write began
    # 0.7-2.5 ms after the thread was made (perf trace, exec), 0.3-0.5 ms this way: the grace
    # period it waits for is what `exec` and `run` wait for after their own work.
    started = _thread.allocate_lock()
    started.acquire()
    try:
        _thread.start_new_thread(_keep_warm, (KEEPER_FD[0], generation,
                                              time.monotonic() + _KEEP_AT_MOST, started))
    except RuntimeError:      # no thread (limits): only slower
        _keeper[0] = 0
        return 0
    started.acquire()
    return generation


def _own_procs_file() -> str | None:
    """The cgroup.procs of our own cgroup in the first hierarchy /proc/self/cgroup lists."""
    key, path = next(iter(own_cgroups().items()))
    for hkey, mountpoint in mounts():
        if hkey == key:
            return mountpoint + (path if path != "/" else "") + "/cgroup.procs"
    return None


def _keeper_fd(target: str, at_least: int, limit: int) -> int:
    """The keeper's own fd, opened by the main thread, numbered near RLIMIT_NOFILE and never
    closed: it shares our fd table, so a transient fd of its own could take a low number that a
    forked child must not inherit (--preserve-fds counts from 3), and a closed one could be
    reused by one of ours between its check and its write. A forked child closes it by number
    (close_keeper_fd). The lowest free number from at_least, as F_DUPFD_CLOEXEC picks it, but
    without the fcntl module (a shared library to load first): no other thread runs yet."""
    fd = posix.open(target, posix.O_WRONLY | posix.O_CLOEXEC)
    try:
        for number in range(at_least, limit):
            try:
                posix.fstat(number)
            except OSError as e:
                if e.errno != 9:   # EBADF: free
                    raise
                return posix.dup2(fd, number, False)   # dup3(O_CLOEXEC)
        raise OSError(24, "no free fd near RLIMIT_NOFILE")   # EMFILE
    finally:
        posix.close(fd)


def close_keeper_fd() -> None:
    """In a child forked from us: the keeper's fd is ours, never the container's."""
    if KEEPER_FD[0] >= 0:
        try:
            posix.close(KEEPER_FD[0])
        except OSError:
            pass
        KEEPER_FD[0] = -1


def _keep_warm(fd: int, generation: int, deadline: float, started: _thread.LockType) -> None:
    """The thread: moves between syscalls only; no imports (our main thread may hold the
    import lock), nothing it could raise past (a thread's exception would be printed)."""
    started.release()   # prewarm_migration waits for this
    try:
        while _keeper[0] == generation and time.monotonic() < deadline:
            posix.write(fd, b"0")   # 0: our own process, into the cgroup it is in
            time.sleep(_KEEP_PERIOD)
    except OSError:
        pass
    finally:
        if _keeper[0] == generation:
            _keeper[0] = 0


def reap_prewarm(generation: int) -> None:
    """Stop the thread prewarm_migration started (we have made our writes); harmless twice."""
    if generation and _keeper[0] == generation:
        _keeper[0] = 0


def stop_keeper() -> None:
    """Stop whichever keeper runs (our writes are made); harmless when none does."""
    _keeper[0] = 0
