"""linux.resources -> the cgroup files to write, for v1 hierarchies and for a cgroup2 directory.

Pure translation (no file access: what exists on the host comes in through `has_file`), so the
mapping and runc's v2 conversions can be tested without root. cgroups.CgroupManager.apply does
the writing. Zero/unset values are skipped, as runc does (docker sends cpu.shares 0 and
blockIO.weight 0 meaning "unset").

What happens to a field the host cannot honour (E = error, W = warning and skipped, - = skip):

| field                               | v1 (hierarchy missing / file missing)     | v2                          |
|-------------------------------------|-------------------------------------------|-----------------------------|
| memory.limit/reservation/swap       | E (runc: cannot set memory limit)         | E if the file is missing    |
| memory.swap = -1, no memsw file     | - (unlimited is what we have)             | - ("max"/0 w/o swap.max)    |
| memory.kernel, memory.kernelTCP     | - if the file is missing (newer kernels)  | W (no such v2 knob)         |
| memory.swappiness > 100             | E (invalid range)                         | W (no v2 knob)              |
| memory.disableOOMKiller             | E without the memory hierarchy            | W (no v2 knob)              |
| memory.useHierarchy                 | written only when true                    | - (always hierarchical)     |
| memory.checkBeforeUpdate            | - (only meaningful for update)            | -                           |
| cpu.* , cpuset cpus/mems            | E                                         | E; realtime*: E (no v2 RT)  |
| pids.limit                          | E                                         | E                           |
| blockIO.weight                      | blkio.weight, else blkio.bfq.weight       | io.bfq.weight, else io.weight (converted) |
| blockIO.leafWeight(+Device)         | E if blkio.leaf_weight* missing           | W (no v2 knob)              |
| blockIO.throttle*                   | E                                         | E                           |
| hugepageLimits                      | E unless hugetlb (v1) or cgroup2 has it   | E                           |
| network.classID / priorities        | E when net_cls / net_prio are not mounted | W (no v2 controller)        |
| rdma                                | E (no rdma hierarchy)                     | E if rdma.max is missing    |
| unified                             | E on a v1-only host; hybrid: cgroup2 dir  | written as given, last      |
| devices                             | devices.deny/allow (runc's defaults added) | eBPF filter (devfilter.py)  |

runc 1.1.5 differs on one row on this hybrid host: it refuses hugepageLimits (no v1 hugetlb),
where pyrunc writes them to the cgroup2 directory.
"""

from __future__ import annotations

from pyrunc.errors import ConfigError

# typing and collections.abc stay out of the create path (~8 ms of imports with re and enum):
# the annotations below are strings (from __future__), resolved only by type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Self

    HasFile = Callable[[str, str], bool]   # (controller, filename) -> exists


class Write(tuple):
    """(controller, filename, value) or (filename, value), carrying the config field for errors."""

    field: str

    def __new__(cls, items: tuple, field: str) -> Self:
        made = super().__new__(cls, items)
        made.field = field
        return made


def _all(_ctrl: str, _name: str) -> bool:
    return True


def _num(value: int) -> str:
    return "max" if value < 0 else str(value)


def _dev(entry: dict) -> str:
    return f"{entry['major']}:{entry['minor']}"


F = "linux.resources."


