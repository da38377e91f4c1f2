"""start, kill, delete, state, list: the operations on an existing container."""

from __future__ import annotations

import _signal as signal  # the signal module imports enum (~8 ms) for names we do not need
import time
from posix import environ as _environ  # bytes keys; os.environ would import os (lightos.py)

from pyrunc import jsonlite, state
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.errors import ContainerNotFound, InvalidState, PyruncError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyrunc.cgroups import CgroupManager
    from pyrunc.notify import Proxy


def _cgroups(ctr: state.Container) -> CgroupManager:
    """The container's cgroups. cgroups.py is imported here, not at the top: `start` never
    needs it, and its code is a fifth of what the short commands load (~0.3 ms)."""
    from pyrunc.cgroups import CgroupManager
    return CgroupManager.from_state(ctr.data.get("cgroup", {}))


def _locked(root: str, container_id: str, ctr: state.Container | None) -> state.Container:
    """The container, locked: loaded from its state dir, or (`run`) the one create returned,
    whose state create wrote itself and nothing rewrites, taken again after create's unlock."""
    if ctr is None:
        return state.Container(root, container_id).load(lock=True)
    try:
        ctr.lock()
    except FileNotFoundError:  # a `delete --force` got in between
        raise ContainerNotFound(container_id) from None
    return ctr


