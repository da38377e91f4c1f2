"""Container state under <root>/<id>/: atomic files, a per-container lock, live status.

The CLI is stateless: every call re-reads state.json. Status is never stored; it is derived from
the init process (its pid plus its start time, so a recycled pid reads as "stopped"), the exec
fifo (present until `start`) and the freezer.
"""

from __future__ import annotations

import _signal
import posix as _posix
import time

from pyrunc import OCI_VERSION, errors, jsonlite
from pyrunc import lightos as os  # os minus its import cost: see lightos.py

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyrunc.exceptions import CorruptState  # noqa: F401 - state.CorruptState; __getattr__ at run time

STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
FIFO = "exec.fifo"
START_ERROR = "start.err"  # why the init died between create and execve (see lifecycle_start.start)
# A container started under pyrunc-shim (detached.py): its output, and how it ended (shim.py,
# a self-contained script, spells these names itself).
OUTPUT_LOG = "output.log"
SHIM_EXIT = "exit.json"

# Fault injection for tests/test_faults.py: PYRUNC_TEST_PAUSE=<command>:<point> makes the pyrunc
# process that reaches that point stop itself (SIGSTOP), so a test can SIGKILL it exactly there.
# Read once, here; unset, each point costs one comparison. It stops only the caller's own
# process (whoever can set our environment can already stop or kill us), reads no path and
# writes nothing, and is only consulted in the CLI process and, at one point, in a direct init
# before its namespaces (create:init-before-unshare: the host's, still; the same rules hold).
_pause = _posix.environ.get(b"PYRUNC_TEST_PAUSE")  # posix's bytes environ: os.environ costs ~2 ms
PAUSE_AT = _pause.decode(errors="replace") if _pause is not None else None


def pause_point(name: str) -> None:
    if PAUSE_AT == name:
        if os.getpid() == 1:
            # A pid namespace's init ignores its own SIGSTOP (and any signal it has no handler
            # for), but never a blocked one: it waits for the test's SIGCONT instead.
            held = _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGCONT})
            _signal.sigwait({_signal.SIGCONT})
            _signal.pthread_sigmask(_signal.SIG_SETMASK, held)
        else:
            os.kill(os.getpid(), _signal.SIGSTOP)


_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(container_id: str) -> None:
    if (not container_id or container_id in (".", "..") or len(container_id) > 1024
            or not set(container_id) <= _ID_CHARS):
        raise errors.PyruncError(f"invalid container id {container_id!r}: use letters, digits and _+-. only")


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Readers see the old file or the new one, never half of either, even if we are killed.

    No fsync: state describes live processes, which a power loss ends anyway, and on a disk-backed
    /run (this host) each fsync costs ~5 ms, a whole runc `state`.
    """
    commit(stage(path, data, mode), path)


def stage(path: str, data: bytes, mode: int = 0o600) -> str:
    """write_atomic's first half: data in a temporary file beside path, which commit renames
    (create writes the final state.json while its init works, and renames it once ready)."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        try:
            if os.write(fd, data) != len(data):
                raise OSError(28, "No space left on device", path)  # a short write: ENOSPC
        finally:
            os.close(fd)
    except OSError as exc:
        _drop(tmp)
        raise OSError(exc.errno, exc.strerror, path) from None
    return tmp


def commit(tmp: str, path: str) -> None:
    try:
        os.rename(tmp, path)
    except OSError as exc:
        _drop(tmp)
        raise OSError(exc.errno, exc.strerror, path) from None


def _drop(tmp: str) -> None:
    try:
        os.unlink(tmp)  # a full filesystem must not keep our half-written file either
    except OSError:
        pass


