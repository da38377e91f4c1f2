"""`pyrunc exec`: a new process in a running container, with runc's flags.

The process spec is the container's own process (env, user, capabilities, rlimits, ...) with the
command-line flags laid over it, or the whole --process file. Foreground exec waits and exits
with the process's status; --detach returns once it runs, leaving it to the caller's subreaper.
"""

from __future__ import annotations

from pyrunc import (
    capabilities,
    cgroup_join,
    cgroup_keeper,
    errors,  # its classes are made on first use: errors.X at the raise sites
    execchild,
    jsonlite,
    linux,
    lsm,
    state,
    supervise,
    sync,
)
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.process import describe


def process_from_file(path: str) -> dict:
    from pyrunc.config import parse_json, read_file
    label = f"--process {path}"
    proc = parse_json(read_file(path, label), label)
    if not isinstance(proc, dict):
        raise errors.PyruncError(f"{label}: expected a JSON object (a process)")
    from pyrunc import schema
    schema.validate({"ociVersion": "1.0.0", "root": {"path": "/"}, "process": proc}, "config",
                    path)
    if not proc.get("args"):
        raise errors.PyruncError(f"--process {path}: /process/args: must name the program to run")
    return proc


def process_from_flags(base: dict, args: list[str], opts: dict) -> dict:
    """runc's rule: start from the container's process, then apply each flag."""
    if not args:
        raise errors.PyruncError("exec: args cannot be empty (give a command, or --process FILE)")
    proc = jsonlite.clone(base)  # base is parsed JSON: no copy module (~1 ms to import)
    proc["args"] = args
    proc["terminal"] = bool(opts.get("tty"))
    proc.pop("consoleSize", None)
    if opts.get("cwd"):
        proc["cwd"] = opts["cwd"]
    env = list(proc.get("env") or [])
    for item in opts.get("env") or []:
        key = item.split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != key] + [item]
    proc["env"] = env
    user = dict(proc.get("user") or {})
    if opts.get("user"):
        uid, _, gid = opts["user"].partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise errors.PyruncError(f"--user {opts['user']!r}: expected uid[:gid] as numbers")
        user["uid"] = int(uid)
        if gid:
            user["gid"] = int(gid)  # runc: without ":gid" the process keeps the config's gid
    for gid in opts.get("additional_gids") or []:
        if not gid.isdigit():
            raise errors.PyruncError(f"--additional-gids {gid!r}: not a number")
        user.setdefault("additionalGids", []).append(int(gid))
    proc["user"] = user
    if opts.get("cap"):
        caps = jsonlite.clone(proc.get("capabilities") or {})
        # Never inheritable (CVE-2022-29162): only bounding, effective and permitted grow.
        for name in opts["cap"]:
            name = name if name.startswith("CAP_") else "CAP_" + name.upper()
            for kind in ("bounding", "effective", "permitted"):
                caps.setdefault(kind, [])
                if name not in caps[kind]:
                    caps[kind].append(name)
        proc["capabilities"] = caps
    if opts.get("no_new_privs"):
        proc["noNewPrivileges"] = True
    if opts.get("apparmor"):
        proc["apparmorProfile"] = opts["apparmor"]
    if opts.get("process_label"):
        proc["selinuxLabel"] = opts["process_label"]
    return proc


def cgroup_dirs(ctr: state.Container, wanted: list[str]) -> dict[str, str]:
    """The container's cgroups (hierarchy key -> directory), or the sub-cgroups --cgroup names
    ("sub" or "ctrl,ctrl:sub")."""
    paths = dict((ctr.data.get("cgroup") or {}).get("paths") or {})
    for item in wanted:
        ctrls, sep, sub = item.rpartition(":")
        for key, path in paths.items():
            if not sep or key in ctrls.split(",") or (key == "" and "unified" in ctrls.split(",")):
                candidate = os.path.join(path, sub.lstrip("/"))
                if not os.path.isdir(candidate):
                    raise errors.PyruncError(f"--cgroup {item}: {candidate} does not exist")
                paths[key] = candidate
    return paths


