"""`pyrunc create`: build the whole container, leave its init waiting for `start`.

The parent side of init.py: it owns the state directory, the cgroups and the exec fifo, and on
any failure it undoes all of them, so a failed create leaves the host as it found it.
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum
import posix

from pyrunc import OCI_VERSION, cgroup_join, config, init, jsonlite, linux, state, sync
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.cgroups import CgroupManager
from pyrunc.errors import PyruncError

os.bind_container_names()  # the parent's and its init's posix names at once (lightos.py)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class CreateOptions:
    def __init__(self, bundle: str, pid_file: str | None = None, console_socket: str | None = None,
                 no_pivot: bool = False, no_new_keyring: bool = False, preserve_fds: int = 0,
                 command: str = "create", keep_pty: bool = False) -> None:
        self.bundle = bundle
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds
        self.command = command
        self.keep_pty = keep_pty    # foreground `run`: we relay the pty ourselves
        # Foreground `run`: the Container comes back still locked, for its start right after
        # (no window for another command between the two, and no unlock and lock again).
        self.keep_lock = False
        self.listen_fds = 0         # socket-activation fds among preserve_fds (LISTEN_FDS)
        self.rootless_cgroups: str | None = None  # --rootless: true, false, auto (None)
        # Called once the init is forked and in its cgroups, before we wait for it: the caller's
        # imports for after create (run's), on our core while the init works on the other.
        self.after_fork: Callable[[], None] | None = None
        # Called (with keep_lock) once the init said "ready" and the final state is in place,
        # while the init ends its last steps (create still waits for them and reports their
        # errors): `run` begins its start there (run._start_now).
        self.on_created: Callable[[state.Container], None] | None = None
        # The signal mask the init (or intermediate) starts with, where ours holds signals back
        # (`run`: supervise.hold_back): the one its caller gave it, which the program gets.
        self.child_sigmask: set[int] | None = None


def namespace_plan(cfg: dict) -> tuple[list[tuple[str, str]], set[str]]:
    join: list[tuple[str, str]] = []
    new: set[str] = set()
    for ns in (cfg.get("linux") or {}).get("namespaces") or []:
        if ns.get("path"):
            join.append((ns["type"], ns["path"]))
        else:
            new.add(ns["type"])
    return join, new


def check_host_mount_namespace(cfg: dict) -> None:
    """Without a mount namespace (inherited from us: runtime-spec config-linux.md) the container's
    mounts go into the host's table below the rootfs (hostmounts.py). What would change a mount
    the host owns is refused instead."""
    if (cfg.get("root") or {}).get("readonly"):
        raise PyruncError("config.json: /root/readonly: a read-only root needs a mount namespace "
                          "(the rootfs is not a mount of its own in the host's)")
    if (cfg.get("linux") or {}).get("rootfsPropagation"):
        raise PyruncError("config.json: /linux/rootfsPropagation: needs a mount namespace (it "
                          "would change the host's mounts)")


def check_uts_for_hostname(new: set[str], join: list[tuple[str, str]]) -> None:
    """hostname/domainname need a uts namespace of the container's own: a new one, or one
    joined by path (runc's rule, runtime-tools' linux_ns_path) as long as that path is not the
    runtime's own uts namespace, whose name would then change for the whole host."""
    if "uts" in new:
        return
    path = next((p for kind, p in join if kind == "uts"), None)
    if path is None:
        raise PyruncError("config.json: /hostname: setting the hostname needs a uts namespace")
    try:
        joined, ours = os.stat(path), os.stat("/proc/self/ns/uts")
    except OSError as exc:
        raise PyruncError(f"config.json: /linux/namespaces: uts path {path}: "
                          f"{os.strerror(exc.errno or 0).lower()}") from None
    if (joined.st_dev, joined.st_ino) == (ours.st_dev, ours.st_ino):
        raise PyruncError(f"config.json: /hostname: the uts namespace {path} is the host's: "
                          "setting the hostname there would rename the host")


def hook_state(cfg: dict, container_id: str, pid: int, bundle: str, status: str) -> dict:
    """The state the runtime-spec hands each hook on stdin."""
    out = {"ociVersion": cfg.get("ociVersion", OCI_VERSION), "id": container_id, "status": status,
           "pid": pid, "bundle": bundle}
    if cfg.get("annotations"):
        out["annotations"] = cfg["annotations"]
    return out


