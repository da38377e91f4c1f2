"""The code that runs between fork and execve, top to bottom.

    pyrunc create ─fork─► intermediate: join cgroups, setns/unshare ─fork─► init (PID 1)
                          reports the init's pid, exits          rootfs, pivot, process setup,
                                                                 "ready", waits for `start`, execve
    or, when nothing needs a process outside the container's pid namespace (can_fork_directly):
    pyrunc create ─unshare(NEWPID), fork─► init (PID 1): setns/unshare, then as above

Rules for everything in this module (DESIGN.md section 6): it runs single-threaded in a forked
copy of the CLI, stays non-dumpable until execve (its /proc/<pid>/exe is the host's Python),
imports nothing (after pivot_root the interpreter's stdlib is gone), never returns into the
caller's code (always os._exit), and leaves no fd of ours open across execve.
"""

from __future__ import annotations

import errno
import fcntl
import select
import struct

import _signal as signal  # not `signal`: it imports enum
import _socket

from pyrunc import (exeguard, hooks, linux, lsm, mounts, rootfs, saferoot, seccomp, sync, terminal,
                    userns)
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.errors import runc_wording
from pyrunc.process import close_inherited_fds, prepare_process
from pyrunc.cgroups import CgroupManager
from pyrunc.state import START_ERROR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

NS_FLAGS = {
    "pid": linux.CLONE_NEWPID, "network": linux.CLONE_NEWNET, "mount": linux.CLONE_NEWNS,
    "ipc": linux.CLONE_NEWIPC, "uts": linux.CLONE_NEWUTS, "user": linux.CLONE_NEWUSER,
    "cgroup": linux.CLONE_NEWCGROUP, "time": linux.CLONE_NEWTIME,
}
# setns order: the user namespace first (it owns the others), mount last (it changes our root).
NS_JOIN_ORDER = ("user", "cgroup", "ipc", "uts", "network", "pid", "time", "mount")
# Signals whose default action ends a process: a created container (PID 1, blocked waiting for
# `start`) must still die from them, and PID 1 only gets the signals it has handlers for.
_FATAL = [s for s in signal.valid_signals() if s not in (
    signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGCONT, signal.SIGWINCH,
    signal.SIGURG, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)]


class InitPlan:
    """Everything the child needs, computed by the parent before fork."""

    def __init__(self, cfg: dict, rootfs: str, bundle: str, fifo: str, cgroups: CgroupManager,
                 no_pivot: bool = False, preserve_fds: int = 0,
                 join: list[tuple[str, str]] | None = None, new: set[str] | None = None,
                 keyring: str | None = None) -> None:
        self.cfg = cfg
        self.rootfs = rootfs
        self.bundle = bundle
        self.fifo = fifo
        self.cgroups = cgroups
        self.no_pivot = no_pivot
        self.preserve_fds = preserve_fds
        self.join = join or []          # (type, path) of namespaces to enter
        self.new = new or set()         # types of namespaces to create
        self.keyring = keyring          # session keyring name, None with --no-new-keyring
        self.container_id = ""         # set by create: the notify listener is told the id
        self.rootless = userns.is_rootless()
        self.seccomp: seccomp.Filter | None = None  # compiled by the parent, loaded last
        configured = cfg.get("hooks") or {}
        # The parent and the init must agree on whether the create-time hook exchange happens.
        self.create_hooks = any(configured.get(k) for k in ("prestart", "createRuntime",
                                                             "createContainer", "startContainer"))
        self.fifo_fd = -1               # opened by the intermediate, before any user namespace
        self.start_err_fd = -1          # likewise: where the init says why it never exec'd
        self.exe_fd = -1                # the exec trampoline (exeguard.py), made by the intermediate
        self.premounts: dict[int, int] = {}
        self.cgroups_pending = False    # a direct init: the parent says "cgroups" once made
        user_join = [path for kind, path in self.join if kind == "user"]
        self.user_path = user_join[0] if user_join else None
        self.in_userns = "user" in self.new or self.user_path is not None