def _makedirs(path: str, mode: int) -> None:
    """os.makedirs(path, mode, exist_ok=True) without importing os (~1.5 ms before create's
    fork): missing parents are made with 0o777 (less the umask), as os.makedirs makes them."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
    except FileNotFoundError:
        parent = os.path.dirname(path.rstrip("/"))
        if not parent or parent == path:
            raise
        _makedirs(parent, 0o777)
        try:
            os.mkdir(path, mode)
        except FileExistsError:   # made meanwhile by another create
            if not os.path.isdir(path):
                raise


def now_rfc3339() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def read_file(path: str) -> bytes:
    """A whole file through posix: io's open() costs 9 syscalls and a buffered reader where this
    takes 4 (state.json, on every command). An error names the file, as open()'s did."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def proc_start_time(pid: int) -> tuple[int, str] | None:
    """(start time in clock ticks since boot, state letter) of a pid, or None if it is gone."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:  # one read of the whole line: io's layers cost ~9 syscalls (start, delete: 2-3 each)
        raw = os.read(fd, 4096)
    except ProcessLookupError:  # ESRCH: the process went between the open and the read
        return None
    finally:
        os.close(fd)
    fields = raw[raw.rindex(b")") + 2:].split()
    return int(fields[19]), fields[0].decode()


def __getattr__(name: str) -> type:
    """state.CorruptState: state.json exists but cannot be what we wrote (`delete --force` still
    cleans up); the class is made on first use, as errors.py's are."""
    if name == "CorruptState":
        return errors.CorruptState
    raise AttributeError(f"module 'pyrunc.state' has no attribute {name!r}")