def run_create_hooks(sock: sync.Socket, cfg: dict, container_id: str, pid: int,
                     bundle: str) -> None:
    """prestart and createRuntime here, in the runtime's namespaces; then the init runs
    createContainer inside the container's, with the state we send it."""
    from pyrunc import hooks
    creating = hook_state(cfg, container_id, pid, bundle, "creating")
    created = hook_state(cfg, container_id, pid, bundle, "created")
    configured = cfg.get("hooks") or {}
    try:
        # prestart (deprecated) sees "created", as crun passes it and runtime-tools' hooks_stdin
        # requires: the environment it may configure (e.g. the network namespace) exists.
        hooks.run_hooks("prestart", configured.get("prestart") or [], created)
        hooks.run_hooks("createRuntime", configured.get("createRuntime") or [], creating)
    except hooks.HookError as exc:
        sync.send(sock, "error", msg=str(exc))
        raise PyruncError(str(exc)) from None
    sync.send(sock, "continue", state=creating, created=created)


def run_poststop_after_failure(cfg: dict, container_id: str, bundle: str) -> None:
    """runtime.md's lifecycle: when a prestart, createRuntime or createContainer hook fails,
    the container is destroyed (step 12) and the poststop hooks still run (step 13), so they
    can undo what the earlier hooks set up (runc does the same). Their failures are warnings."""
    configured = (cfg.get("hooks") or {}).get("poststop")
    if not configured:
        return
    from pyrunc import hooks, jsonlite
    from pyrunc.log import Log
    payload = jsonlite.dumps(hook_state(cfg, container_id, 0, bundle, "stopped"),
                             spaced=True).encode()
    for index, hook in enumerate(configured):
        try:
            hooks.run_one("poststop", index, hook, payload)
        except hooks.HookError as exc:
            Log.warning(str(exc))


def start_mover(sock: sync.Socket, init_pid: int, announced: bool):  # -> netdev.Mover
    """netDevices need the init's network namespace: if the init already died, say why.

    A direct init enters that namespace itself, after its fork (InitPlan.announce_netns):
    until it says "netns", its /proc/<pid>/ns/net is still ours, and the devices would be
    "moved" into the namespace they are in. (An intermediate's init is forked in its
    namespaces, and its pid comes after them.)"""
    from pyrunc import netdev
    if announced:
        sync.recv(sock, "netns", "create")
    try:
        return netdev.Mover(init_pid)
    except OSError:
        info = state.proc_start_time(init_pid)
        if info is None or info[1] in ("Z", "X"):
            sync.recv(sock, "ready", "create")  # raises the error the init reported
        raise


def write_for_intermediate(sock: sync.Socket, pid: int, cfg: dict, new_time: bool) -> None:
    """What the intermediate cannot write itself once in its user namespace: its id maps, then
    its time namespace offsets (see init.enter_new_userns)."""
    from pyrunc import userns
    linux_cfg = cfg.get("linux") or {}
    sync.recv(sock, "userns", "create")
    userns.write_maps(pid, linux_cfg.get("uidMappings") or [], linux_cfg.get("gidMappings") or [])
    sync.send(sock, "userns-done")
    if new_time and linux_cfg.get("timeOffsets"):
        sync.recv(sock, "timens", "create")
        userns.write_proc(pid, "timens_offsets", init.time_offsets_text(linux_cfg["timeOffsets"]),
                          "linux.timeOffsets")
        sync.send(sock, "timens-done")


def setup_cgroups(cg: CgroupManager, cfg: dict, new: set[str]) -> None:
    """Make the container's cgroups and write its limits (the init is not in them yet)."""
    make_cgroups(cg, new)
    apply_limits(cg, cfg)


def make_cgroups(cg: CgroupManager, new: set[str], skip: str | None = None) -> None:
    """The directories (but the hierarchy keyed `skip`, made already)."""
    cg.create(skip=skip)
    if cg.skipped:
        from pyrunc.log import Log
        Log.warning(cg.skipped_warning())
        if not cg.paths and "pid" not in new:
            # runc's warning: without a cgroup or a pid namespace of its own, nothing can
            # find (and kill) every process of this container.
            Log.warning("creating a rootless container with no cgroup and no private pid "
                        "namespace: delete cannot kill processes that leave its init")