def describe(exc: BaseException) -> str:
    """One line for an exception, with no imports (we may be past pivot_root)."""
    if isinstance(exc, OSError):
        text = runc_wording(exc.strerror or str(exc))
        if exc.filename:
            return f"{exc.filename}: {text}"
        return text
    return str(exc) or type(exc).__name__


def _report(sock: sync.Socket, exc: BaseException) -> None:
    try:
        sync.send(sock, "error", msg=describe(exc))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the CLI is gone (it failed and reports its own error, or was killed)
    except OSError:
        os.write(2, f"pyrunc init: {describe(exc)}\n".encode())


def intermediate_main(plan: InitPlan, sock: sync.Socket) -> NoReturn:
    code = 1
    try:
        enter_namespaces(plan, sock, direct=False)
        pid = fork_after_report(sock)
        if pid == 0:
            init_main(plan, sock)
        code = 0
    except BaseException as exc:  # noqa: BLE001 - the child must never unwind into the CLI
        _report(sock, exc)
    finally:
        os._exit(code)


def direct_main(plan: InitPlan, sock: sync.Socket) -> NoReturn:
    """The init without an intermediate (see can_fork_directly): the CLI made the pid namespace
    its children go to, so this process is already PID 1 and unshares the rest itself."""
    try:
        enter_namespaces(plan, sock, direct=True)
    except BaseException as exc:  # noqa: BLE001
        _report(sock, exc)
        os._exit(1)
    init_main(plan, sock)


def can_fork_directly(plan: InitPlan) -> bool:
    """Whether the CLI can fork the init itself. A new pid or time namespace only applies to
    the children of its creator; the CLI can create the pid one for its next child and return
    to its own, but a user namespace (maps written from outside, by the parent), a joined pid
    namespace or a time namespace (offsets written before any process enters it) keep the
    intermediate. Rootless keeps it too: its cgroup setup may drop hierarchies the init must
    know of before it starts (the direct init starts before the cgroups are made), and so do
    idmapped mounts: their helper process (userns.mapping_userns) must be forked, and have its
    maps written by /proc pid, from the host's pid namespace."""
    kinds = {kind for kind, _ in plan.join}
    return not (plan.in_userns or plan.rootless or "pid" in kinds or "time" in kinds
                or "time" in plan.new
                or any(userns.idmap_kind(m) for m in plan.cfg.get("mounts") or []))


def await_cgroups(plan: InitPlan, sock: sync.Socket) -> None:
    """A direct init runs while the parent makes the cgroups: wait for them where first needed
    (joining them for a cgroup namespace, binding them into the rootfs), and in any case
    before "ready", so the parent's messages come in the order it sends them."""
    if plan.cgroups_pending:
        sync.recv(sock, "cgroups", "create")
        plan.cgroups_pending = False


