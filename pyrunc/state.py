"""Container state under <root>/<id>/: atomic files, a per-container lock, live status.

The CLI is stateless: every call re-reads state.json. Status is never stored; it is derived from
the init process (its pid plus its start time, so a recycled pid reads as "stopped"), the exec
fifo (present until `start`) and the freezer.
"""

from __future__ import annotations

import fcntl
import time

from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc import OCI_VERSION, jsonlite
from pyrunc.errors import ContainerExists, ContainerNotFound, PyruncError

STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
FIFO = "exec.fifo"
START_ERROR = "start.err"  # why the init died between create and execve (see lifecycle.start)

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(container_id: str) -> None:
    if (not container_id or container_id in (".", "..") or len(container_id) > 1024
            or not set(container_id) <= _ID_CHARS):
        raise PyruncError(f"invalid container id {container_id!r}: use letters, digits and _+-. only")


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Readers see the old file or the new one, never half of either, even if we are killed.

    No fsync: state describes live processes, which a power loss ends anyway, and on a disk-backed
    /run (this host) each fsync costs ~5 ms, a whole runc `state`.
    """
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def now_rfc3339() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def proc_start_time(pid: int) -> tuple[int, str] | None:
    """(start time in clock ticks since boot, state letter) of a pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    return int(fields[19]), fields[0].decode()


class Container:
    """One container's state directory; methods that change it expect the lock to be held."""

    def __init__(self, root: str, container_id: str) -> None:
        check_id(container_id)
        self.root = root
        self.id = container_id
        self.dir = os.path.join(root, container_id)
        self.data: dict = {}
        self._lock_fd = -1
        self.pty_master = -1     # set by create for a foreground `run` with a terminal

    # -- lifecycle of the directory -------------------------------------------------------
    def create_dir(self) -> None:
        """mkdir is the arbiter between two racing creates of one id: exactly one wins."""
        os.makedirs(self.root, 0o711, exist_ok=True)
        try:
            os.mkdir(self.dir, 0o711)
        except FileExistsError:
            raise ContainerExists(self.id) from None
        self.lock()

    def lock(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def remove_dir(self) -> None:
        for name in os.listdir(self.dir):
            try:
                os.unlink(os.path.join(self.dir, name))
            except IsADirectoryError:  # notify/ (NOTIFY_SOCKET): one level, ours only
                sub = os.path.join(self.dir, name)
                for inner in os.listdir(sub):
                    os.unlink(os.path.join(sub, inner))
                os.rmdir(sub)
        os.rmdir(self.dir)
        self.unlock()

    # -- files ----------------------------------------------------------------------------
    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def load(self, lock: bool = False) -> "Container":
        if lock:
            try:
                self.lock()
            except FileNotFoundError:
                raise ContainerNotFound(self.id) from None
        try:
            with open(self.path(STATE_FILE), "rb") as f:
                self.data = jsonlite.loads(f.read())
        except FileNotFoundError:
            self.unlock()
            raise ContainerNotFound(self.id) from None
        except ValueError:
            self.unlock()
            raise PyruncError(f"state file {self.path(STATE_FILE)} is corrupt") from None
        return self

    def save(self) -> None:
        write_atomic(self.path(STATE_FILE), jsonlite.dumps(self.data).encode())

    def config(self) -> dict:
        with open(self.path(CONFIG_FILE), "rb") as f:
            return jsonlite.loads(f.read())

    # -- status ---------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return int(self.data.get("pid", 0))

    def init_alive(self) -> bool:
        info = proc_start_time(self.pid) if self.pid > 0 else None
        return bool(info) and info[0] == self.data.get("init_start") and info[1] not in ("Z", "X")

    def creator_alive(self) -> bool:
        """A create still holds the directory's lock; a dead one no longer does."""
        try:
            fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def status(self) -> str:
        if self.data.get("creating"):
            return "creating" if self._lock_fd < 0 and self.creator_alive() else "stopped"
        if not self.init_alive():
            return "stopped"
        if os.path.exists(self.path(FIFO)):
            return "created"
        from pyrunc.cgroups import CgroupManager
        if CgroupManager.from_state(self.data.get("cgroup", {})).is_paused():
            return "paused"
        return "running"

    def oci_state(self) -> dict:
        """The state JSON of the runtime-spec, with runc's extra fields (rootfs, created, owner)."""
        status = self.status()
        out = {
            "ociVersion": self.data.get("ociVersion", OCI_VERSION),
            "id": self.id,
            "pid": self.pid if status != "stopped" else 0,
            "status": status,
            "bundle": self.data.get("bundle", ""),
            "rootfs": self.data.get("rootfs", ""),
            "created": self.data.get("created", ""),
            "owner": self.data.get("owner", ""),
        }
        if self.data.get("annotations"):
            out["annotations"] = self.data["annotations"]
        if status == "stopped" and "shim" in self.data:
            out.update(self.exit_record())
        return out

    def exit_record(self) -> dict:
        """pyrunc-shim's record of how the init ended: exitStatus, exitSignal, finished."""
        try:
            with open(self.path("exit.json"), "rb") as f:
                record = jsonlite.loads(f.read())
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}