def v1_writes(resources: dict, keys: set[str], has_file: HasFile = _all,
              cur_mem_limit: int | None = None,
              warnings: list[str] | None = None) -> list[tuple[str, str, str]]:
    """The v1 writes, in order. keys: the v1 controllers mounted. hugepageLimits/unified are
    left to v2_writes when "hugetlb" is not a v1 controller (the hybrid host's case)."""
    out: list[tuple[str, str, str]] = []  # of Write

    def put(ctrl: str, name: str, value: object, field: str) -> None:
        if ctrl not in keys:
            raise ConfigError(f"{F}{field}: cannot set {ctrl} limits: the {ctrl} cgroup "
                              "hierarchy is not mounted")
        out.append(Write((ctrl, name, str(value)), F + field))

    mem = resources.get("memory") or {}
    limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
    if swap == -1 and "memory" in keys and not has_file("memory", "memory.memsw.limit_in_bytes"):
        swap = 0
    mem_w = ("memory", "memory.limit_in_bytes", limit, "memory.limit")
    swap_w = ("memory", "memory.memsw.limit_in_bytes", swap, "memory.swap")
    # The kernel insists limit <= memsw: raising both means memsw first, lowering means limit
    # first. A fresh cgroup (cur_mem_limit None) has both unlimited.
    swap_first = limit and swap and (swap == -1 or (cur_mem_limit is not None and cur_mem_limit < swap))
    for ctrl, name, value, field in ((swap_w, mem_w) if swap_first else (mem_w, swap_w)):
        if value:
            put(ctrl, name, value, field)
    if mem.get("reservation"):
        put("memory", "memory.soft_limit_in_bytes", mem["reservation"], "memory.reservation")
    for field, name in (("kernel", "memory.kmem.limit_in_bytes"),
                        ("kernelTCP", "memory.kmem.tcp.limit_in_bytes")):
        if mem.get(field) and "memory" in keys and has_file("memory", name):
            put("memory", name, mem[field], "memory." + field)
    if mem.get("swappiness") is not None:
        if not 0 <= mem["swappiness"] <= 100:
            raise ConfigError(f"{F}memory.swappiness: invalid value {mem['swappiness']}: "
                              "valid range is 0-100")
        put("memory", "memory.swappiness", mem["swappiness"], "memory.swappiness")
    if mem.get("disableOOMKiller"):
        put("memory", "memory.oom_control", 1, "memory.disableOOMKiller")
    if mem.get("useHierarchy"):
        put("memory", "memory.use_hierarchy", 1, "memory.useHierarchy")

    cpu = resources.get("cpu") or {}
    if cpu.get("shares"):
        put("cpu", "cpu.shares", cpu["shares"], "cpu.shares")
    if cpu.get("period"):
        put("cpu", "cpu.cfs_period_us", cpu["period"], "cpu.period")
    if cpu.get("quota"):
        put("cpu", "cpu.cfs_quota_us", cpu["quota"], "cpu.quota")
    if cpu.get("burst") is not None:
        put("cpu", "cpu.cfs_burst_us", cpu["burst"], "cpu.burst")
    if cpu.get("realtimePeriod"):
        put("cpu", "cpu.rt_period_us", cpu["realtimePeriod"], "cpu.realtimePeriod")
    if cpu.get("realtimeRuntime"):
        put("cpu", "cpu.rt_runtime_us", cpu["realtimeRuntime"], "cpu.realtimeRuntime")
    if cpu.get("idle") is not None:
        put("cpu", "cpu.idle", cpu["idle"], "cpu.idle")
    for field in ("cpus", "mems"):
        if cpu.get(field):
            put("cpuset", "cpuset." + field, cpu[field], "cpu." + field)

    if (resources.get("pids") or {}).get("limit"):
        put("pids", "pids.max", _num(resources["pids"]["limit"]), "pids.limit")

    blk = resources.get("blockIO") or {}
    # A stat, so only when a weight is asked for (most configs ask none).
    bfq = ("blkio" in keys and (blk.get("weight") or any(d.get("weight") for d in
                                                          blk.get("weightDevice") or []))
           and not has_file("blkio", "blkio.weight"))
    if blk.get("weight"):
        put("blkio", "blkio.bfq.weight" if bfq else "blkio.weight", blk["weight"], "blockIO.weight")
    if blk.get("leafWeight"):
        put("blkio", "blkio.leaf_weight", blk["leafWeight"], "blockIO.leafWeight")
    for i, d in enumerate(blk.get("weightDevice") or []):
        if d.get("weight"):
            put("blkio", "blkio.bfq.weight_device" if bfq else "blkio.weight_device",
                f"{_dev(d)} {d['weight']}", f"blockIO.weightDevice[{i}]")
        if d.get("leafWeight"):
            put("blkio", "blkio.leaf_weight_device", f"{_dev(d)} {d['leafWeight']}",
                f"blockIO.weightDevice[{i}]")
    for field, name in _THROTTLE:
        for i, d in enumerate(blk.get(field) or []):
            put("blkio", "blkio.throttle." + name, f"{_dev(d)} {d['rate']}", f"blockIO.{field}[{i}]")

    if "hugetlb" in keys:
        for i, h in enumerate(resources.get("hugepageLimits") or []):
            put("hugetlb", f"hugetlb.{h['pageSize']}.limit_in_bytes", h["limit"],
                f"hugepageLimits[{i}]")

    # A v1 host without net_cls/net_prio cannot tag the packets: an error, as runc gives (a
    # classifier silently not applied would let traffic through unmarked).
    net = resources.get("network") or {}
    if net.get("classID"):
        put("net_cls", "net_cls.classid", net["classID"], "network.classID")
    for i, p in enumerate(net.get("priorities") or []):
        put("net_prio", "net_prio.ifpriomap", f"{p['name']} {p['priority']}",
            f"network.priorities[{i}]")
    for dev, lim in sorted((resources.get("rdma") or {}).items()):
        put("rdma", "rdma.max", _rdma(dev, lim), f"rdma.{dev}")
    return out


_THROTTLE = (("throttleReadBpsDevice", "read_bps_device"), ("throttleWriteBpsDevice", "write_bps_device"),
             ("throttleReadIOPSDevice", "read_iops_device"),
             ("throttleWriteIOPSDevice", "write_iops_device"))