def enter_namespaces(plan: InitPlan, sock: sync.Socket, direct: bool) -> None:
    """From fork to the container's namespaces: everything that needs the host's view first."""
    set_oom_score_adj(plan.cfg["process"].get("oomScoreAdj"))
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    close_parent_fds(plan.preserve_fds, sock.fileno())
    plan.exe_fd = exeguard.create()  # before any user namespace (see exeguard.py)
    rootfs.hold_proc()  # the host's procfs, before any joined mount namespace hides it
    # Host paths are opened now, with the caller's view and rights: once in a user
    # namespace, the container's root may not reach them (a 0700 state dir or bundle).
    plan.fifo_fd = os.open(plan.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    plan.start_err_fd = os.open(os.path.join(os.path.dirname(plan.fifo), START_ERROR),
                                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    if "mount" in plan.new:
        os.chdir(plan.rootfs)  # the init binds it from here (rootfs.bind_rootfs_onto_itself)
    linux_cfg = plan.cfg.get("linux") or {}
    if not plan.rootless:  # a rootless caller can clone nothing here (and needs not)
        plan.premounts = mounts.premount_binds(plan.cfg, plan.bundle, plan.in_userns,
                                               plan.user_path)
    if "cgroup" in plan.new:
        # A new cgroup namespace is rooted where its creator stands: join first. Otherwise
        # the parent moves the init in, in parallel with the init's rootfs work (the first
        # cgroup.procs write waits ~10-18 ms for an RCU grace period). A direct init is
        # forked before the cgroups exist: the parent says when they do.
        await_cgroups(plan, sock)
        plan.cgroups.join_self()
    for kind in NS_JOIN_ORDER:
        for jkind, path in plan.join:
            if jkind == kind:
                join_namespace(kind, path)
                if kind == "user":
                    userns.check_joined_maps(linux_cfg.get("uidMappings") or [],
                                             linux_cfg.get("gidMappings") or [])
                    userns.become_root()
    if "user" in plan.new:
        linux.unshare(linux.CLONE_NEWUSER)
        enter_new_userns(sock, plan.rootless)
    flags = 0
    for kind in plan.new:
        if kind != "user" and not (direct and kind == "pid"):
            flags |= NS_FLAGS[kind]
    linux.unshare(flags)
    offsets = (plan.cfg.get("linux") or {}).get("timeOffsets")
    if "time" in plan.new and offsets:
        if "user" in plan.new:
            # Our own /proc/self/timens_offsets belongs to the host's root now that we are
            # non-dumpable: the parent writes it (runc does the same).
            ask_parent(sock, "timens", plan.rootless)
        else:
            write_time_offsets(offsets)
    if "network" in plan.new:
        loopback_up()


def enter_new_userns(sock: sync.Socket, rootless: bool) -> None:
    """Have the parent write our maps, then become root in the namespace (before unsharing the
    rest, so they belong to it). A non-root parent cannot open /proc/<pid>/uid_map of a
    non-dumpable process: dumpable for that exchange only, while no container code exists."""
    ask_parent(sock, "userns", rootless)
    userns.become_root()


def ask_parent(sock: sync.Socket, what: str, rootless: bool) -> None:
    """Send `what` and wait for "<what>-done": the parent writes into our /proc files."""
    if rootless:
        linux.prctl(linux.PR_SET_DUMPABLE, 1)
    sync.send(sock, what)
    sync.recv(sock, what + "-done", what)
    if rootless:
        linux.prctl(linux.PR_SET_DUMPABLE, 0)


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


def close_parent_fds(preserve: int, keep: int) -> None:
    """Drop every fd the CLI had open: a forked copy of the state-dir lock would keep the
    container locked for as long as the init lives, and none of them belongs in a container."""
    first = 3 + preserve
    if keep > first:
        linux.close_range(first, keep - 1)
    linux.close_range(max(first, keep + 1), 0xFFFFFFFF)


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


def time_offsets_text(offsets: dict) -> bytes:
    lines = []
    for clock in ("monotonic", "boottime"):
        if clock in offsets:
            o = offsets[clock]
            lines.append(f"{clock} {o.get('secs', 0)} {o.get('nanosecs', 0)}\n")
    return "".join(lines).encode()


def write_time_offsets(offsets: dict) -> None:
    rootfs.write_proc("/proc/self/timens_offsets", time_offsets_text(offsets).decode())


def loopback_up() -> None:
    """SIOCSIFFLAGS on "lo": one ioctl, where netlink through pyroute2 costs ~150 ms of imports."""
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), 0x8913, req))[1]
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH14x", b"lo", flags | 0x1))
    finally:
        s.close()


