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

import _signal as signal  # not `signal`: it imports enum
import _socket
import _struct as struct  # not `struct`: it only re-exports _struct (~0.25 M instructions)
import errno
import fcntl
import select
import sys

from pyrunc import (
    cgroup_join,
    errors,
    exeguard,
    linux,
    lsm,
    mounts,
    rootfs,
    saferoot,
    state,
    sync,
    userns,
)
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.cgroups import CgroupManager
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
    set_oom_score_adj,
)
from pyrunc.process import report as _report
from pyrunc.state import START_ERROR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from pyrunc import seccomp

# The libc functions the init calls that nothing before its fork did: looked up now, in the
# parent, as a look-up (dlsym) in the forked child faults in symbol tables and copies pages.
linux.resolve("fstatfs", "mount", "umount2", "capset", "prlimit")

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
        # A direct init: the parent says "cgroup-dirs" once they exist, then "cgroups".
        self.cgroup_dirs_pending = False
        self.cgroups_pending = False
        self.born_in_v2 = False         # a direct init forked into its cgroup2 directory
        self.announce_netns = False     # a direct init says "netns" once in it (netDevices)
        self.child_sigmask: set[int] | None = None  # create.CreateOptions.child_sigmask
        # The trampoline waits for `start` instead of us (exeguard.can_wait): between create
        # and start the init is then a ~10 KB program rather than this interpreter.
        self.trampoline_waits = exeguard.can_wait(cfg)
        exeguard.prebuild(self.trampoline_waits)
        user_join = [path for kind, path in self.join if kind == "user"]
        self.user_path = user_join[0] if user_join else None
        self.in_userns = "user" in self.new or self.user_path is not None


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


def await_cgroup_dirs(plan: InitPlan, sock: sync.Socket) -> None:
    """A direct init runs while the parent makes its cgroups: where it first needs their
    directories (binding them into the rootfs), it waits for the parent's "cgroup-dirs"."""
    if plan.cgroup_dirs_pending:
        sync.recv(sock, "cgroup-dirs", "create")
        plan.cgroup_dirs_pending = False


def await_cgroups(plan: InitPlan, sock: sync.Socket) -> None:
    """... then writes their limits, and says "cgroups" with the files to join them through,
    opened for us (cgroup_join.open_for_join): we join them first thing for a cgroup namespace
    (it is rooted where its creator stands), else once the rootfs is ready, before any hook
    and before "ready" (the parent's messages then come in the order it sends them), the
    latest point, so the parent's limits rarely keep us waiting. Never before they are
    written: we must never run in a devices cgroup whose rules are half written. Ourselves:
    we are single-threaded, so no grace period (cgroup_join.py)."""
    if plan.cgroups_pending:
        await_cgroup_dirs(plan, sock)
        msg, fds = sync.recv_with_fds(sock, "cgroups", "create", sync.MAX_FDS, cloexec=True)
        plan.cgroups_pending = False
        names = msg.get("files") or []
        if len(fds) != len(names):
            for fd in fds:
                os.close(fd)
            raise errors.PyruncError(f"joining the container's cgroups: {len(fds)} of "
                                     f"{len(names)} files came from create")
        try:
            cgroup_join.join_through([(key, path, fd) for (key, path), fd in zip(names, fds)])
        except OSError as exc:
            # Not an OSError any more: the step that called us would otherwise take the blame.
            raise errors.PyruncError(f"joining the container's cgroups: {describe(exc)}") from None