def apply_limits(cg: CgroupManager, cfg: dict) -> None:
    linux = cfg.get("linux") or {}
    for warning in cg.apply(linux.get("resources"), linux.get("devices")):
        from pyrunc.log import Log
        Log.warning(warning)
    state.pause_point("create:after-cgroups")


def tell_init(sock: sync.Socket, kind: str, fds: list[int] | None = None,
              **fields: object) -> None:
    """A message to a direct init (init.await_cgroup_dirs, await_cgroups, "go"). If it failed
    meanwhile, the send fails and its own report says why."""
    try:
        sync.send(sock, kind, fds, **fields)
    except OSError:
        sync.raise_reported_error(sock)
        raise


def send_cgroups(sock: sync.Socket, cg: CgroupManager, born_in_v2: bool, go: bool) -> None:
    """The limits are written: "cgroups", with the files the init joins them through, opened
    here while it works (cgroup_join.open_for_join); with `go`, its "go" at once (see _create)."""
    files = cgroup_join.open_for_join(cg.paths, born_in_v2)
    try:
        tell_init(sock, "cgroups", [fd for _key, _path, fd in files],
                  files=[[key, path] for key, path, _fd in files])
    finally:
        cgroup_join.close_all(files)
    if go:
        tell_init(sock, "go")


def final_state(cfg: dict, container_id: str, init_pid: int, init_start: int, bundle: str,
                rootfs_dir: str, cg: CgroupManager, join: list[tuple[str, str]]) -> dict:
    """state.json once the init is ready (status is derived: see state.py)."""
    return {
        "ociVersion": cfg.get("ociVersion", OCI_VERSION),
        "id": container_id,
        "pid": init_pid,
        "init_start": init_start,
        "bundle": bundle,
        "rootfs": rootfs_dir,
        "created": state.now_rfc3339(),
        "owner": "",
        "annotations": cfg.get("annotations") or {},
        "cgroup": cg.to_state(),
        "namespaces": {k: p for k, p in join},
        # The hook kinds configured: start and delete then read no config.json for
        # poststart and poststop when there are none (state.Container.may_have).
        "hooks": [kind for kind, hooks in (cfg.get("hooks") or {}).items() if hooks],
    }


def replace_state(staged: str, path: str) -> str:
    """Put the staged final state in place of the "creating" one, atomically for readers;
    return where the "creating" one is now, for the caller to unlink ("": nowhere).

    An exchange, then an unlink of the old one, rather than a rename over it: ext4 (this host's
    /run and /tmp) starts writing back a file renamed over another at once (auto_da_alloc), and
    delete's unlink of it then waits for that write when it is still in flight (0.1-0.5 ms
    here, twice that under load). Anywhere the exchange is refused, the rename does."""
    try:
        linux.renameat2(staged, path, linux.RENAME_EXCHANGE)
    except OSError:
        state.commit(staged, path)
        return ""
    return staged


def finalize_state(ctr: state.Container, final: dict, staged: str, rootfs_dir: str,
                   before: set[tuple[str, str]] | None) -> str:
    """The state once the init is ready: the staged one put in place, or (no mount namespace)
    written with the host mounts the init made. Returns what replace_state does."""
    ctr.data = final
    if before is None:
        return replace_state(staged, ctr.path(state.STATE_FILE))
    from pyrunc import hostmounts
    ctr.data["host_mounts"] = hostmounts.created_since(rootfs_dir, before)
    ctr.save()
    return ""


def start_failure(command: str, exc: PyruncError) -> PyruncError:
    """An error the init reported on its way to waiting for `start`."""
    return PyruncError(f"pyrunc {command} failed: unable to start container process: {exc}")