def init_main(plan: InitPlan, sock: sync.Socket) -> NoReturn:
    code = 1
    ready = False
    start_err = -1  # after "ready": where `start` reads why we died instead of exec'ing
    try:
        os.setsid()
        if plan.keyring:
            try:
                linux.join_session_keyring(plan.keyring)
            except OSError as exc:
                if exc.errno != errno.ENOSYS:  # kernels without keyrings: nothing to isolate
                    raise OSError(exc.errno, f"joining a session keyring: {exc.strerror}") from None
        cfg = plan.cfg
        proc = cfg["process"]
        if "mount" not in plan.new:
            os.chdir(plan.rootfs)  # joining a mount namespace reset our cwd to its root
        ctx = rootfs.RootfsContext(cfg, plan.rootfs, plan.bundle, plan.new, plan.cgroups.paths,
                                   plan.in_userns)
        ctx.own_ns.update(kind for kind, _ in plan.join)
        ctx.premounts = plan.premounts
        ctx.await_cgroups = lambda: await_cgroups(plan, sock)
        rootfs.prepare(ctx)
        await_cgroups(plan, sock)
        cwd = proc.get("cwd") or "/"
        os.close(saferoot.mkdir_all(ctx.rootfd, cwd))
        created_state: dict = {}
        if plan.create_hooks:
            sync.send(sock, "create-hooks")
            reply = sync.recv(sock, "continue", "createRuntime hooks")
            created_state = reply["created"]
            hooks.run_hooks("createContainer", (cfg.get("hooks") or {}).get("createContainer")
                            or [], reply["state"])
        fifo_fd = plan.fifo_fd  # the intermediate opened it on the host
        start_err = plan.start_err_fd
        # So does the seccomp listener's socket; our host pid is read from the host's /proc.
        notify_state = b""
        if plan.seccomp is not None and plan.seccomp.notify:
            seccomp.connect_listener(plan.seccomp)
            host_pid = int(os.readlink("self", dir_fd=rootfs.hold_proc()))
            notify_state = seccomp.process_state(
                plan.seccomp, plan.container_id, host_pid, plan.bundle,
                cfg.get("annotations") or {}, "creating", cfg.get("ociVersion", ""))
        rootfs.pivot(ctx, plan.no_pivot)
        if cfg.get("hostname") is not None:
            _socket.sethostname(cfg["hostname"])
        if cfg.get("domainname") is not None:
            linux.setdomainname(cfg["domainname"])
        rootfs.finalize(cfg)
        peer = hand_out_pty(proc, sock, console=True) if proc.get("terminal") else -1
        exe, env = prepare_process(proc, plan.seccomp is not None)
        if "LISTEN_FDS" in env:
            env["LISTEN_PID"] = str(os.getpid())  # 1 in a new pid namespace
        sync.send(sock, "ready")
        # Until the parent's "go" we may not be in our cgroups yet (it moves us in while we
        # work): if it dies before, we must end here rather than wait for a `start` forever
        # out of reach of `delete`'s cgroup kill. EOF is that death.
        sync.recv(sock, "go", "create")
        ready = True
        sock.close()
        if peer >= 0:
            # Before the wait, as runc does: the create's stdout/stderr pipes must not outlive
            # create, or containerd's shim (which reads them to EOF) never sees create end.
            terminal.make_controlling(peer)
        wait_for_start(fifo_fd)
        # fifo_fd stays open (close-on-exec): its closing at execve tells `start` we are there.
        start_hooks = (cfg.get("hooks") or {}).get("startContainer")
        if start_hooks:
            hooks.run_hooks("startContainer", start_hooks, created_state)
        close_inherited_fds(plan.preserve_fds)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; exec would keep it
            signal.signal(sig, signal.SIG_DFL)
        lsm.apply(proc, rootfs.write_proc)
        seccomp.load(plan.seccomp, notify_state)  # last: then only a capset and execve
        # Through the trampoline: the fifo closes, and start.err gets the errno of a failed
        # execve, only at the program's execve.
        exeguard.execute(plan.exe_fd, exe, proc, env, (start_err, fifo_fd), plan.seccomp)
    except hooks.HookError as exc:
        if ready:
            _report_after_ready(start_err, str(exc))
        else:
            _report(sock, exc)
    except BaseException as exc:  # noqa: BLE001
        if ready:
            _report_after_ready(start_err, f"container process: {describe(exc)}")
            code = 127 if isinstance(exc, FileNotFoundError) else 126 if isinstance(
                exc, PermissionError) else 1
        else:
            _report(sock, exc)
    finally:
        os._exit(code)


def _report_after_ready(start_err: int, msg: str) -> None:
    """After create returned, our stderr is the container's; `start` also reads START_ERROR
    to fail with this message (a failed startContainer hook must fail `start`)."""
    line = f"pyrunc: {msg}\n".encode()
    os.write(2, line)
    if start_err >= 0:
        try:
            os.write(start_err, line)
        except OSError:
            pass