def check_preserved_fds(count: int) -> None:
    """runc's rule: every fd of 3 .. 2+N is one the caller passed. An unused number in the
    range would otherwise be filled by one of ours (the host's /proc, a socket) and handed to
    the container (CVE-2024-21626 class). Nothing of ours is open in the range here: the
    launcher's bundle fd is closed, and the cgroup keeper's sits near RLIMIT_NOFILE."""
    from pyrunc.cgroup_keeper import KEEPER_FD
    for fd in range(3, 3 + count):
        try:
            if fd == KEEPER_FD[0]:
                raise OSError(9, "not a file the caller passed")
            os.fstat(fd)
        except OSError as exc:
            raise errors.PyruncError(f"--preserve-fds {count}: fd {fd} is not open "
                              f"({(exc.strerror or '').lower()}): the caller must pass every fd "
                              f"from 3 to {2 + count}") from None


def exec_command(root: str, container_id: str, args: list[str], opts: dict) -> int:
    ctr = state.Container(root, container_id).load()
    status = ctr.status()
    if status == "stopped":
        raise errors.InvalidState("cannot exec in a stopped container")
    if status == "paused" and not opts.get("ignore_paused"):
        raise errors.InvalidState("cannot exec in a paused container "
                                  "(use --ignore-paused to override)")
    ctr_cfg = ctr.config()
    if opts.get("process"):
        proc = process_from_file(opts["process"])
    else:
        proc = process_from_flags(ctr_cfg.get("process") or {}, args, opts)
    caps = capabilities.parse(proc.get("capabilities"), "exec process: /capabilities")
    lsm.check(proc, None, "exec process: ")
    detach = bool(opts.get("detach"))
    if proc.get("terminal") and not opts.get("console_socket") and detach:
        raise errors.PyruncError("cannot allocate tty if pyrunc will detach without setting "
                                 "console socket")
    if opts.get("console_socket") and not proc.get("terminal"):
        raise errors.PyruncError("--console-socket given but the process has no terminal "
                                 "(use --tty)")
    preserve = int(opts.get("preserve_fds") or 0)
    check_preserved_fds(preserve)
    plan = execchild.ExecPlan(ctr.pid, proc, cgroup_dirs(ctr, opts.get("cgroup") or []), preserve)
    plan.caps = caps
    seccomp_cfg = (ctr_cfg.get("linux") or {}).get("seccomp")
    if seccomp_cfg:
        from pyrunc import seccomp
        plan.seccomp = seccomp.compile(seccomp_cfg)
        plan.container_id, plan.bundle = ctr.id, ctr.data.get("bundle", "")
        plan.annotations = ctr_cfg.get("annotations") or {}
        plan.oci_version = ctr_cfg.get("ociVersion", "")
    if not detach:
        linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    try:
        return _spawn(plan, proc, opts, detach)
    finally:
        from pyrunc.cgroup_keeper import stop_keeper
        stop_keeper()   # if the two-fork path started one