def drop_file(path: str) -> None:
    """Unlink what nobody reads any more (a delete would remove it anyway)."""
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def fork_init(plan: init.InitPlan, parent_sock: sync.Socket, child_sock: sync.Socket,
              new_pid: bool, cgroup_fd: int) -> tuple[int, bool]:
    """Fork the init ourselves (init.can_fork_directly): with a new pid namespace, unshare it
    for our next child only, fork, and go back to our own at once, before any other child
    (hooks) could land in the container's. The init is born in the cgroup2 directory
    cgroup_fd names (-1: none) where the kernel can (cgroup_join.fork). Returns its pid and
    whether it was."""
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC) if new_pid else -1
    try:
        if new_pid:
            linux.unshare(linux.CLONE_NEWPID)
        try:
            pid, born_in_v2 = cgroup_join.fork(cgroup_fd)
            if pid == 0:
                restore_sigmask(plan.child_sigmask)
                parent_sock.close()
                plan.born_in_v2 = born_in_v2
                init.direct_main(plan, child_sock)
        finally:
            if new_pid:
                linux.setns(own, linux.CLONE_NEWPID)
    finally:
        if own >= 0:
            os.close(own)
    child_sock.close()
    return pid, born_in_v2


def restore_sigmask(mask: set[int] | None) -> None:
    """First thing in the init or intermediate just forked (CreateOptions.child_sigmask)."""
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def create(root: str, container_id: str, opts: CreateOptions) -> state.Container:
    try:
        return _create(root, container_id, opts)
    finally:
        from pyrunc.cgroup_keeper import stop_keeper
        stop_keeper()   # if the intermediate's path started one