def _die_on_signal(signum: int, _frame: object) -> None:
    os._exit(128 + signum)


def hand_out_pty(proc: dict, sock: sync.Socket, console: bool) -> int:
    """Open the pty in the container, send the master to the CLI, keep the peer for stdio."""
    user = proc.get("user") or {}
    master, peer = terminal.open_container_pty(proc.get("consoleSize"), int(user.get("uid", 0)),
                                               int(user.get("gid", 0)))
    if console:
        terminal.bind_console(peer)
    sync.send(sock, "pty", fds=[master])
    os.close(master)
    return peer


def wait_for_start(fifo_fd: int) -> None:
    """Block until `pyrunc start` writes a byte into the exec fifo (see state.py for status)."""
    for sig in _FATAL:
        try:
            signal.signal(sig, _die_on_signal)
        except (OSError, ValueError):
            continue
    poller = select.poll()
    poller.register(fifo_fd, select.POLLIN)
    while True:
        poller.poll()
        try:
            data = os.read(fifo_fd, 1)
        except BlockingIOError:
            continue
        if data:
            break
        raise OSError(errno.EPIPE, "the start signal was aborted")
    for sig in _FATAL:
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            continue


# --- exec: a new process in a running container ---------------------------------------------
PROC_NS_NAMES = {"user": "user", "cgroup": "cgroup", "ipc": "ipc", "uts": "uts",
                 "network": "net", "pid": "pid", "time": "time", "mount": "mnt"}


class ExecPlan:
    """What `pyrunc exec` computed before fork: whose namespaces, which cgroups, which process."""

    def __init__(self, init_pid: int, process: dict, cgroup_dirs: list[str],
                 preserve_fds: int) -> None:
        self.init_pid = init_pid
        self.process = process
        self.cgroup_dirs = cgroup_dirs
        self.preserve_fds = preserve_fds
        self.seccomp: seccomp.Filter | None = None  # compiled by the parent, loaded last
        self.container_id = ""
        self.bundle = ""
        self.annotations: dict = {}
        self.oci_version = ""
        self.host_proc = -1  # the host's /proc, for our host pid (the notify listener's state)
        self.exe_fd = -1     # the exec trampoline (exeguard.py), made before entering the userns


def exec_join_pid_ns(plan: ExecPlan) -> int:
    """The CLI's side of the one-fork exec: make our next child be born in the container's pid
    namespace (setns(CLONE_NEWPID) sets pid_for_children only; we stay where we are) and
    non-dumpable, so that child can enter everything else itself and become the program.

    Returns an fd of our own pid namespace for exec_leave_pid_ns, or -1 where the child must
    be the intermediate of the two-fork path: a caller without root (joining a pid namespace
    needs CAP_SYS_ADMIN in our own user namespace), or a container with its own time namespace
    (time_for_children can only be set by a single-threaded process; we run the cgroup keeper
    thread). DESIGN.md section 6: the child is non-dumpable from its first instruction, since
    a dumpable copy of us in the container's pid namespace could be ptraced from inside."""
    if os.geteuid() != 0 or _differs(plan.init_pid, "time"):
        return -1
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _differs(plan.init_pid, "pid"):
            join_namespace("pid", f"/proc/{plan.init_pid}/ns/pid")
        linux.prctl(linux.PR_SET_DUMPABLE, 0)
    except OSError:
        exec_leave_pid_ns(own)
        return -1
    return own


def exec_leave_pid_ns(own: int) -> None:
    """In the CLI, right after the fork: our later children are ours again, and so is our
    dumpable flag (the child keeps its copy of both)."""
    try:
        linux.prctl(linux.PR_SET_DUMPABLE, 1)
        linux.setns(own, linux.CLONE_NEWPID)
    finally:
        os.close(own)


def _differs(init_pid: int, kind: str) -> bool:
    """Whether the container has a namespace of this kind that is not ours (a missing
    /proc/<pid>/ns entry: the kernel has no such namespace type)."""
    name = PROC_NS_NAMES[kind]
    try:
        return os.stat(f"/proc/{init_pid}/ns/{name}").st_ino != os.stat(
            f"/proc/self/ns/{name}").st_ino
    except FileNotFoundError:
        return False


