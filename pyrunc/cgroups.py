"""cgroup placement: find the host's hierarchies, make the container's directories, join, remove.

One manager serves v1, hybrid and v2 hosts: a "hierarchy" is one cgroup mount, keyed as
/proc/<pid>/cgroup names it ("memory", "cpu,cpuacct", "name=systemd", and "" for cgroup2).
It decides where a container lives, makes sure `delete` removes exactly what `create` made, and
writes linux.resources there (the translation itself is cgroup_resources.py).
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum
import time
from posix import environ as _posix_environ  # bytes keys; os.environ imports os (lightos.py)

from pyrunc import cgroup_join
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.cgroup_cleanup import exclusive, remove_dirs, surely_empty
from pyrunc.cgroup_freezer import freezer_of, layout_of, state_layout
from pyrunc.cgroup_freezer import frozen as _frozen
from pyrunc.cgroup_freezer import read_small as _read_small

# The keeper thread (prewarm_migration) and what it reads live in cgroup_keeper.py (builtins
# only, so that the short commands and exec need not load this module); re-exported here.
from pyrunc.cgroup_keeper import (  # noqa: F401
    KEEPER_FD,
    close_keeper_fd,
    mounts,
    own_cgroups,
    prewarm_migration,
    reap_prewarm,
)
from pyrunc.cgroup_keeper import read_all as _read_all
from pyrunc.errors import ConfigError, PyruncError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class Hierarchy:
    def __init__(self, key: str, mountpoint: str) -> None:
        self.key = key                # "" for cgroup2, else the controllers /proc/self/cgroup names
        self.mountpoint = mountpoint


_MOUNTS: list[Hierarchy] = []   # host_hierarchies' answer, once per process


def host_hierarchies() -> list[Hierarchy]:
    """Every cgroup mount of the host, once per hierarchy (cgroup_keeper.mounts parses them)."""
    if not _MOUNTS:
        _MOUNTS[:] = [Hierarchy(key, mountpoint) for key, mountpoint in mounts()]
    return list(_MOUNTS)


def layout(hierarchies: list[Hierarchy]) -> str:
    """"v2" (pure unified), "hybrid" (v1 controllers + a cgroup2 mount) or "v1"."""
    return layout_of({h.key for h in hierarchies})


def _clean(path: str, configured: str) -> str:
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise ConfigError(f'config.json: /linux/cgroupsPath: ".." is not allowed: {configured!r}')
        parts.append(part)
    return "/" + "/".join(parts)


LAYOUT_ENV = "PYRUNC_CGROUP_LAYOUT"
# What a non-root caller meets in cgroupfs: runc's rootless mode skips these instead of failing.
_PERMISSION_ERRNOS = (13, 1, 30)   # EACCES, EPERM, EROFS: not `import errno`, ~0.2 M instructions


class CgroupManager:
    """Where one container's processes live, and which of those directories we created.

    The interface every layout shares; V1Manager, HybridManager and UnifiedManager fill in what
    differs (resource files, freezing, killing, stats). for_container picks one from the host.
    """

    layout = ""

    def __init__(self, paths: dict[str, str], created: list[str] | None = None) -> None:
        self.paths = paths                    # hierarchy key -> absolute directory
        self.created = created or []
        # runc's rootless cgroup manager: hierarchies we may not write to (not delegated) are
        # skipped instead of failing, when the config left cgroupsPath to us.
        self.rootless = False
        self.skipped: dict[str, str] = {}     # hierarchy key -> directory we could not use

    @staticmethod
    def for_container(cgroups_path: str | None, container_id: str) -> CgroupManager:
        # runc's rule: an absolute path hangs from each hierarchy's root; a relative one (and the
        # default, the container id) from the cgroup the runtime itself is in.
        hierarchies = host_hierarchies()
        kind = layout(hierarchies)
        forced = _posix_environ.get(LAYOUT_ENV.encode(), b"").decode("utf-8", "surrogateescape")
        if forced:
            # A view of this host as another layout would see it: "v2" keeps only the cgroup2
            # mount (so a hybrid host can run the pure-v2 code for real), "v1" only the v1 ones.
            if forced not in _LAYOUTS or (forced == "hybrid" and kind != "hybrid"):
                raise PyruncError(f"{LAYOUT_ENV}={forced}: not a layout this {kind} host can "
                                  "show (v1, v2, or hybrid on a hybrid host)")
            keep = {"v2": lambda k: k == "", "v1": lambda k: k != ""}.get(forced, lambda k: True)
            hierarchies = [h for h in hierarchies if keep(h.key)]
            if not hierarchies:
                raise PyruncError(f"{LAYOUT_ENV}={forced}: this host has no such cgroup mount")
            kind = forced
        rel = cgroups_path if cgroups_path else container_id
        if _clean(rel, rel) == "/":
            # "/" is every hierarchy's root and "." the runtime's own cgroup: `delete --force`
            # kills whatever is in the container's cgroup, here the whole host or our caller.
            raise ConfigError(f"config.json: /linux/cgroupsPath: {rel!r} names "
                              f"{'the root cgroup' if rel.startswith('/') else 'the runtime own cgroup'}"
                              ", not one for the container")
        own = own_cgroups() if not rel.startswith("/") else {}
        paths = {}
        for h in hierarchies:
            inner = _clean(rel, rel) if rel.startswith("/") else \
                _clean(own.get(h.key, "/") + "/" + rel, rel)
            paths[h.key] = h.mountpoint + (inner if inner != "/" else "")
        return _LAYOUTS[kind](paths)

    @staticmethod
    def from_state(data: dict) -> CgroupManager:
        paths = dict(data.get("paths", {}))
        kind = state_layout(data)
        return _LAYOUTS.get(kind, HybridManager)(paths, list(data.get("created", [])))

    def to_state(self) -> dict:
        return {"layout": self.layout, "paths": self.paths, "created": self.created}

    def missing_dirs(self) -> list[str]:
        """What create() is about to make, for a state written before it makes anything."""
        out = []
        for path in self.paths.values():
            probe = path
            while not os.path.isdir(probe):
                out.append(probe)
                probe = os.path.dirname(probe)
        return out

    def create(self, only: str | None = None, skip: str | None = None) -> None:
        """mkdir every missing level, remembering each one so delete removes only ours: in
        every hierarchy, or in the one keyed `only`, or in all but `skip` (create makes the
        cgroup2 directory before the init's fork, which is born in it: cgroup_join.py).

        mkdir comes first and the levels above are looked at only on ENOENT: a container's
        directory is normally missing and its parent there, so one syscall per hierarchy instead
        of a stat of each level, then the mkdir (10 hierarchies on this host)."""
        for key, path in list(self.paths.items()):
            if key == skip or only is not None and key != only:
                continue
            cpuset = "cpuset" in key.split(",")
            try:
                existed = self._make(path, cpuset)
            except OSError as exc:
                if self.rootless and exc.errno in _PERMISSION_ERRNOS:
                    self._skip(key)
                    continue
                raise
            if self.rootless and existed and not os.access(os.path.join(path, "cgroup.procs"),
                                                           os.W_OK):
                self._skip(key)
                continue
            # A v2 directory we just made reads cgroup.freeze "0" whatever its parent's state;
            # a v1 freezer child of a frozen parent is born frozen: that one is read.
            if (key == "" and existed or "freezer" in key.split(",")) and _frozen(key, path):
                raise PyruncError(f"cgroup {path} is frozen: refusing to create a container in it")

    def _make(self, path: str, cpuset: bool) -> bool:
        """mkdir path and whatever is missing above it, recording each directory made (parents
        first, so a cpuset child inherits from a parent already filled in); True when path was
        there already."""
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            return True
        except FileNotFoundError:
            parent = os.path.dirname(path)
            if parent == path:
                raise
            self._make(parent, cpuset)
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                return True
        self.created.append(path)
        if cpuset:
            _inherit_cpuset(path)
        return False

    def _skip(self, key: str) -> None:
        self.skipped[key] = self.paths.pop(key)

    def skipped_warning(self) -> str:
        names = ", ".join(k or "unified (cgroup2)" for k in sorted(self.skipped))
        return (f"rootless: not using the cgroup hierarchies {names}: they are not writable by "
                f"uid {os.geteuid()} (delegate them to run with limits, pause and ps)")

    def _refuse_skipped(self, field: str, ctrl: str, key: str) -> None:
        raise ConfigError(f"{field}: cannot set {ctrl} limit: container could not join or create "
                          f"cgroup (rootless: {self.skipped[key]} is not writable)")

    def apply(self, resources: dict | None, linux_devices: list[dict] | None = None,
              with_devices: bool = True) -> list[str]:
        """Write linux.resources (and the device rules) into the container's directories.

        Returns the warnings (fields ignored); raises one-line errors naming field and file.
        with_devices=False leaves the device rules as they are (an update without devices).
        """
        raise NotImplementedError

    def stats(self) -> dict:
        """runc's `events --stats` data object, read from this container's cgroup files."""
        raise NotImplementedError

    def exclusive(self) -> bool:
        """Whether every directory the container is in was made by us: only then may killing
        "everything in the cgroup" be done, since a joined cgroup can hold other processes."""
        return exclusive(self.paths, self.created)

    def join_self(self, born_in_v2: bool = False) -> None:
        """Move the calling process, a single-threaded init or intermediate, into every
        hierarchy: v1 ones without the grace period a cgroup.procs write waits for, and the
        cgroup2 one unless it was born there (cgroup_join.py)."""
        for key, path in list(self.paths.items()):
            try:
                cgroup_join.join_self({key: path}, born_in_v2, self.rootless)
            except OSError as exc:
                if self.rootless and exc.errno in _PERMISSION_ERRNOS:
                    self._skip(key)  # created by us, but the move needs more than that
                    continue
                raise

    def join(self, pid: int) -> None:
        """Move a process (all its threads) into every hierarchy."""
        data = str(pid).encode()
        for key, path in list(self.paths.items()):
            procs = os.path.join(path, "cgroup.procs")
            try:
                fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
            except OSError as exc:
                if self.rootless and exc.errno in _PERMISSION_ERRNOS:
                    self._skip(key)  # created by us, but the move needs more than that
                    continue
                raise OSError(exc.errno, exc.strerror, procs) from None

    def _freezer(self) -> tuple[str, str] | None:
        """(key, dir) of the hierarchy that freezes, None when there is none."""
        raise NotImplementedError

    def is_paused(self) -> bool:
        where = self._freezer()
        return where is not None and _frozen(*where)

    def freeze(self, frozen: bool, timeout: float = 10.0) -> None:
        """Freeze or thaw every process, and wait until the kernel says it is done."""
        where = self._freezer()
        if where is None:
            raise PyruncError("no freezer cgroup for this container: cannot pause")
        key, path = where
        if key == "":
            with open(os.path.join(path, "cgroup.freeze"), "w") as f:
                f.write("1" if frozen else "0")
            want, events = ("frozen 1" if frozen else "frozen 0"), os.path.join(path, "cgroup.events")
            check = lambda: want.encode() in _read_small(events).splitlines()
        else:
            state_file = os.path.join(path, "freezer.state")
            target = "FROZEN" if frozen else "THAWED"
            check = lambda: _read_small(state_file).strip() == target.encode()
            with open(state_file, "w") as f:
                f.write(target)
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while not check():
            if time.monotonic() > deadline:
                raise PyruncError(f"cgroup {path}: timed out waiting to be "
                                  f"{'frozen' if frozen else 'thawed'}")
            if key != "" and frozen:
                # v1 FREEZING can stall on a task in a syscall; writing FROZEN again retries.
                with open(os.path.join(path, "freezer.state"), "w") as f:
                    f.write("FROZEN")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def pids(self) -> list[int]:
        """Every process in the container's cgroup (from one hierarchy: they all hold the same)."""
        key = self._primary()
        if key is None:
            return []
        try:
            with open(os.path.join(self.paths[key], "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return []

    def _primary(self) -> str | None:
        for wanted in ("", "pids", "freezer", "memory"):
            for key in self.paths:
                if key == wanted or wanted in key.split(","):
                    return key
        return next(iter(self.paths), None)

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Signal every process; cgroup.kill where the kernel has it, so forks cannot escape."""
        unified = self.paths.get("")
        if sig == signal.SIGKILL and surely_empty(self.paths):
            return
        if sig == signal.SIGKILL and unified and os.path.exists(os.path.join(unified, "cgroup.kill")):
            with open(os.path.join(unified, "cgroup.kill"), "w") as f:
                f.write("1")
        else:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        if sig == signal.SIGKILL and self.is_paused():
            self.freeze(False)  # a task frozen by the v1 freezer only dies once thawed

    def destroy(self, timeout: float = 5.0) -> None:
        """rmdir what we created, deepest first; EBUSY while killed tasks are still exiting."""
        remove_dirs(self.created, timeout)
        self.created = []


class V1Manager(CgroupManager):
    """One directory per v1 hierarchy; every resource goes to the hierarchy of its controller."""

    layout = "v1"

    def _owners(self) -> dict[str, str]:
        return {c: k for k in self.paths if k and not k.startswith("name=") for c in k.split(",")}

    def _all_dirs(self) -> dict[str, str]:
        """Used and rootless-skipped hierarchies: a limit for a skipped one is an error."""
        return {**self.skipped, **self.paths}

    def apply(self, resources: dict | None, linux_devices: list[dict] | None = None,
              with_devices: bool = True) -> list[str]:
        from pyrunc import cgroup_resources as tr
        resources = resources or {}
        warnings: list[str] = []
        dirs = self._all_dirs()
        owner = {c: k for k in dirs if k and not k.startswith("name=") for c in k.split(",")}

        def has_file(ctrl: str, name: str) -> bool:
            return ctrl in owner and os.path.exists(os.path.join(dirs[owner[ctrl]], name))

        cur = None
        mem = resources.get("memory") or {}
        if "memory" in owner and mem.get("limit") and mem.get("swap"):
            # Only the order of a limit and a swap limit depends on the current limit.
            try:
                cur = int(_read_small(os.path.join(dirs[owner["memory"]], "memory.limit_in_bytes")))
            except (OSError, ValueError):
                pass
        writes = tr.v1_writes(resources, set(owner), has_file, cur, warnings)
        if "devices" in owner and with_devices:
            dev = tr.device_writes(resources, linux_devices or [])
            # Rewriting an unchanged list would start with deny-all: opens in the container
            # fail until the allows follow. Engines resend the same devices on every update
            # (containerd with each CPU manager cpuset change), so an unchanged list is skipped.
            try:
                current = tr.devices_state(_read_all(os.path.join(dirs[owner["devices"]],
                                                                  "devices.list")).decode())
            except (OSError, ValueError):
                current = None
            if current is None or current != tr.devices_after(dev):
                writes += dev
        held = _Held()  # the device rules are a dozen lines into one file: one open
        try:
            for w in writes:
                ctrl, name, value = w
                if owner[ctrl] in self.skipped:
                    if ctrl == "devices":
                        continue  # runc's rootless mode ignores device rules it cannot write
                    self._refuse_skipped(getattr(w, "field", name), ctrl, owner[ctrl])
                held.write(self.paths[owner[ctrl]], name, value, getattr(w, "field", name))
                if name == "cpu.shares":
                    _check_shares(self.paths[owner[ctrl]], value, getattr(w, "field", name))
        finally:
            held.close()
        self._apply_rest(resources, "hugetlb" in owner, warnings)
        return warnings

    def _apply_rest(self, resources: dict, v1_hugetlb: bool, warnings: list[str]) -> None:
        """What only cgroup2 can take: `unified` (and hugepageLimits without a v1 hugetlb)."""
        rest = {"unified"} if v1_hugetlb else {"hugepageLimits", "unified"}
        if any(resources.get(k) for k in rest):
            k = "unified" if resources.get("unified") else "hugepageLimits"
            raise ConfigError(f"linux.resources.{k}: needs cgroup v2 (or a v1 hugetlb "
                              "hierarchy), which this host does not mount")

    def _freezer(self) -> tuple[str, str] | None:
        return freezer_of("v1", self.paths)

    def stats(self) -> dict:
        from pyrunc import cgroup_stats
        return cgroup_stats.v1_stats(self._owners(), self.paths)


class HybridManager(V1Manager):
    """v1 controllers plus a cgroup2 mount: resources go to v1, except what only cgroup2 has
    (on this host hugetlb, and any `unified` key), which goes to the cgroup2 directory."""

    layout = "hybrid"

    def _apply_rest(self, resources: dict, v1_hugetlb: bool, warnings: list[str]) -> None:
        from pyrunc import cgroup_resources as tr
        rest = {"unified"} if v1_hugetlb else {"hugepageLimits", "unified"}
        unified = self.paths.get("")
        if unified is None and "" in self.skipped and any(resources.get(k) for k in rest):
            self._refuse_skipped("linux.resources", "cgroup2", "")
        if unified is None:
            return super()._apply_rest(resources, v1_hugetlb, warnings)
        if any(resources.get(k) for k in rest):
            _write_v2(unified, tr.v2_writes(resources, _v2_has(unified), warnings, rest))

    def stats(self) -> dict:
        from pyrunc import cgroup_stats
        data = super().stats()
        if "hugetlb" not in self._owners() and "" in self.paths:
            data["hugetlb"] = cgroup_stats.v2_hugetlb(self.paths[""])
        return data


class UnifiedManager(CgroupManager):
    """Pure cgroup v2: one directory; devices through an eBPF filter attached to it."""

    layout = "v2"

    def apply(self, resources: dict | None, linux_devices: list[dict] | None = None,
              with_devices: bool = True) -> list[str]:
        from pyrunc import cgroup_resources as tr
        resources = resources or {}
        warnings: list[str] = []
        if "" not in self.paths:  # rootless, not delegated: only device rules may be ignored
            if any(v for k, v in resources.items() if k != "devices"):
                self._refuse_skipped("linux.resources", "cgroup2", "")
            return warnings
        directory = self.paths[""]
        _write_v2(directory, tr.v2_writes(resources, _v2_has(directory), warnings))
        if with_devices:
            from pyrunc import devfilter
            devfilter.install(directory, devfilter.rules_from_config(
                resources, linux_devices or [], tr.DEFAULT_ALLOWS))
        return warnings

    def _freezer(self) -> tuple[str, str] | None:
        return freezer_of("v2", self.paths)

    def stats(self) -> dict:
        from pyrunc import cgroup_stats
        return cgroup_stats.v2_stats(self.paths[""])


_LAYOUTS: dict[str, type[CgroupManager]] = {"v1": V1Manager, "hybrid": HybridManager,
                                            "v2": UnifiedManager}


def _v2_has(directory: str) -> Callable[[str, str], bool]:
    return lambda _ctrl, name: os.path.exists(os.path.join(directory, name))


def _write_v2(directory: str, writes: list[tuple[str, str]]) -> None:
    for w in writes:
        name, value = w
        if not os.path.exists(os.path.join(directory, name)):
            _enable_controller(directory, name.split(".", 1)[0])
        _write(directory, name, value, getattr(w, "field", name))


def _write(directory: str, name: str, value: str, field: str) -> None:
    try:
        fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(f"{field}: writing {value} to {name}: {reason}") from None


class _Held:
    """_write, keeping the last file open while the next write goes to the same file: each
    write(2) to a cgroup file is one complete request, so consecutive lines need no reopen."""

    def __init__(self) -> None:
        self.path = ""
        self.fd = -1

    def write(self, directory: str, name: str, value: str, field: str) -> None:
        path = os.path.join(directory, name)
        try:
            if path != self.path:
                self.close()
                self.fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
                self.path = path
            os.write(self.fd, value.encode())
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise ConfigError(f"{field}: writing {value} to {name}: {reason}") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd, self.path = -1, ""


def _check_shares(directory: str, value: str, field: str) -> None:
    """The kernel clamps cpu.shares silently; runc reports it, so do we."""
    with open(os.path.join(directory, "cpu.shares")) as f:
        got = f.read().strip()
    if got != value:
        bound = "maximum" if int(value) > int(got) else "minimum"
        raise ConfigError(f"{field}: the {bound} allowed cpu-shares is {got}")


def _enable_controller(directory: str, ctrl: str) -> None:
    """A cgroup2 child only gets <ctrl>.* files once every ancestor lists +ctrl in its
    cgroup.subtree_control (the root's is empty on this host, see DESIGN.md 8)."""
    chain = []
    parent = os.path.dirname(directory)
    while os.path.exists(os.path.join(parent, "cgroup.subtree_control")):
        chain.append(parent)
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    for d in reversed(chain):
        try:
            with open(os.path.join(d, "cgroup.controllers")) as f:
                if ctrl not in f.read().split():
                    return  # not available: the write itself reports the missing file
            with open(os.path.join(d, "cgroup.subtree_control")) as f:
                if ctrl in f.read().split():
                    continue
            _write(d, "cgroup.subtree_control", "+" + ctrl, f"enabling {ctrl} in {d}")
        except FileNotFoundError:
            return


def _inherit_cpuset(directory: str) -> None:
    """A new v1 cpuset child starts empty and refuses tasks (ENOSPC) until cpus and mems are set."""
    parent = os.path.dirname(directory)
    for name in ("cpuset.cpus", "cpuset.mems"):
        try:
            fd = os.open(os.path.join(directory, name), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            if os.read(fd, 4096).strip():
                continue
            try:
                value = _read_small(os.path.join(parent, name)).strip()
            except FileNotFoundError:
                return
            if value:
                os.write(fd, value)  # a request of its own: the offset the read left is ignored
        finally:
            os.close(fd)
