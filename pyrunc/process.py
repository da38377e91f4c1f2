"""The container process's own setup, shared by the init and by `exec`: limits, identity,
capabilities, cwd, the executable lookup, and closing every fd the process must not inherit;
and what both forked children do on their way in (namespaces joined by path, the parent's fds
dropped, oom_score_adj, the pty, one-line error reports).

Runs between fork and execve (see init.py for the rules that follow from that). `exec` imports
this module and not init.py (execchild.py): every module on its path costs each call its
start-up.
"""

from __future__ import annotations

import errno
import sys

from pyrunc import capabilities, linux, saferoot, sync
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.errors import describe  # used here, and by init, execchild and execute from here

_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


CAP_SYS_ADMIN = 21


def seccomp_needs_admin(proc: dict, caps: dict[str, list[int]]) -> bool:
    """Without no_new_privs, loading a seccomp filter needs CAP_SYS_ADMIN. runc loads the filter
    before the switch of uid and the capset then; we load it last, so CAP_SYS_ADMIN is kept
    effective (and permitted only) until the filter is in, and dropped right after
    (exeguard.execute). Setting no_new_privs instead would change what the process may do
    (setuid binaries), so it is not an option."""
    return not proc.get("noNewPrivileges") and CAP_SYS_ADMIN not in caps["effective"]


def prepare_process(proc: dict, seccomp: bool = False,
                    caps: dict[str, list[int]] | None = None) -> tuple[str, dict[str, str]]:
    """Limits, identity and cwd, then the executable looked up as the container user will run it.
    seccomp: a filter will be loaded before execve (see seccomp_needs_admin); caps: the
    process's capabilities.parse, if the caller made it before fork (exec's CLI validates them)."""
    for limit in proc.get("rlimits") or []:
        set_rlimit(limit)
    # oomScoreAdj: written by the intermediate (init.set_oom_score_adj), inherited through fork.
    user = proc.get("user") or {}
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    if caps is None:
        caps = capabilities.parse(proc.get("capabilities"))
    capabilities.drop_bounding(caps)
    capabilities.keep_caps(True)  # or setresuid to non-root would empty every set
    try:
        os.setgroups([int(g) for g in user.get("additionalGids") or []])
    except PermissionError:
        if user.get("additionalGids"):
            raise
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    capabilities.keep_caps(False)
    if seccomp and seccomp_needs_admin(proc, caps):
        kept = dict(caps, effective=caps["effective"] + [CAP_SYS_ADMIN],
                    permitted=caps["permitted"] + [CAP_SYS_ADMIN])
        capabilities.apply_sets(kept)
    else:
        capabilities.apply_sets(caps)
    os.umask(int(user["umask"]) if user.get("umask") is not None else 0o022)
    if proc.get("noNewPrivileges"):
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    cwd = proc.get("cwd") or "/"
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        cwd_fd = saferoot.open_in_root(root, cwd, os.O_PATH | os.O_DIRECTORY)
    except OSError as exc:
        raise OSError(exc.errno, f"chdir to cwd ({cwd!r}) set in config.json failed: "
                      f"{(exc.strerror or '').lower()}") from None
    finally:
        os.close(root)
    try:
        os.fchdir(cwd_fd)
    finally:
        os.close(cwd_fd)
    env: dict[str, str] = {}
    for item in proc.get("env") or []:
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
    if "HOME" not in env:
        env["HOME"] = home_of(uid)
    return find_executable(proc["args"][0], env.get("PATH", DEFAULT_PATH)), env


# Kernel numbering (include/uapi/asm-generic/resource.h): setrlimit through linux.prlimit,
# without the resource module (a shared library to load on every create and exec).
_RLIMITS = {f"RLIMIT_{name}": i for i, name in enumerate((
    "CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS", "LOCKS",
    "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"))}


def set_rlimit(limit: dict) -> None:
    kind = limit["type"]
    if kind not in _RLIMITS:
        raise OSError(errno.EINVAL, f"unknown rlimit type {kind!r}")
    try:
        linux.prlimit(_RLIMITS[kind], int(limit["soft"]), int(limit["hard"]))
    except OSError as exc:
        # e.g. EPERM: raising the hard limit without CAP_SYS_RESOURCE
        raise OSError(exc.errno, f"error setting rlimit {kind} (soft {limit['soft']}, hard "
                      f"{limit['hard']}): {(exc.strerror or '').lower()}") from None