def _exec_enter(plan: ExecPlan, sock: sync.Socket) -> None:
    """Enter the container's cgroups and namespaces (those not yet ours: in the one-fork path
    we were born in its pid namespace already)."""
    set_oom_score_adj(plan.process.get("oomScoreAdj"))
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    close_parent_fds(plan.preserve_fds, sock.fileno())
    plan.exe_fd = exeguard.create()
    # The host's procfs: every /proc write of the exec'd process goes through it, and the
    # notify listener is told our host pid from it.
    plan.host_proc = rootfs.hold_proc()
    if plan.seccomp is not None and plan.seccomp.notify:
        seccomp.connect_listener(plan.seccomp)  # host paths: before entering the mount ns
    for directory in plan.cgroup_dirs:
        fd = os.open(directory + "/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    for kind in NS_JOIN_ORDER:
        if _differs(plan.init_pid, kind):   # shared with us (e.g. no user namespace): stay
            join_namespace(kind, f"/proc/{plan.init_pid}/ns/{PROC_NS_NAMES[kind]}")
            if kind == "user":
                userns.become_root()


def exec_direct_main(plan: ExecPlan, sock: sync.Socket) -> NoReturn:
    """The one-fork path's child (see exec_join_pid_ns): enter, then become the process."""
    try:
        _exec_enter(plan, sock)
    except BaseException as exc:  # noqa: BLE001
        _report(sock, exc)
        os._exit(1)
    exec_child_main(plan, sock)


def exec_intermediate_main(plan: ExecPlan, sock: sync.Socket) -> NoReturn:
    """The two-fork path: enter the container's cgroups and namespaces, then fork the process
    (a pid or time namespace only applies to children), report its pid and leave it to the
    caller."""
    code = 1
    try:
        _exec_enter(plan, sock)
        pid = fork_after_report(sock)
        if pid == 0:
            exec_child_main(plan, sock)
        code = 0
    except BaseException as exc:  # noqa: BLE001
        _report(sock, exc)
    finally:
        os._exit(code)


def exec_child_main(plan: ExecPlan, sock: sync.Socket) -> NoReturn:
    code = 1
    ready = False
    try:
        proc = plan.process
        peer = -1
        if proc.get("terminal"):
            os.setsid()  # an exec'd process gets its own session to own the terminal
            peer = hand_out_pty(proc, sock, console=False)
        exe, env = prepare_process(proc, plan.seccomp is not None)
        sync.send(sock, "ready")
        ready = True
        # The socket stays open until the program's execve (the trampoline sets it close-on-exec
        # and reports a failed execve on it): its end-of-file tells `exec` that the program runs
        # (or that we died), so `exec -d` returns and writes its pid file only then. Without a
        # trampoline, a number inside the preserved range would become inheritable: close it.
        if plan.exe_fd < 0 and sock.fileno() < 3 + plan.preserve_fds:
            sock.close()
        if peer >= 0:
            terminal.make_controlling(peer)
        close_inherited_fds(plan.preserve_fds)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        notify_state = b""
        if plan.seccomp is not None and plan.seccomp.notify:
            notify_state = seccomp.process_state(
                plan.seccomp, plan.container_id, int(os.readlink("self", dir_fd=plan.host_proc)),
                plan.bundle, plan.annotations, "running", plan.oci_version)
        lsm.apply(proc, rootfs.write_proc)
        seccomp.load(plan.seccomp, notify_state)  # last: then only a capset and execve
        keep = (sock.fileno(),) if sock.fileno() >= 0 else ()
        exeguard.execute(plan.exe_fd, exe, proc, env, keep, plan.seccomp)
    except BaseException as exc:  # noqa: BLE001
        if ready:
            os.write(2, f"pyrunc: exec: {describe(exc)}\n".encode())
            code = 127 if isinstance(exc, FileNotFoundError) else 126
        else:
            _report(sock, exc)
    finally:
        os._exit(code)
