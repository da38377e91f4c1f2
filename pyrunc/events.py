"""`pyrunc events`: resource stats (once with --stats, else every --interval) and OOM notices.

One JSON object per line on stdout, as runc writes them ({"type": "stats"|"oom", "id", "data"}),
which is what containerd's runc shim and docker read. The stream ends when the container stops
or is deleted.

OOM notices come from the kernel, not from polling: on v1 an eventfd registered through
cgroup.event_control on memory.oom_control; on v2 poll() on memory.events (kernfs wakes POLLPRI
pollers on every change) and a notice per increase of its oom_kill count.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time

from pyrunc import state
from pyrunc.cgroups import CgroupManager
from pyrunc.errors import InvalidState, PyruncError

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration for what users pass to --interval ("5s", "500ms", "1m30s")."""
    rest, total = text.strip(), 0.0
    if not rest:
        raise PyruncError(f"--interval: invalid duration {text!r}")
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        j = i
        while j < len(rest) and not (rest[j].isdigit() or rest[j] == "."):
            j += 1
        number, unit = rest[:i], rest[i:j]
        if not number or unit not in _UNITS:
            if rest == "0":
                return 0.0
            raise PyruncError(f"--interval: invalid duration {text!r} (e.g. 5s, 500ms)")
        total += float(number) * _UNITS[unit]
        rest = rest[j:]
    return total


class OomWatch:
    """A file descriptor that becomes readable on an OOM in the container's cgroup."""

    def __init__(self, cg: CgroupManager) -> None:
        self.fd = -1
        self.kind = ""
        self.directory = ""
        self.kills = 0
        memory = next((p for k, p in cg.paths.items() if "memory" in k.split(",")), None)
        if memory and os.path.exists(os.path.join(memory, "cgroup.event_control")):
            self._v1(memory)
        elif "" in cg.paths and os.path.exists(os.path.join(cg.paths[""], "memory.events")):
            self.kind, self.directory = "v2", cg.paths[""]
            self.fd = os.open(os.path.join(self.directory, "memory.events"), os.O_RDONLY | os.O_CLOEXEC)
            self.kills = self._v2_kills()

    def _v1(self, memory: str) -> None:
        efd = os.eventfd(0, os.EFD_CLOEXEC)
        ofd = os.open(os.path.join(memory, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            with open(os.path.join(memory, "cgroup.event_control"), "w") as f:
                f.write(f"{efd} {ofd}")
        except OSError:
            os.close(efd)
            raise
        finally:
            os.close(ofd)  # the registration holds its own reference
        self.fd, self.kind, self.directory = efd, "v1", memory

    def _v2_kills(self) -> int:
        os.lseek(self.fd, 0, os.SEEK_SET)
        for line in os.read(self.fd, 4096).decode().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def events(self) -> int:
        """How many OOMs since the last call (after poll said the fd is ready); -1 once the
        cgroup is gone (v1 signals the eventfd on removal too)."""
        if self.kind == "v1":
            count = int.from_bytes(os.read(self.fd, 8), "little")
            if not os.path.exists(os.path.join(self.directory, "cgroup.event_control")):
                return -1
            return count
        try:
            kills = self._v2_kills()
        except OSError:
            return -1
        new, self.kills = max(kills - self.kills, 0), kills
        return new

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _emit(kind: str, cid: str, data: dict | None = None) -> None:
    event: dict = {"type": kind, "id": cid}
    if data is not None:
        event["data"] = data
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _running(root: str, cid: str) -> CgroupManager | None:
    try:
        ctr = state.Container(root, cid).load()
    except PyruncError:
        return None
    if ctr.status() == "stopped":
        return None
    return CgroupManager.from_state(ctr.data.get("cgroup", {}))


def events(root: str, cid: str, opts: dict) -> int:
    interval = parse_duration(opts.get("interval") or "5s")
    if interval <= 0:
        raise PyruncError("--interval: duration must be greater than 0")
    ctr = state.Container(root, cid).load()
    if ctr.status() == "stopped":
        raise InvalidState(f"container with id {cid} is not running")
    cg = CgroupManager.from_state(ctr.data.get("cgroup", {}))
    if opts.get("stats"):
        _emit("stats", cid, cg.stats())
        return 0
    watch = OomWatch(cg)
    poller = select.poll()
    if watch.fd >= 0:
        poller.register(watch.fd, select.POLLIN if watch.kind == "v1" else select.POLLPRI)
    try:
        next_stats = 0.0
        while True:
            now = time.monotonic()
            if now >= next_stats:
                current = _running(root, cid)
                if current is None:
                    return 0
                _emit("stats", cid, current.stats())
                next_stats = now + interval
            # Wake for the next stats, but at least every second to notice the container end.
            wait = min(next_stats - time.monotonic(), 1.0)
            ready = poller.poll(max(wait, 0) * 1000)
            if ready:
                count = watch.events()
                if count < 0:
                    poller.unregister(watch.fd)
                    watch.close()
                for _ in range(max(count, 0)):
                    _emit("oom", cid)
            elif _running(root, cid) is None:
                return 0
    finally:
        watch.close()
