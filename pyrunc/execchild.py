"""`pyrunc exec`'s child: the code between fork and execve of a process joining a running
container (execute.py is the CLI's side).

    pyrunc exec ─setns(pid) for its children only─fork─► the process: oom_score_adj,
      │ non-dumpable, fds dropped, trampoline, born in the container's cgroup2 directory,
      │ joins the v1 ones (cgroup_join.py), then every namespace in one setns on a pidfd of
      │ the init (else one by one: user first, mount last), setup, "ready", execve through
      │ the trampoline
    or, where the CLI cannot set its pid_for_children (not root):
    pyrunc exec ─fork─► intermediate: cgroups, joins as above, ─fork─► the process; reports
      its pid

The rules of init.py apply (DESIGN.md section 6): single-threaded in a forked copy of the CLI,
non-dumpable from fork to execve, no module loaded after fork (the container's mount namespace
hides the interpreter's files), never a return into the CLI's code, no fd of ours across
execve. Not part of init.py: `exec` would import the whole create path with it (mounts, rootfs,
hooks, ...), ~1 ms of start-up per call. pyrunc.seccomp is imported by the CLI whenever the
container has a filter (execute.py compiles it there): the imports of it below, made only
then, look it up in sys.modules and load nothing.
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum

from pyrunc import cgroup_join, exeguard, linux, lsm, procfs, sync
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.process import (
    NS_FLAGS,
    NS_JOIN_ORDER,
    close_inherited_fds,
    close_parent_fds,
    describe,
    fork_after_report,
    hand_out_pty,
    join_namespace,
    prepare_process,
    report,
    set_oom_score_adj,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from pyrunc.seccomp import Filter

PROC_NS_NAMES = {"user": "user", "cgroup": "cgroup", "ipc": "ipc", "uts": "uts",
                 "network": "net", "pid": "pid", "time": "time", "mount": "mnt"}


class ExecPlan:
    """What `pyrunc exec` computed before fork: whose namespaces, which cgroups, which process."""

    def __init__(self, init_pid: int, process: dict, cgroup_dirs: dict[str, str],
                 preserve_fds: int) -> None:
        self.init_pid = init_pid
        self.process = process
        self.cgroup_dirs = cgroup_dirs   # hierarchy key ("" for cgroup2) -> directory
        self.preserve_fds = preserve_fds
        self.seccomp: Filter | None = None  # compiled by the parent, loaded last
        self.container_id = ""
        self.bundle = ""
        self.annotations: dict = {}
        self.oci_version = ""
        self.host_proc = -1  # the host's /proc, for our host pid (the notify listener's state)
        self.exe_fd = -1     # the exec trampoline (exeguard.py), made before entering the userns
        self.pidfd = -1      # of the container's init: every namespace joined in one setns
        self.joins: list[str] = []   # the namespace types the container does not share with us
        self.born_in_v2 = False      # forked into the cgroup2 directory (cgroup_join.fork)
        # process.capabilities as numbers, parsed (and checked) by the CLI: not again in the
        # child, where every object it touches costs a copied page.
        self.caps: dict[str, list[int]] | None = None


def prepare(plan: ExecPlan) -> None:
    """The CLI's part before fork: what needs nothing of the child is done here, once, rather
    than after fork, where each page a step writes is copied first (~2.7 us a fault here):
    which namespaces differ from ours (the child's are ours until it joins), the exec
    trampoline (made by the caller, outside any user namespace the container has, as
    exeguard.py requires) and the held host procfs. Both fds are close-on-exec, survive the
    child's close_parent_fds, and are closed here after the fork (release)."""
    plan.joins = [kind for kind in NS_JOIN_ORDER if _differs(plan.init_pid, kind)]
    if plan.process.get("terminal"):
        from pyrunc import terminal  # noqa: F401  # the child's (_terminal): loaded now, if at all
    if "user" in plan.joins:
        from pyrunc import userns  # noqa: F401  # the child's (_userns): only for a user namespace
    # What the child would otherwise look up for itself, each costing it copied pages: the posix
    # names its setup uses (lightos.py) and the libc functions only it calls (dlsym).
    os.bind_container_names()
    linux.resolve("capset", "prlimit")
    plan.exe_fd = exeguard.create()
    # Every /proc write of the exec'd process goes through it, and the seccomp notify
    # listener is told the process's host pid from it.
    plan.host_proc = procfs.hold_proc()
    plan.pidfd = _pidfd(plan.init_pid)


def _pidfd(pid: int) -> int:
    """A pidfd of the init (close-on-exec), or -1 (a kernel without pidfd_open, a pid gone:
    the joins by path then say what is wrong). setns on it with several CLONE_NEW* flags
    (Linux 5.8) enters them all in one call, atomically: nothing changes if one is refused."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        return -1


def release(plan: ExecPlan) -> None:
    """In the CLI after the fork: the child has its own copies of both fds; a foreground
    exec lives as long as the process, with nothing of the container's open."""
    if plan.exe_fd >= 0:
        os.close(plan.exe_fd)
        plan.exe_fd = -1
    if plan.pidfd >= 0:
        os.close(plan.pidfd)
        plan.pidfd = -1
    procfs.drop_proc()
    plan.host_proc = -1


def join_pid_ns(plan: ExecPlan) -> int:
    """The CLI's side of the one-fork exec: make our next child be born in the container's pid
    namespace (setns(CLONE_NEWPID) sets pid_for_children only; we stay where we are) and
    non-dumpable, so that child can enter everything else itself and become the program.

    Returns an fd of our own pid namespace for leave_pid_ns, or -1 where the child must
    be the intermediate of the two-fork path: a caller without root (joining a pid namespace
    needs CAP_SYS_ADMIN in our own user namespace). A time namespace needs no intermediate:
    the child, single-threaded, joins it for itself (setns switches its own clocks, Linux
    5.8), as it joins the others. DESIGN.md section 6: the child is non-dumpable from its
    first instruction, since a dumpable copy of us in the container's pid namespace could be
    ptraced from inside."""
    if os.geteuid() != 0:
        return -1
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if "pid" in plan.joins and plan.pidfd >= 0:
            linux.setns(plan.pidfd, linux.CLONE_NEWPID)
        elif "pid" in plan.joins:
            join_namespace("pid", f"/proc/{plan.init_pid}/ns/pid")
        linux.prctl(linux.PR_SET_DUMPABLE, 0)
    except OSError:
        leave_pid_ns(own)
        return -1
    return own


def leave_pid_ns(own: int) -> None:
    """In the CLI, right after the fork: our later children are ours again, and so is our
    dumpable flag (the child keeps its copy of both)."""
    try:
        linux.prctl(linux.PR_SET_DUMPABLE, 1)
        linux.setns(own, linux.CLONE_NEWPID)
    finally:
        os.close(own)


def _seccomp():
    """pyrunc.seccomp, imported by the CLI to compile the filter: a look-up in sys.modules."""
    from pyrunc import seccomp
    return seccomp


def _userns():
    """pyrunc.userns, imported by prepare for a container with its own user namespace only: a
    look-up in sys.modules."""
    from pyrunc import userns
    return userns


def _terminal():
    """pyrunc.terminal, imported by prepare for a process with a terminal only: a look-up in
    sys.modules (exec without -t loads none of its code)."""
    from pyrunc import terminal
    return terminal


def _differs(init_pid: int, kind: str) -> bool:
    """Whether the container has a namespace of this kind that is not ours (a missing
    /proc/<pid>/ns entry: the kernel has no such namespace type).

    By the links' text ("net:[4026531840]": the type and the namespace's inode number, what
    stat's st_ino would give), not by stat: a stat resolves the magic link to an nsfs dentry,
    which the kernel builds for the call and frees after it; readlink only formats the name.
    16 stats cost exec's critical path ~0.25 ms before its fork, 16 readlinks ~0.05 ms."""
    name = PROC_NS_NAMES[kind]
    try:
        return os.readlink(f"/proc/{init_pid}/ns/{name}") != os.readlink(f"/proc/self/ns/{name}")
    except FileNotFoundError:
        return False


def _enter(plan: ExecPlan, sock: sync.Socket, born_in_pid_ns: bool) -> None:
    """Enter the container's cgroups and the namespaces we do not share with it (prepare; in
    the one-fork path we were born in its pid namespace, and in its cgroup2 directory)."""
    set_oom_score_adj(plan.process.get("oomScoreAdj"))
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    close_parent_fds(plan.preserve_fds, sock.fileno(), plan.exe_fd, plan.host_proc, plan.pidfd)
    if plan.seccomp is not None and plan.seccomp.notify:
        _seccomp().connect_listener(plan.seccomp)  # host paths: before entering the mount ns
    # Before the user and cgroup namespaces; single-threaded, so without a grace period.
    cgroup_join.join_self(plan.cgroup_dirs, plan.born_in_v2)
    joins = [kind for kind in plan.joins if kind != "pid" or not born_in_pid_ns]
    if plan.pidfd >= 0:
        if joins and _join_all(plan.pidfd, joins):
            joins = []
            if "user" in plan.joins:
                _userns().become_root()
        os.close(plan.pidfd)
        plan.pidfd = -1
    for kind in joins:   # in NS_JOIN_ORDER
        join_namespace(kind, f"/proc/{plan.init_pid}/ns/{PROC_NS_NAMES[kind]}")
        if kind == "user":
            _userns().become_root()


def _join_all(pidfd: int, kinds: list[str]) -> bool:
    """Enter every namespace of `kinds` of the process pidfd names in one setns (the kernel
    takes the user namespace first, and sets root and cwd for a mount namespace as a join by
    path does): one syscall instead of an open, a setns and a close per kind, each of which
    costs this freshly forked copy of the CLI its copied pages. False if refused: then nothing
    changed, and the joins one by one name the namespace at fault."""
    flags = 0
    for kind in kinds:
        flags |= NS_FLAGS[kind]
    try:
        linux.setns(pidfd, flags)
    except OSError:
        return False
    return True


def direct_main(plan: ExecPlan, sock: sync.Socket) -> NoReturn:
    """The one-fork path's child (see join_pid_ns): enter, then become the process."""
    try:
        _enter(plan, sock, born_in_pid_ns=True)
    except BaseException as exc:  # noqa: BLE001
        report(sock, exc)
        os._exit(1)
    child_main(plan, sock)


def intermediate_main(plan: ExecPlan, sock: sync.Socket) -> NoReturn:
    """The two-fork path: enter the container's cgroups and namespaces, then fork the process
    (a pid or time namespace only applies to children), report its pid and leave it to the
    caller."""
    code = 1
    try:
        _enter(plan, sock, born_in_pid_ns=False)
        pid = fork_after_report(sock)
        if pid == 0:
            child_main(plan, sock)
        code = 0
    except BaseException as exc:  # noqa: BLE001
        report(sock, exc)
    finally:
        os._exit(code)


def child_main(plan: ExecPlan, sock: sync.Socket) -> NoReturn:
    code = 1
    ready = False
    try:
        proc = plan.process
        peer = -1
        if proc.get("terminal"):
            os.setsid()  # an exec'd process gets its own session to own the terminal
            peer = hand_out_pty(proc, sock, console=False)
        exe, env = prepare_process(proc, plan.seccomp is not None, plan.caps)
        sync.send(sock, "ready")
        ready = True
        # The socket stays open until the program's execve (the trampoline sets it close-on-exec
        # and reports a failed execve on it): its end-of-file tells `exec` that the program runs
        # (or that we died), so `exec -d` returns and writes its pid file only then. Without a
        # trampoline, a number inside the preserved range would become inheritable: close it.
        if plan.exe_fd < 0 and sock.fileno() < 3 + plan.preserve_fds:
            sock.close()
        if peer >= 0:
            _terminal().make_controlling(peer)
        close_inherited_fds(plan.preserve_fds)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        notify_state = b""
        if plan.seccomp is not None and plan.seccomp.notify:
            notify_state = _seccomp().process_state(
                plan.seccomp, plan.container_id, int(os.readlink("self", dir_fd=plan.host_proc)),
                plan.bundle, plan.annotations, "running", plan.oci_version)
        lsm.apply(proc, procfs.write_proc)
        if plan.seccomp is not None:
            _seccomp().load(plan.seccomp, notify_state)  # last: then only a capset and execve
        keep = (sock.fileno(),) if sock.fileno() >= 0 else ()
        exeguard.execute(plan.exe_fd, exe, proc, env, keep, plan.seccomp, caps=plan.caps)
    except BaseException as exc:  # noqa: BLE001
        if ready:
            os.write(2, f"pyrunc: exec: {describe(exc)}\n".encode())
            code = 127 if isinstance(exc, FileNotFoundError) else 126
        else:
            report(sock, exc)
    finally:
        os._exit(code)