def enter_namespaces(plan: InitPlan, sock: sync.Socket, direct: bool) -> None:
    """From fork to the container's namespaces: everything that needs the host's view first."""
    set_oom_score_adj(plan.cfg["process"].get("oomScoreAdj"))
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    close_parent_fds(plan.preserve_fds, sock.fileno())
    rootfs.hold_proc()  # the host's procfs, before any joined mount namespace hides it
    # Host paths are opened now, with the caller's view and rights: once in a user
    # namespace, the container's root may not reach them (a 0700 state dir or bundle).
    plan.fifo_fd = os.open(plan.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    # Before any user namespace (see exeguard.py); the waiting one knows the fifo's fd.
    plan.exe_fd = exeguard.create(plan.fifo_fd if plan.trampoline_waits else -1)
    plan.start_err_fd = os.open(os.path.join(os.path.dirname(plan.fifo), START_ERROR),
                                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    if "mount" in plan.new:
        os.chdir(plan.rootfs)  # the init binds it from here (rootfs.bind_rootfs_onto_itself)
    linux_cfg = plan.cfg.get("linux") or {}
    # A rootless caller can clone nothing here (and needs not); a direct init has no user
    # namespace and no idmapped mount (can_fork_directly): premount_binds would clone nothing.
    if not plan.rootless and not direct:
        plan.premounts = mounts.premount_binds(plan.cfg, plan.bundle, plan.in_userns,
                                               plan.user_path)
    if "cgroup" in plan.new:
        # A new cgroup namespace is rooted where its creator stands: join first. A direct
        # init is forked before the cgroups exist: the parent says when they do, and it
        # joins them then. Otherwise a direct init joins once its rootfs is ready, and the
        # parent moves an intermediate's init in by pid.
        if plan.cgroups_pending:
            await_cgroups(plan, sock)
        else:
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
    state.pause_point("create:init-before-unshare")
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
    if plan.announce_netns:
        # Made or joined (by path, above): the parent moves the netDevices in now
        # (create.start_mover).
        sync.send(sock, "netns")


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
        ctx.await_cgroup_dirs = lambda: await_cgroup_dirs(plan, sock)
        rootfs.prepare(ctx)
        await_cgroups(plan, sock)
        cwd = proc.get("cwd") or "/"
        if saferoot.split(cwd):  # the root exists: nothing to make or check
            os.close(saferoot.mkdir_all(ctx.rootfd, cwd))
        created_state: dict = {}
        if plan.create_hooks:
            sync.send(sock, "create-hooks")
            reply = sync.recv(sock, "continue", "createRuntime hooks")
            created_state = reply["created"]
            _module("hooks").run_hooks("createContainer",
                                       (cfg.get("hooks") or {}).get("createContainer") or [],
                                       reply["state"])
        fifo_fd = plan.fifo_fd  # the intermediate opened it on the host
        start_err = plan.start_err_fd
        # So does the seccomp listener's socket; our host pid is read from the host's /proc.
        notify_state = b""
        if plan.seccomp is not None and plan.seccomp.notify:
            _module("seccomp").connect_listener(plan.seccomp)
            host_pid = int(os.readlink("self", dir_fd=rootfs.hold_proc()))
            notify_state = _module("seccomp").process_state(
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
        if plan.trampoline_waits:
            # A `kill` may come as soon as create returns: until the trampoline has its own
            # handlers, ours end the init as wait_for_start's do (PID 1 ignores the rest).
            _handle_fatal_signals()
        sync.send(sock, "ready")
        # Until the parent's "go" an intermediate's init may not be in its cgroups yet (the
        # parent moves it in while it works), and the parent may still fail the create: if
        # it dies before, we must end here rather than wait for a `start` forever, out of
        # reach of `delete`'s cgroup kill. EOF is that death.
        sync.recv(sock, "go", "create")
        if not plan.trampoline_waits:
            ready = True
            sock.close()
        # Else the socket stays open (close-on-exec) until the trampoline's exec: create
        # returns at its end of file, with the container waiting for `start`, and an error
        # before that fails create, as runc's init's last steps do.
        if peer >= 0:
            # Before the wait, as runc does: the create's stdout/stderr pipes must not outlive
            # create, or containerd's shim (which reads them to EOF) never sees create end.
            _module("terminal").make_controlling(peer)
        if not plan.trampoline_waits:
            wait_for_start(fifo_fd)
        # fifo_fd stays open (close-on-exec): its closing at execve tells `start` we are there.
        start_hooks = (cfg.get("hooks") or {}).get("startContainer")
        if start_hooks:
            # Hooks run as before our handlers existed; without hooks, they stay until the
            # execve, which resets every caught signal to its default action anyway.
            default_signals()
            _module("hooks").run_hooks("startContainer", start_hooks, created_state)
        close_inherited_fds(plan.preserve_fds)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; exec would keep it
            signal.signal(sig, signal.SIG_DFL)
        lsm.apply(proc, rootfs.write_proc)
        if plan.seccomp is not None:
            _module("seccomp").load(plan.seccomp, notify_state)  # last: then a capset, execve
        # Through the trampoline: the fifo closes, and start.err gets the errno of a failed
        # execve, only at the program's execve.
        exeguard.execute(plan.exe_fd, exe, proc, env, (start_err, fifo_fd), plan.seccomp,
                         plan.trampoline_waits)
    except getattr(sys.modules.get("pyrunc.hooks"), "HookError", ()) as exc:  # () matches none
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


def _module(name: str) -> Any:
    """hooks, seccomp or terminal: create imports each before the fork when the config uses it
    (a plain config, none), so the init finds it in sys.modules; the bundle, where the finder
    would look, is out of reach after pivot_root."""
    return sys.modules[f"pyrunc.{name}"]


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


def _handle_fatal_signals() -> None:
    """A handler that ends us on every signal that would end a process by default: as a pid
    namespace's PID 1 we would otherwise ignore them all (but SIGKILL and SIGSTOP), and
    `kill` of a created container must work."""
    for sig in _FATAL:
        try:
            signal.signal(sig, _die_on_signal)
        except (OSError, ValueError):
            continue


def wait_for_start(fifo_fd: int) -> None:
    """Block until `pyrunc start` writes a byte into the exec fifo (see state.py for status)."""
    _handle_fatal_signals()
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


def default_signals() -> None:
    """Undo wait_for_start's handlers."""
    for sig in _FATAL:
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            continue