def _reap_failed(pid: int) -> None:
    """A process that failed before execve: gone, and not left a zombie of ours."""
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _spawn(plan: execchild.ExecPlan, proc: dict, opts: dict, detach: bool) -> int:
    """One fork where we can (execchild.join_pid_ns): the child, born in the container's
    cgroup2 directory (cgroup_join.fork), joins the v1 ones, enters the container and becomes
    the process; else two, through an intermediate that reports the process's pid.

    The two-fork path's intermediate moves itself by cgroup.procs (it is not born in the
    cgroup2 directory) and the cgroup keeper thread starts that grace period now. Forking
    while it runs is safe (DESIGN.md's rule is about threads holding locks): the thread only
    ever blocks in write(2) and sleep, with no lock held but the GIL, which the forking thread
    holds; CPython resets the GIL and drops other threads' states in the child, glibc's fork
    takes malloc's locks, and the child, single-threaded, closes the keeper's fd."""
    parent_sock, child_sock = sync.pair()
    master = -1
    held: set[int] | None = None   # the signal mask to restore (supervise.block_signals)
    try:
        try:
            execchild.prepare(plan)
        except OSError as exc:
            execchild.release(plan)
            raise errors.PyruncError(f"exec failed: unable to start container process: "
                              f"{describe(exc)}") from None
        own_pid_ns = execchild.join_pid_ns(plan)
        v2_fd = -1
        if own_pid_ns >= 0:
            v2_fd = cgroup_join.open_v2(plan.cgroup_dirs)
        else:
            from pyrunc.cgroup_keeper import prewarm_migration
            prewarm_migration()
        if not detach:
            held = supervise.block_signals()
        try:
            pid, born_in_v2 = cgroup_join.fork(v2_fd)
        except OSError as exc:   # e.g. ENOMEM: the container's pid namespace has no init left
            if own_pid_ns >= 0:
                execchild.leave_pid_ns(own_pid_ns)
            execchild.release(plan)
            raise errors.PyruncError(f"exec failed: unable to start container process: fork: "
                              f"{exc.strerror}") from None
        finally:
            if v2_fd >= 0:
                os.close(v2_fd)
        if pid == 0:
            if held is not None:
                supervise.restore_signals(held)   # the program gets the caller's mask
            parent_sock.close()
            plan.born_in_v2 = born_in_v2
            # Ours, not the caller's: closed even where a number is in the --preserve-fds range.
            # (No import statement here: in this fresh copy of the CLI, the import system's
            # look-ups write to ~30 pages that must first be copied, ~0.1 ms.)
            cgroup_keeper.close_keeper_fd()
            if own_pid_ns >= 0:
                os.close(own_pid_ns)
                execchild.direct_main(plan, child_sock)
            execchild.intermediate_main(plan, child_sock)
        if own_pid_ns >= 0:
            execchild.leave_pid_ns(own_pid_ns)
        child_sock.close()
        execchild.release(plan)
        state.pause_point("exec:forked")
        if not detach:
            # The ~60 sigactions now, while the child sets itself up on the other core, rather
            # than after its execve. Signals are held back since before the fork: one that
            # comes before the process's pid is known (the program may already run) is
            # forwarded once it is, never left to end the CLI.
            forward_to = supervise.hold_signals()
        try:
            if own_pid_ns >= 0:
                exec_pid = pid
            else:
                try:
                    exec_pid = int(sync.recv(parent_sock, "pid", "exec")["pid"])
                finally:
                    os.waitpid(pid, 0)
            if held is not None:   # not detached
                forward_to(exec_pid)
                supervise.restore_signals(held)
                held = None
            state.pause_point("exec:after-fork")
            if proc.get("terminal"):
                master = sync.recv_with_fds(parent_sock, "pty", "exec")[1][0]
            sync.recv(parent_sock, "ready", "exec")
            # The child's end goes at the program's execve (close-on-exec); the exec trampoline
            # sends the errno first if that execve fails (exeguard.py).
            from pyrunc.exeguard import wait_exec
            failed = wait_exec(parent_sock)
            if failed:
                os.write(2, f"pyrunc: exec: {failed}\n".encode())
            from pyrunc.cgroup_keeper import stop_keeper
            stop_keeper()   # joined: no more cgroup writes, even if the process runs for hours
        except errors.PyruncError as exc:
            if own_pid_ns >= 0:
                _reap_failed(pid)   # our own child: its pid cannot have been reused
            raise errors.PyruncError(f"exec failed: unable to start container process: "
                                     f"{exc}") from None
    finally:
        parent_sock.close()
        if held is not None:   # failed before the pid was known: signals act as they did
            supervise.restore_signals(held)
    if opts.get("pid_file"):
        state.write_atomic(os.path.abspath(opts["pid_file"]), str(exec_pid).encode(), 0o644)
    if master >= 0 and opts.get("console_socket"):
        from pyrunc import terminal
        terminal.send_to_socket(opts["console_socket"], master)
        os.close(master)
        master = -1
    if detach:
        return 0
    state.pause_point("exec:waiting")
    if master >= 0:
        from pyrunc import relay
        return relay.relay_until_exit(master, exec_pid)
    return supervise.wait_for(exec_pid)