_IO_MAX = (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
           ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops"))


def _rdma(dev: str, lim: dict) -> str:
    parts = [dev]
    if lim.get("hcaHandles") is not None:
        parts.append(f"hca_handle={lim['hcaHandles']}")
    if lim.get("hcaObjects") is not None:
        parts.append(f"hca_object={lim['hcaObjects']}")
    return " ".join(parts)


def cpu_weight(shares: int) -> int:
    """runc's cpu.shares [2, 262144] -> cpu.weight [1, 10000]."""
    return 1 + ((shares - 2) * 9999) // 262142 if shares else 0


def io_weight(blkio: int) -> int:
    """runc's blkio weight [10, 1000] -> io.weight [1, 10000]."""
    return 1 + ((blkio - 10) * 9999) // 990 if blkio else 0


def swap_v2(swap: int, limit: int) -> int:
    """v1's memsw (memory+swap) -> v2's memory.swap.max (swap alone); -1 unlimited, 0 unset."""
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap
    if limit in (0, -1):
        raise ConfigError(f"{F}memory.swap: cannot set a swap limit without a memory limit")
    if swap < limit:
        raise ConfigError(f"{F}memory.swap: memory+swap limit {swap} is below the memory limit {limit}")
    return swap - limit


def v2_writes(resources: dict, has_file: HasFile = _all,
              warnings: list[str] | None = None, only: set[str] | None = None) -> list[tuple[str, str]]:
    """The writes for one cgroup2 directory, in order. `only` limits them to some fields (the
    hybrid host sends just hugepageLimits and unified there)."""
    warn = warnings if warnings is not None else []
    res = {k: v for k, v in resources.items() if only is None or k in only}
    out: list[tuple[str, str]] = []  # of Write

    def put(name: str, value: object, field: str) -> None:
        out.append(Write((name, str(value)), F + field))

    mem = res.get("memory") or {}
    limit = mem.get("limit") or 0
    swap = swap_v2(mem.get("swap") or 0, limit)
    # swap == limit means "no swap": write 0 then, not "unset" (runc does the same).
    # Without swap accounting there is no memory.swap.max; "max" and 0 are then already true.
    if (swap or (mem.get("swap") or 0) > 0) and (swap > 0 or has_file("", "memory.swap.max")):
        put("memory.swap.max", _num(swap), "memory.swap")
    if limit:
        put("memory.max", _num(limit), "memory.limit")
    if mem.get("reservation"):
        put("memory.low", _num(mem["reservation"]), "memory.reservation")
    for field in ("kernel", "kernelTCP", "swappiness", "disableOOMKiller"):
        if mem.get(field):
            warn.append(f"{F}memory.{field}: no cgroup v2 equivalent: ignored")

    cpu = res.get("cpu") or {}
    if cpu.get("realtimePeriod") or cpu.get("realtimeRuntime"):
        raise ConfigError(f"{F}cpu.realtimeRuntime: realtime scheduling is not supported on cgroup v2")
    if cpu.get("shares"):
        put("cpu.weight", cpu_weight(cpu["shares"]), "cpu.shares")
    if cpu.get("quota") or cpu.get("period"):
        quota = cpu.get("quota") or 0
        value = str(quota) if quota > 0 else "max"
        if cpu.get("period"):
            value += f" {cpu['period']}"
        put("cpu.max", value, "cpu.quota")
    if cpu.get("burst") is not None:
        put("cpu.max.burst", cpu["burst"], "cpu.burst")
    if cpu.get("idle") is not None:
        put("cpu.idle", cpu["idle"], "cpu.idle")
    for field in ("cpus", "mems"):
        if cpu.get(field):
            put("cpuset." + field, cpu[field], "cpu." + field)

    if (res.get("pids") or {}).get("limit"):
        put("pids.max", _num(res["pids"]["limit"]), "pids.limit")

    blk = res.get("blockIO") or {}
    if blk.get("weight"):
        if has_file("", "io.bfq.weight"):
            put("io.bfq.weight", blk["weight"], "blockIO.weight")
        else:
            put("io.weight", io_weight(blk["weight"]), "blockIO.weight")
    if blk.get("leafWeight") or any(d.get("leafWeight") for d in blk.get("weightDevice") or []):
        warn.append(f"{F}blockIO.leafWeight: no cgroup v2 equivalent: ignored")
    for i, d in enumerate(blk.get("weightDevice") or []):
        if d.get("weight"):
            put("io.bfq.weight", f"{_dev(d)} {d['weight']}", f"blockIO.weightDevice[{i}]")
    for field, key in _IO_MAX:
        for i, d in enumerate(blk.get(field) or []):
            put("io.max", f"{_dev(d)} {key}={d['rate']}", f"blockIO.{field}[{i}]")

    for i, h in enumerate(res.get("hugepageLimits") or []):
        put(f"hugetlb.{h['pageSize']}.max", _num(h["limit"]), f"hugepageLimits[{i}]")
    if (res.get("network") or {}).get("classID") or (res.get("network") or {}).get("priorities"):
        warn.append(f"{F}network: no cgroup v2 controller for net_cls/net_prio: ignored")
    for dev, lim in sorted((res.get("rdma") or {}).items()):
        put("rdma.max", _rdma(dev, lim), f"rdma.{dev}")
    for name, value in (res.get("unified") or {}).items():
        if "/" in name or name.startswith("."):
            raise ConfigError(f"{F}unified.{name}: not a cgroup file name")
        put(name, value, f"unified.{name}")
    return out


# Always allowed whatever the config denies, runc 1.1's list (its AllowedDevices): mknod of any
# node, the nodes pyrunc creates in /dev, the pty ones and /dev/net/tun. podman sends only
# deny-all and relies on these.
DEFAULT_ALLOWS = ("c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm",
                  "c 1:5 rwm", "c 1:9 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm")


def device_writes(resources: dict, linux_devices: list[dict]) -> list[tuple[str, str, str]]:
    """v1 devices.deny/devices.allow lines: the configured rules in order, then the defaults
    and the configured linux.devices nodes. Like runc (and like the v2 filter, where what no
    rule matches is denied), a list that does not start with deny-all gets one first."""
    rules = resources.get("devices") or []
    first = rules[0] if rules else {}
    out: list[tuple[str, str, str]] = []  # of Write
    wildcard = (first.get("type") or "a") == "a" and set(first.get("access") or "rwm") == set("rwm") \
        and all(first.get(k) is None or first[k] < 0 for k in ("major", "minor"))
    if not rules or first.get("allow") or not wildcard:
        out.append(Write(("devices", "devices.deny", "a"), F + "devices (implicit deny-all)"))
    for i, rule in enumerate(rules):
        kind = rule.get("type") or "a"
        major = "*" if rule.get("major") is None or rule["major"] < 0 else rule["major"]
        minor = "*" if rule.get("minor") is None or rule["minor"] < 0 else rule["minor"]
        access = rule.get("access") or "rwm"
        line = "a" if kind == "a" and major == "*" and minor == "*" and set(access) == set("rwm") \
            else f"{kind} {major}:{minor} {access}"
        name = "devices.allow" if rule.get("allow") else "devices.deny"
        out.append(Write(("devices", name, line), f"{F}devices[{i}]"))
    for line in DEFAULT_ALLOWS:
        out.append(Write(("devices", "devices.allow", line), F + "devices (default nodes)"))
    for i, dev in enumerate(linux_devices):
        kind = "c" if dev.get("type") == "u" else dev.get("type")
        if kind in ("c", "b"):
            out.append(Write(("devices", "devices.allow", f"{kind} {dev['major']}:{dev['minor']} rwm"),
                             f"linux.devices[{i}]"))
    return out



DeviceState = tuple  # (default allow: bool, frozenset of ((type, "major:minor"), frozenset(access)))


def devices_state(devices_list: str) -> DeviceState | None:
    """A v1 devices.list as a DeviceState; None when the kernel hides the exceptions (a
    default-allow cgroup prints only "a *:* rwm")."""
    entries = [line.split() for line in devices_list.splitlines() if line.strip()]
    if ["a", "*:*", "rwm"] in entries:
        return None
    return False, frozenset(((kind, num), frozenset(access))
                            for kind, num, access in (e for e in entries if len(e) == 3))


def devices_after(writes: Iterable[tuple[str, str, str]]) -> DeviceState | None:
    """What devices.list will hold after device_writes' lines (which start with an "a"), the
    way the kernel applies them: "a" sets the default and drops every exception; a rule against
    the default adds (or widens) an exception; one in its favour narrows the same exception."""
    allow_all = True
    exc: dict | None = None
    for _ctrl, name, line in writes:
        allow = name == "devices.allow"
        if line == "a":
            allow_all, exc = allow, {}
            continue
        if exc is None:
            return None
        kind, num, access = line.split()
        if allow != allow_all:
            exc.setdefault((kind, num), set()).update(access)
        elif (kind, num) in exc:
            exc[(kind, num)] -= set(access)
            if not exc[(kind, num)]:
                del exc[(kind, num)]
    if exc is None or allow_all:
        return None  # a default-allow list is never known to be unchanged
    return allow_all, frozenset((k, frozenset(a)) for k, a in exc.items())