def start(root: str, container_id: str, wait_ready: bool = True,
          ctr: state.Container | None = None) -> Proxy | None:
    """Let the init execve the user program. With NOTIFY_SOCKET (notify.py), return only once
    the container said READY=1 (or died); with wait_ready False, return the proxy for `run`."""
    ctr = _locked(root, container_id, ctr)
    status = ctr.status()
    if status == "stopped":
        raise InvalidState("cannot start a container that has stopped")
    if status != "created":
        raise InvalidState(f"cannot start an already {status} container")
    state.pause_point("start:locked")
    writable(ctr)
    proxy: Proxy | None = None
    host = _environ.get(b"NOTIFY_SOCKET")
    if host and os.path.isdir(ctr.path("notify")):
        from pyrunc import notify
        try:
            proxy = notify.Proxy(ctr.dir, os.fsdecode(host), ctr.pid)
        except ProcessLookupError:
            raise InvalidState("cannot start a container that has stopped") from None
    try:
        # O_NONBLOCK: if no reader is left (the init died), this fails at once with ENXIO
        # instead of blocking forever.
        fd = os.open(ctr.path(state.FIFO), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        import errno  # here, not at the top: its table costs every short command ~0.2 M instructions
        if exc.errno in (errno.ENXIO, errno.ENOENT):
            # An init that failed after create returned (its last steps before the wait,
            # where the trampoline waits) said why in START_ERROR.
            died = _start_error(ctr)
            if died:
                raise PyruncError(died) from None
            raise InvalidState("cannot start a container that has stopped") from None
        raise
    try:
        # Unlink first, write second: if we die in between, the init reads EOF and exits (the
        # container reads "stopped"); after the write it runs and no fifo says "created".
        os.unlink(ctr.path(state.FIFO))
        state.pause_point("start:after-unlink")
        os.write(fd, b"0")
        wait_for_exec(fd)
    finally:
        os.close(fd)
    state.pause_point("start:after-write")
    died = _start_error(ctr)
    if died:
        # The init is gone (a startContainer hook failed, or execve did): the container is
        # stopped, and `start` says why (runtime-spec lifecycle step 7).
        ctr.unlock()
        raise PyruncError(died)
    run_late_hooks(ctr, "poststart", "running")
    ctr.unlock()  # kill and delete must not wait behind a container that never gets ready
    if proxy is not None and wait_ready:
        proxy.run(ctr.pid)
        return None
    return proxy


def _start_error(ctr: state.Container) -> str:
    """The last line the init left in START_ERROR (why it never ran the program), or ""."""
    try:
        fd = os.open(ctr.path(state.START_ERROR), os.O_RDONLY | os.O_CLOEXEC)
        try:  # posix, not open(): io's layers cost ~9 syscalls for this (usually empty) file
            raw = b""
            while chunk := os.read(fd, 65536):
                raw += chunk
        finally:
            os.close(fd)
    except FileNotFoundError:
        return ""
    if raw[:1] == b"\0":  # the exec trampoline's report of a failed execve (exeguard.py)
        from pyrunc.exeguard import failure
        raw = f"container process: {failure(raw)}".encode()
    died = raw.decode(errors="replace").strip()
    return died.splitlines()[-1].removeprefix("pyrunc: ") if died else ""


def wait_for_exec(fifo_fd: int) -> None:
    """Return once the init has exec'd the user's program (or died).

    The init keeps its close-on-exec read end of the fifo open until execve, and a fifo's
    writer sees POLLERR once no reader is left. Without this, `start` returned while the init
    was still between the fifo and execve: a `kill` right after it could reach a program that
    had not yet installed its signal handlers (runtime-tools' killsig), and poststart hooks
    ran before the program did.
    """
    import select
    poller = select.poll()
    poller.register(fifo_fd, 0)  # POLLERR/POLLHUP are always reported
    while True:
        try:
            if poller.poll():
                return
        except InterruptedError:
            continue


def writable(ctr: state.Container) -> None:
    """start and delete change the state dir: on a read-only one, fail before touching the
    container (a start that opened the fifo and could not go on would end the init)."""
    if not os.access(ctr.dir, os.W_OK):
        raise PyruncError(f"{ctr.dir}: read-only file system: cannot change the container's state"
                          if os.statvfs(ctr.dir).f_flag & os.ST_RDONLY else
                          f"{ctr.dir}: permission denied")


def run_late_hooks(ctr: state.Container, kind: str, status: str) -> None:
    """poststart and poststop: a failure is a warning and the lifecycle goes on (runtime-spec)."""
    try:
        cfg = ctr.config()
    except (OSError, ValueError):
        return
    configured = (cfg.get("hooks") or {}).get(kind)
    if not configured:
        return
    from pyrunc import hooks
    from pyrunc.create import hook_state
    st = hook_state(cfg, ctr.id, ctr.pid if status != "stopped" else 0, ctr.data.get("bundle", ""),
                    status)
    for index, hook in enumerate(configured):
        try:
            hooks.run_one(kind, index, hook, jsonlite.dumps(st, spaced=True).encode())
        except hooks.HookError as exc:
            from pyrunc.log import Log
            Log.warning(str(exc))


def parse_signal(text: str) -> int:
    """runc accepts 9, KILL, SIGKILL (any case) and RTMIN+n; unknown names are errors.

    0 too: kill(2)'s existence check, which engines use to ask whether the init still lives
    (exit 0 if it does, "container not running" if not), as with runc.
    """
    raw = text.strip()
    if raw.isdigit():
        num = int(raw)
        if num > signal.SIGRTMAX:
            raise PyruncError(f"invalid signal: {text}")
        return num
    name = raw.upper()
    name = name.removeprefix("SIG")
    for base in ("RTMIN", "RTMAX"):
        if name.startswith((base + "+", base + "-")):
            offset = name[len(base):]
            if offset[1:].isdigit():
                num = int(getattr(signal, "SIG" + base)) + int(offset)
                if signal.SIGRTMIN <= num <= signal.SIGRTMAX:
                    return num
    # _signal's SIG* constants are the names (SIG_DFL, SIG_BLOCK, ... are not signals): one
    # lookup, not a table of all of them built on every call.
    value = getattr(signal, "SIG" + name, None) if name.isupper() and name[0] != "_" else None
    if value is not None:
        return int(value)
    raise PyruncError(f"unknown signal {text!r}")


def kill(root: str, container_id: str, sig: int, all_procs: bool = False) -> None:
    ctr = state.Container(root, container_id).load(lock=True)
    status = ctr.status()
    if status == "stopped":
        raise InvalidState("container not running")
    if all_procs:
        _cgroups(ctr).kill_all(sig)
        try:
            signal_init(ctr, sig)  # the init too, should it not be in the cgroup
        except InvalidState:
            pass  # already killed through the cgroup (cgroup.kill is synchronous)
    else:
        signal_init(ctr, sig)
    ctr.unlock()


def signal_init(ctr: state.Container, sig: int) -> None:
    """Through a pidfd, checked against the recorded start time, so a recycled pid is never hit."""
    try:
        pidfd = os.pidfd_open(ctr.pid)
    except ProcessLookupError:
        raise InvalidState("container not running") from None
    try:
        if not ctr.init_alive():
            raise InvalidState("container not running")
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        raise InvalidState("container not running") from None
    finally:
        os.close(pidfd)


def delete(root: str, container_id: str, force: bool = False,
           ctr: state.Container | None = None) -> None:
    try:
        ctr = _locked(root, container_id, ctr)
    except (ContainerNotFound, state.CorruptState):
        if force:
            remove_orphan_dir(root, container_id)
            return  # runc: deleting what is already gone succeeds with --force
        raise
    status = ctr.status()
    if status != "stopped" and not force:
        raise InvalidState(f"cannot delete container {container_id} that is not stopped: "
                           f"{status}")
    writable(ctr)
    state.pause_point("delete:locked")
    stop_shim(ctr)
    # A stopped container's cgroups with nothing left in them need no CgroupManager (nor
    # cgroups.py): see cgroup_cleanup.py. kill_all(SIGKILL) would make the same check first.
    from pyrunc import cgroup_cleanup
    cgroup = ctr.data.get("cgroup", {})
    paths, created = dict(cgroup.get("paths", {})), list(cgroup.get("created", []))
    if status != "stopped":
        kill_and_wait(ctr, _cgroups(ctr))
    elif ((cgroup_cleanup.exclusive(paths, created) or not own_pid_namespace(ctr))
          and not cgroup_cleanup.surely_empty(paths)):
        _cgroups(ctr).kill_all()  # stragglers (a container sharing the host's pid ns)
    state.pause_point("delete:after-kill")
    cgroup_cleanup.remove_dirs(created)
    if ctr.data.get("host_mounts"):  # a container without a mount namespace: hostmounts.py
        from pyrunc import hostmounts
        hostmounts.undo(ctr.data.get("rootfs", ""), ctr.data["host_mounts"])


    state.pause_point("delete:after-cgroups")
    run_late_hooks(ctr, "poststop", "stopped")
    ctr.remove_dir()


def remove_orphan_dir(root: str, container_id: str) -> None:
    """A state dir without a readable state.json: a create killed before it wrote one, or a file
    lost or damaged by someone else. Once its lock is ours (so no live create owns it), the
    container's processes are killed in the cgroups its config.json names, cgroup directories
    named after the container are removed, and then the directory."""
    ctr = state.Container(root, container_id)
    try:
        ctr.lock()
    except FileNotFoundError:
        return
    try:
        ctr.load()
    except (ContainerNotFound, state.CorruptState):
        pass
    else:  # a create finished meanwhile: an ordinary delete
        ctr.unlock()
        delete(root, container_id, force=True)
        return
    try:
        cfg = ctr.config()
        cgroups_path = (cfg.get("linux") or {}).get("cgroupsPath")
        from pyrunc.cgroups import CgroupManager
        cg = CgroupManager.for_container(cgroups_path if isinstance(cgroups_path, str) else None,
                                         container_id)
    except (OSError, ValueError, AttributeError):
        cg = None  # no config either: create died before anything but the directory existed
    if cg is not None:
        # Only leaves that bear the container's id can be ours with certainty; only a cgroup
        # wholly ours may be emptied wholesale.
        cg.created = [p for p in cg.paths.values() if container_id in os.path.basename(p)]
        if cg.exclusive():
            cg.kill_all()
        cg.destroy()
    ctr.remove_dir()


def kill_and_wait(ctr: state.Container, cg: CgroupManager, timeout: float = 10.0) -> None:
    """SIGKILL everything (thawing a paused container so the kill lands) and wait for the init.

    In a cgroup we joined rather than made, other processes may live: then, as runc does, only
    the init is killed (its pid namespace goes with it) unless the container shares the host's.
    """
    if cg.exclusive() or not own_pid_namespace(ctr):
        cg.kill_all(signal.SIGKILL)
    elif cg.is_paused():
        cg.freeze(False)
    try:
        signal_init(ctr, signal.SIGKILL)
    except InvalidState:
        pass
    deadline = time.monotonic() + timeout
    while ctr.init_alive():
        if time.monotonic() > deadline:
            raise PyruncError(f"container {ctr.id}: init {ctr.pid} did not die after SIGKILL")
        time.sleep(0.002)


def own_pid_namespace(ctr: state.Container) -> bool:
    try:
        namespaces = (ctr.config().get("linux") or {}).get("namespaces") or []
    except (OSError, PyruncError):
        return True  # unknown: then only a cgroup of our own is emptied wholesale
    return any(ns.get("type") == "pid" and not ns.get("path") for ns in namespaces)


def state_json(root: str, container_id: str) -> str:
    ctr = state.Container(root, container_id).load()
    return jsonlite.dumps_indent(ctr.oci_state())


def list_containers(root: str) -> list[dict]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        try:
            out.append(state.Container(root, name).load().oci_state())
        except (PyruncError, OSError):
            continue  # a create in progress, or removed while we listed
    return out


def pause(root: str, container_id: str, frozen: bool) -> None:
    ctr = state.Container(root, container_id).load(lock=True)
    status = ctr.status()
    if frozen and status != "running":
        raise InvalidState(f"cannot pause a container that is {status}" if status != "stopped"
                           else "container not running")
    if not frozen and status != "paused":
        raise InvalidState(f"container not paused (it is {status})")
    _cgroups(ctr).freeze(frozen)
    ctr.unlock()


def container_pids(root: str, container_id: str) -> list[int]:
    ctr = state.Container(root, container_id).load()
    return _cgroups(ctr).pids()


def stop_shim(ctr: state.Container) -> None:
    """pyrunc-shim goes first, so that it cannot write into a state dir being removed."""
    shim = ctr.data.get("shim")
    if not shim:
        return
    info = state.proc_start_time(int(shim.get("pid", 0)))
    if info is None or info[0] != shim.get("start"):
        return
    try:
        pidfd = os.pidfd_open(int(shim["pid"]))
    except ProcessLookupError:
        return
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            info = state.proc_start_time(int(shim["pid"]))
            if info is None or info[1] in ("Z", "X"):
                break
            time.sleep(0.002)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


def logs(root: str, container_id: str, follow: bool) -> int:
    """Print output.log; with follow, keep printing until the container has stopped."""
    import sys
    ctr = state.Container(root, container_id).load()
    try:
        fd = os.open(ctr.path("output.log"), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PyruncError(f"container {container_id} has no log: only containers started by "
                          "`run -d` or `create --shim` keep their output") from None
    out = sys.stdout.buffer
    try:
        while True:
            chunk = os.read(fd, 65536)
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            if not follow or ctr.status() == "stopped":
                if follow:  # drain what was written between the last read and the exit
                    rest = os.read(fd, 1 << 20)
                    while rest:
                        out.write(rest)
                        rest = os.read(fd, 1 << 20)
                    out.flush()
                return 0
            time.sleep(0.1)
    finally:
        os.close(fd)
