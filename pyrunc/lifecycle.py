"""state, list, kill, pause, ps, logs: the operations on an existing container, and what start
and delete share with them.

start and delete themselves are in lifecycle_start.py and lifecycle_delete.py: each command
loads only its own code (`state` and `kill` unmarshalled ~40% of their modules' code for start's
and delete's sake, ~15 instructions a byte).
"""

from __future__ import annotations

import _signal as signal  # the signal module imports enum (~8 ms) for names we do not need
import time

from pyrunc import errors, jsonlite, state
from pyrunc import lightos as os  # os minus its import cost: see lightos.py

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyrunc.cgroups import CgroupManager


def cgroups_of(ctr: state.Container) -> CgroupManager:
    """The container's cgroups. cgroups.py is imported here, not at the top: `start` never
    needs it, and its code is a fifth of what the short commands load (~0.3 ms)."""
    from pyrunc.cgroups import CgroupManager
    return CgroupManager.from_state(ctr.data.get("cgroup", {}))


def run_late_hooks(ctr: state.Container, kind: str, status: str) -> None:
    """poststart and poststop: a failure is a warning and the lifecycle goes on (runtime-spec)."""
    if not ctr.may_have(kind):
        return  # none configured, and config.json left unparsed (delete after run's exit)
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
            raise errors.PyruncError(f"invalid signal: {text}")
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
    raise errors.PyruncError(f"unknown signal {text!r}")


def kill(root: str, container_id: str, sig: int, all_procs: bool = False) -> None:
    """Only "stopped" refuses a signal. Without --all, signal_init's check through the pidfd
    decides it alone: status() first would add an exec-fifo stat, a freezer read (and
    cgroup_freezer's code) and a second /proc/<pid>/stat read that cannot change the answer.
    A state still "creating" under our lock is a dead create's leftover (as status() says)."""
    ctr = state.Container(root, container_id).load(lock=True)
    if ctr.data.get("creating") or ctr.pid <= 0:
        raise errors.InvalidState("container not running")
    if all_procs:
        if ctr.status() == "stopped":   # no signal for the cgroup's strays either
            raise errors.InvalidState("container not running")
        cgroups_of(ctr).kill_all(sig)
        try:
            signal_init(ctr, sig)  # the init too, should it not be in the cgroup
        except errors.InvalidState:
            pass  # already killed through the cgroup (cgroup.kill is synchronous)
    else:
        signal_init(ctr, sig)
    ctr.unlock()


def signal_init(ctr: state.Container, sig: int) -> None:
    """Through a pidfd, checked against the recorded start time, so a recycled pid is never hit."""
    try:
        pidfd = os.pidfd_open(ctr.pid)
    except ProcessLookupError:
        raise errors.InvalidState("container not running") from None
    try:
        if not ctr.init_alive():
            raise errors.InvalidState("container not running")
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        raise errors.InvalidState("container not running") from None
    finally:
        os.close(pidfd)


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
        except (errors.PyruncError, OSError):
            continue  # a create in progress, or removed while we listed
    return out


def pause(root: str, container_id: str, frozen: bool) -> None:
    ctr = state.Container(root, container_id).load(lock=True)
    status = ctr.status()
    if frozen and status != "running":
        raise errors.InvalidState(f"cannot pause a container that is {status}" if status != "stopped"
                           else "container not running")
    if not frozen and status != "paused":
        raise errors.InvalidState(f"container not paused (it is {status})")
    cgroups_of(ctr).freeze(frozen)
    ctr.unlock()


def container_pids(root: str, container_id: str) -> list[int]:
    ctr = state.Container(root, container_id).load()
    return cgroups_of(ctr).pids()


def logs(root: str, container_id: str, follow: bool) -> int:
    """Print output.log; with follow, keep printing until the container has stopped."""
    import sys
    ctr = state.Container(root, container_id).load()
    try:
        fd = os.open(ctr.path(state.OUTPUT_LOG), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise errors.PyruncError(f"container {container_id} has no log: only containers started by "
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