def home_of(uid: int) -> str:
    """The user's home in the container's /etc/passwd, else "/". Read through posix, as bytes:
    io's file and text layers cost the exec'd process (between fork and execve, where each
    page written is copied first) ~9 syscalls and its decoder set-up, and a line that is not
    UTF-8 no longer fails the exec."""
    try:
        fd = os.open("/etc/passwd", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return "/"
    chunks: list[bytes] = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:
        return "/"
    finally:
        os.close(fd)
    want = str(uid).encode()
    for line in b"".join(chunks).split(b"\n"):
        fields = line.split(b":")
        if len(fields) > 5 and fields[2] == want:
            return fields[5].decode(_FS_ENCODING, _FS_ERRORS)   # what os.fsdecode does
    return "/"


def find_executable(name: str, path: str) -> str:
    """runc's lookup and wording: engines sort errors by these substrings (ENGINES.md)."""
    if "/" in name:
        try:
            st = os.stat(name)
        except OSError as exc:
            raise OSError(exc.errno, f'exec: "{name}": stat {name}: '
                          f"{(exc.strerror or '').lower()}") from None
        if (st.st_mode & 0o170000) == 0o040000 or not os.access(name, os.X_OK):
            raise OSError(errno.EACCES, f'exec: "{name}": permission denied')
        return name
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if (st.st_mode & 0o170000) != 0o040000 and os.access(candidate, os.X_OK):
            return candidate
    raise OSError(errno.ENOENT, f'exec: "{name}": executable file not found in $PATH')


def close_inherited_fds(preserve: int) -> None:
    """Only stdio and the preserved fds may reach the container (CVE-2024-21626 class)."""
    first = 3 + preserve
    for fd in range(3, first):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    linux.close_range(first, 0xFFFFFFFF, linux.CLOSE_RANGE_CLOEXEC)


NS_FLAGS = {
    "pid": linux.CLONE_NEWPID, "network": linux.CLONE_NEWNET, "mount": linux.CLONE_NEWNS,
    "ipc": linux.CLONE_NEWIPC, "uts": linux.CLONE_NEWUTS, "user": linux.CLONE_NEWUSER,
    "cgroup": linux.CLONE_NEWCGROUP, "time": linux.CLONE_NEWTIME,
}
# setns order: the user namespace first (it owns the others), mount last (it changes our root).
NS_JOIN_ORDER = ("user", "cgroup", "ipc", "uts", "network", "pid", "time", "mount")


def report(sock: sync.Socket, exc: BaseException) -> None:
    """Tell the CLI why we failed before execve (or our stderr, if the socket cannot)."""
    try:
        sync.send(sock, "error", msg=describe(exc))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the CLI is gone (it failed and reports its own error, or was killed)
    except OSError:
        os.write(2, f"pyrunc init: {describe(exc)}\n".encode())


def set_oom_score_adj(value: int | None) -> None:
    """Before the user namespace and before we turn non-dumpable: /proc/self/oom_score_adj of
    a non-dumpable process belongs to the host's root, so the container's root (or a rootless
    caller) could not open it later. Children inherit the value (runc writes it here too)."""
    if value is None:
        return
    try:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
        try:
            if linux.fstatfs_type(fd) != linux.PROC_SUPER_MAGIC:
                raise OSError(errno.EXDEV, "not on procfs, refusing to write")
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise OSError(exc.errno, f"process.oomScoreAdj: writing {value} to "
                      f"/proc/self/oom_score_adj: {(exc.strerror or '').lower()}") from None


def fork_after_report(sock: sync.Socket) -> int:
    """fork(); the parent reports the child's pid before the child may say anything, so the
    CLI always reads "pid" first on the shared socket (the child waits on a pipe for that)."""
    gate_r, gate_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(gate_w)
        os.read(gate_r, 1)  # EOF once the pid is reported (or the intermediate is gone)
        os.close(gate_r)
        return 0
    os.close(gate_r)
    try:
        sync.send(sock, "pid", pid=pid)
    finally:
        os.close(gate_w)
    return pid


def close_parent_fds(preserve: int, *keep: int) -> None:
    """Drop every fd the CLI had open but `keep` (ours, close-on-exec: the sync socket, and
    for exec the trampoline and the held procfs): a forked copy of the state-dir lock would
    keep the container locked for as long as the init lives, and none of them belongs in a
    container."""
    first = 3 + preserve
    for fd in sorted(set(keep)):
        if fd < first:
            continue
        if fd > first:
            linux.close_range(first, fd - 1)
        first = fd + 1
    linux.close_range(first, 0xFFFFFFFF)


def join_namespace(kind: str, path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise OSError(exc.errno, f"joining {kind} namespace: {exc.strerror}", path) from None
    try:
        linux.setns(fd, NS_FLAGS[kind])
    except OSError as exc:
        raise OSError(exc.errno, f"joining {kind} namespace: {exc.strerror}", path) from None
    finally:
        os.close(fd)


def hand_out_pty(proc: dict, sock: sync.Socket, console: bool) -> int:
    """Open the pty in the container, send the master to the CLI, keep the peer for stdio.
    pyrunc.terminal is imported by the callers before fork (init.py; execchild.prepare when the
    process has a terminal): here a look-up in sys.modules, and `exec` without -t loads none."""
    from pyrunc import terminal
    user = proc.get("user") or {}
    master, peer = terminal.open_container_pty(proc.get("consoleSize"), int(user.get("uid", 0)),
                                               int(user.get("gid", 0)))
    if console:
        terminal.bind_console(peer)
    sync.send(sock, "pty", fds=[master])
    os.close(master)
    return peer