def _create(root: str, container_id: str, opts: CreateOptions) -> state.Container:
    bundle = os.path.abspath(opts.bundle)
    cfg, raw = config.load_bundle(bundle)
    if opts.listen_fds:
        # The container's process is told how many fds it got; init.py fills in LISTEN_PID.
        env = [e for e in cfg["process"].get("env") or []
               if e.split("=", 1)[0] not in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")]
        cfg["process"]["env"] = env + [f"LISTEN_FDS={opts.listen_fds}"]
    use_tty = bool(cfg["process"].get("terminal"))
    if use_tty and not opts.console_socket and not opts.keep_pty:
        raise PyruncError("cannot allocate tty if pyrunc will detach without setting console "
                          "socket (process.terminal is true)")
    if opts.console_socket and not use_tty:
        raise PyruncError("--console-socket given but process.terminal is false")
    skipped = config.not_enforced(cfg)
    if skipped:
        from pyrunc.log import Log
        Log.warning(f"not enforced yet: {', '.join(skipped)} (accepted so engines keep working)")
    rootfs_dir = config.rootfs_path(cfg, bundle)
    seccomp_cfg = (cfg.get("linux") or {}).get("seccomp")
    seccomp_filter = None
    if seccomp_cfg:
        from pyrunc import seccomp
        seccomp_filter = seccomp.compile(seccomp_cfg)  # before anything exists to clean up
    join, new = namespace_plan(cfg)
    host_mounts = "mount" not in new and not any(k == "mount" for k, _ in join)
    if host_mounts:
        check_host_mount_namespace(cfg)
    if cfg.get("hostname") is not None or cfg.get("domainname") is not None:
        check_uts_for_hostname(new, join)
    net_devices = None
    if (cfg.get("linux") or {}).get("netDevices"):
        from pyrunc import netdev
        net_devices = netdev.plan(cfg)  # all present, before anything exists to clean up
    ctr = state.Container(root, container_id)
    cg = CgroupManager.for_container((cfg.get("linux") or {}).get("cgroupsPath"), container_id)
    from pyrunc.userns import parse_rootless_flag
    # runc's rule: permission errors are skipped only where the path was left to the runtime.
    cg.rootless = parse_rootless_flag(opts.rootless_cgroups) and not (
        (cfg.get("linux") or {}).get("cgroupsPath"))
    ctr.create_dir()
    init_pid = 0
    master = -1
    mover = None
    hooks_began = False  # from here on a failure goes on at the lifecycle's step 12: poststop
    before: set[tuple[str, str]] | None = None  # host mounts below the rootfs, if no mount ns
    direct = False
    early_go = False
    try:
        state.pause_point("create:after-dir")
        if posix.environ.get(b"NOTIFY_SOCKET"):  # os.environ would import os (lightos.py)
            from pyrunc import notify
            notify.setup_create(ctr.dir, cfg)
        fifo = ctr.path(state.FIFO)
        plan = init.InitPlan(cfg, rootfs_dir, bundle, fifo, cg, opts.no_pivot, opts.preserve_fds,
                             join, new, None if opts.no_new_keyring else container_id)
        plan.container_id = container_id
        plan.child_sigmask = opts.child_sigmask
        plan.seccomp = seccomp_filter
        # What the init runs after pivot_root comes from sys.modules, never the bundle: the
        # modules only some configs use are imported here, for those (init._module).
        if plan.create_hooks:
            from pyrunc import hooks  # noqa: F401
        if use_tty:
            from pyrunc import terminal
        direct = init.can_fork_directly(plan) and not cg.rootless
        # A first state, before any cgroup exists but naming every directory about to be made,
        # so that if this process dies from here on, `delete --force` still knows which cgroups
        # to empty and remove (status reads "creating", then "stopped"). All of them now, even
        # on the direct path that makes the v1 ones after the init's fork: ~20 stats of cgroupfs
        # here cost less than rewriting the state after that fork, on the parent's side of it,
        # which the init may be waiting for (bench/NOTES.md, session 10).
        ctr.data = {"ociVersion": cfg.get("ociVersion", OCI_VERSION), "id": container_id, "pid": 0,
                    "creating": True, "bundle": bundle, "rootfs": rootfs_dir, "owner": "",
                    "cgroup": {"paths": cg.paths,
                               "created": cg.missing_dirs()}}
        ctr.save()
        os.mkfifo(fifo, 0o600)
        state.pause_point("create:after-first-state")
        if host_mounts:
            from pyrunc import hostmounts
            before = hostmounts.below(rootfs_dir)
        if not direct:
            # The intermediate's path moves the init by a cgroup.procs write, after the grace
            # period the keeper starts waiting for now (cgroup_keeper.py).
            from pyrunc.cgroup_keeper import prewarm_migration
            prewarm_migration()
            setup_cgroups(cg, cfg, new)
        parent_sock, child_sock = sync.pair()
        try:
            if direct:
                # The init starts on the other core now: its namespaces and mounts overlap
                # our cgroup work (it waits for our "go" before it may wait for `start`). It
                # is born in its cgroup2 directory, made first; it binds the others into its
                # rootfs once we say "cgroup-dirs", and joins them itself once we say
                # "cgroups", after their limits are written: it must never run in a devices
                # cgroup whose rules are half written (cgroup_join.py, init.await_cgroups).
                plan.cgroup_dirs_pending = plan.cgroups_pending = True
                plan.announce_netns = net_devices is not None   # see start_mover
                cg.create(only="")
                v2_fd = cgroup_join.open_v2(cg.paths)
                try:
                    init_pid, born_in_v2 = fork_init(plan, parent_sock, child_sock,
                                                     "pid" in new, v2_fd)
                finally:
                    if v2_fd >= 0:
                        os.close(v2_fd)
                state.pause_point("create:after-init-fork")   # no v1 directory yet
                make_cgroups(cg, new, skip="")
                tell_init(parent_sock, "cgroup-dirs")
                apply_limits(cg, cfg)
                # "go" with "cgroups" when nothing else is to be said before it (no create
                # hooks): the init then goes on from "ready" to the trampoline without a round
                # trip to us (~0.2 ms of run's critical path). It waits for "go" so that a
                # parent that dies first cannot leave it waiting for a start out of reach of
                # delete; a direct init joins all its cgroups before "ready", so
                # `delete --force` reaches it anyway. A failure of ours still kills it below.
                early_go = not plan.create_hooks
                send_cgroups(parent_sock, cg, born_in_v2, go=early_go)
            else:
                pid = os.fork()
                if pid == 0:
                    restore_sigmask(plan.child_sigmask)
                    parent_sock.close()
                    init.intermediate_main(plan, child_sock)
                child_sock.close()
            # Read by start, delete and the others once the init is ready, never by the init:
            # written while it works on the other core rather than before its fork.
            state.write_atomic(ctr.path(state.CONFIG_FILE), raw)
            ctr.config_written(raw)
            try:
                if not direct:
                    try:
                        if "user" in new:
                            write_for_intermediate(parent_sock, pid, cfg, "time" in new)
                        msg = sync.recv(parent_sock, "pid", "create")
                        init_pid = int(msg["pid"])
                    except BaseException:
                        try:
                            os.kill(pid, signal.SIGKILL)  # it may be waiting for its maps
                        except ProcessLookupError:
                            pass
                        raise
                    finally:
                        os.waitpid(pid, 0)
                if "cgroup" not in new and not direct:
                    try:
                        cg.join(init_pid)  # while the init builds its rootfs on the other core
                    except ProcessLookupError:
                        sync.raise_reported_error(parent_sock)  # it failed first: say why
                        raise
                if net_devices:
                    mover = start_mover(parent_sock, init_pid, plan.announce_netns)
                    mover.move_all(net_devices)
                state.pause_point("create:after-fork")
                if opts.after_fork is not None:
                    opts.after_fork()
                if plan.create_hooks:
                    sync.recv(parent_sock, "create-hooks", "create")
                    hooks_began = True
                    run_create_hooks(parent_sock, cfg, container_id, init_pid, bundle)
                if use_tty:
                    _msg, fds = sync.recv_with_fds(parent_sock, "pty", "create")
                    master = fds[0]
                # The final state, written while the init still works: once it is ready, one
                # rename (start waits on it, and `run`'s start comes right after). A
                # container without a mount namespace also records the init's host mounts,
                # known only then.
                born = state.proc_start_time(init_pid)
                final = final_state(cfg, container_id, init_pid, born[0] if born else 0, bundle,
                                    rootfs_dir, cg, join)
                staged = "" if before is not None else \
                    state.stage(ctr.path(state.STATE_FILE), jsonlite.dumps(final).encode())
                sync.recv(parent_sock, "ready", "create")
                if not early_go:
                    sync.send(parent_sock, "go")
            except PyruncError as exc:
                raise start_failure(opts.command, exc) from None
            # The state final now, while the init's last steps and its exec of the trampoline
            # go on (~0.5-1 ms); create still returns only once the init got there, and its
            # errors on the way are still create's (below): they undo this state with the rest.
            state.pause_point("create:after-ready")
            old_state = finalize_state(ctr, final, staged, rootfs_dir, before)
            state.pause_point("create:after-state")
            if opts.on_created is not None:
                # `run`: the start byte written now too, so that the trampoline finds it
                # there. The start itself checks that the init lives (status()), as create
                # does below.
                opts.on_created(ctr)
            if plan.trampoline_waits:
                # Until it is the trampoline waiting for `start` (init.py): its last steps'
                # error, if any, is ours.
                try:
                    sync.raise_reported_error(parent_sock)
                except PyruncError as exc:
                    raise start_failure(opts.command, exc) from None
        finally:
            parent_sock.close()
        if opts.on_created is None:
            info = state.proc_start_time(init_pid)
            if info is None or born is None or info[0] != born[0]:
                raise PyruncError("the container's init process died during create")
        drop_file(old_state)
        if master >= 0 and opts.console_socket:
            from pyrunc import terminal
            terminal.send_to_socket(opts.console_socket, master)
            os.close(master)
            master = -1
        ctr.pty_master = master
        if opts.pid_file:
            state.write_atomic(os.path.abspath(opts.pid_file), str(init_pid).encode(), 0o644)
        if mover is not None:
            mover.close()  # the devices are the container's now
            mover = None
        if not opts.keep_lock:
            ctr.unlock()
        return ctr
    except BaseException:
        if master >= 0:
            os.close(master)
        if mover is not None:
            mover.give_back()  # before the kill: a dying namespace destroys virtual devices
            mover.close()
        if init_pid:
            try:
                os.kill(init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if direct:
                try:
                    os.waitpid(init_pid, 0)  # our own child: no zombie left behind
                except ChildProcessError:
                    pass
        if cg.exclusive() or "pid" not in new:
            cg.kill_all()  # a joined cgroup's other processes are not ours to kill
        try:
            if before is not None:
                hostmounts.undo(rootfs_dir, hostmounts.created_since(rootfs_dir, before))
            cg.destroy()
        finally:
            ctr.remove_dir()
            if hooks_began:
                run_poststop_after_failure(cfg, container_id, bundle)
        raise