def _well_formed(data: object) -> bool:
    """The fields every command reads have the types we write (a hand-edited or truncated
    file must give one clear line, not an internal error)."""
    if not isinstance(data, dict):
        return False
    cgroup = data.get("cgroup", {})
    if not (type(data.get("pid", 0)) is int and data.get("pid", 0) >= 0
            and type(data.get("init_start", 0)) is int
            and isinstance(cgroup, dict) and isinstance(cgroup.get("paths", {}), dict)
            and isinstance(cgroup.get("created", []), list)
            and isinstance(data.get("shim", {}), dict)
            and isinstance(data.get("annotations", {}), dict)):
        return False
    # Loops, not all() over generator expressions: each of those is one more code object to
    # unmarshal on every command (~10 K instructions) and a generator to run.
    for k, v in cgroup.get("paths", {}).items():
        if not (isinstance(k, str) and isinstance(v, str)):
            return False
    for d in cgroup.get("created", []):
        if not isinstance(d, str):
            return False
    for k in ("bundle", "rootfs", "created", "owner", "ociVersion"):
        if not isinstance(data.get(k, ""), str):
            return False
    return True


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
        self._config: dict | None = None
        self._config_raw: bytes | None = None  # config.json's bytes, as may_have read them

    # -- lifecycle of the directory -------------------------------------------------------
    def create_dir(self) -> None:
        """mkdir is the arbiter between two racing creates of one id: exactly one wins. The root
        is made only when that mkdir says it is missing: one syscall in the common case."""
        try:
            os.mkdir(self.dir, 0o711)
        except FileExistsError:
            raise errors.ContainerExists(self.id) from None
        except FileNotFoundError:
            _makedirs(self.root, 0o711)
            try:
                os.mkdir(self.dir, 0o711)
            except FileExistsError:
                raise errors.ContainerExists(self.id) from None
        try:
            self.lock()
        except FileNotFoundError:
            # A `delete --force` took the empty directory for a dead create's leftover between
            # our mkdir and our flock.
            raise errors.PyruncError(f"container {self.id} was deleted while being created") from None

    def lock(self) -> None:
        if self._lock_fd >= 0:
            return  # ours already (`run` hands one Container from create to start and delete)
        import fcntl  # here: state and list never lock (creating the module: ~45 K instructions)
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink == 0:
            # We waited on a directory that its holder removed (a racing delete): it is gone.
            os.close(fd)
            raise FileNotFoundError(2, "No such file or directory", self.dir)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def remove_dir(self) -> None:
        # pyrunc-shim may still be recording the exit (exit.json.tmpN renamed to exit.json)
        # while we empty the directory: a name listed can vanish, a new one can appear.
        for _ in range(100):
            for name in os.listdir(self.dir):
                try:
                    os.unlink(os.path.join(self.dir, name))
                except FileNotFoundError:
                    pass
                except IsADirectoryError:  # notify/ (NOTIFY_SOCKET): one level, ours only
                    sub = os.path.join(self.dir, name)
                    for inner in os.listdir(sub):
                        os.unlink(os.path.join(sub, inner))
                    os.rmdir(sub)
            try:
                os.rmdir(self.dir)
                break
            except OSError as e:
                if e.errno != 39:  # ENOTEMPTY (errno not imported: see lifecycle.py)
                    raise
        else:
            os.rmdir(self.dir)  # still not empty: let the error name the directory
        self.unlock()

    # -- files ----------------------------------------------------------------------------
    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def load(self, lock: bool = False) -> Container:
        if lock:
            try:
                self.lock()
            except FileNotFoundError:
                raise errors.ContainerNotFound(self.id) from None
        try:
            self.data = jsonlite.loads(read_file(self.path(STATE_FILE)))
        except FileNotFoundError:
            if lock:
                self.unlock()
            raise errors.ContainerNotFound(self.id) from None
        except ValueError:
            if lock:
                self.unlock()
            raise errors.CorruptState(self.path(STATE_FILE)) from None
        if not _well_formed(self.data):
            if lock:
                self.unlock()
            raise errors.CorruptState(self.path(STATE_FILE))
        return self

    def save(self) -> None:
        write_atomic(self.path(STATE_FILE), jsonlite.dumps(self.data).encode())

    def may_have(self, name: str) -> bool:
        """Whether config.json can have a member called name (a hook kind): start's poststart
        lookup parses it only then (~60 us saved for the usual config without hooks). A JSON
        member name equal to name is either these bytes or spelled with a \\u escape, so a
        False is exact. True when it cannot tell (config() already read, or unreadable: config()
        then reports as before). The bytes are kept for config() and the next may_have (`run`
        asks for poststart, then its delete for poststop). A state create wrote lists the hook
        kinds its config has ("hooks"): then config.json is not read at all."""
        if self._config is not None:
            return True
        kinds = self.data.get("hooks")
        if type(kinds) is list:
            return name in kinds
        raw = self._config_raw
        if raw is None:
            try:
                raw = self._config_raw = read_file(self.path(CONFIG_FILE))
            except OSError:
                return True
        return name.encode() in raw or b"\\u" in raw

    def config_written(self, raw: bytes) -> None:
        """The bytes create wrote to config.json: `run` then reads the file for neither its
        start nor its delete."""
        self._config_raw = raw

    def config(self) -> dict:
        """config.json as create stored it, read once per Container (delete and `run` ask up
        to three times); callers only read it."""
        if self._config is None:
            raw = self._config_raw
            self._config = jsonlite.loads(read_file(self.path(CONFIG_FILE)) if raw is None else raw)
        return self._config

    # -- status ---------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return int(self.data.get("pid", 0))

    def init_alive(self) -> bool:
        info = proc_start_time(self.pid) if self.pid > 0 else None
        return info is not None and info[0] == self.data.get("init_start") and info[1] not in ("Z", "X")

    def creator_alive(self) -> bool:
        """A create still holds the directory's lock; a dead one no longer does."""
        import fcntl
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
        from pyrunc.cgroup_freezer import paused  # not cgroups.py: see cgroup_freezer.py
        if paused(self.data.get("cgroup", {})):
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
            record = jsonlite.loads(read_file(self.path(SHIM_EXIT)))
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}


def locked(root: str, container_id: str, ctr: Container | None) -> Container:
    """The container, locked: loaded from its state dir, or (`run`) the one create returned,
    whose state create wrote itself and nothing rewrites, taken again after start's unlock.
    (Here, not in lifecycle.py: `start` then loads no lifecycle.py, ~11 KB of code.)"""
    if ctr is None:
        return Container(root, container_id).load(lock=True)
    try:
        ctr.lock()
    except FileNotFoundError:  # a `delete --force` got in between
        raise errors.ContainerNotFound(container_id) from None
    return ctr


def writable(ctr: Container) -> None:
    """start and delete change the state dir: on a read-only one, fail before touching the
    container (a start that opened the fifo and could not go on would end the init)."""
    if not os.access(ctr.dir, os.W_OK):
        raise errors.PyruncError(f"{ctr.dir}: read-only file system: cannot change the container's state"
                                 if os.statvfs(ctr.dir).f_flag & os.ST_RDONLY else
                                 f"{ctr.dir}: permission denied")
