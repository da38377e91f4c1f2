"""`events --stats` data, read from a container's cgroup files, in runc's JSON layout.

Engines (containerd's runc shim, docker stats through it) decode runc's types/events.go
structure, so the field names and which fields disappear when zero (Go's omitempty) follow it.
v1 and v2 files differ; the output does not, apart from what a layout cannot know.
"""

from __future__ import annotations

import os

_NS_PER_TICK = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") or 100)
_UNLIMITED = (1 << 64) - 1          # what runc reports for a v2 "max"


def _read(directory: str | None, name: str) -> str | None:
    if directory is None:
        return None
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read()
    except OSError:
        return None


def _int(directory: str | None, name: str) -> int:
    text = _read(directory, name)
    if text is None:
        return 0
    text = text.strip()
    if text == "max":
        return _UNLIMITED
    try:
        return int(text.split()[0]) if text else 0
    except ValueError:
        return 0


def _keyed(directory: str | None, name: str) -> dict[str, int]:
    """A flat "key value" file (memory.stat, cpu.stat, memory.events)."""
    out: dict[str, int] = {}
    for line in (_read(directory, name) or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _omit(d: dict, *keep: str) -> dict:
    """Go's omitempty: zero numbers, empty strings and lists go, except the fields in keep."""
    return {k: v for k, v in d.items() if k in keep or v not in (0, "", [], None, {})}


def _cpu_list(text: str | None) -> list[int]:
    out: list[int] = []
    for part in (text or "").strip().split(","):
        if "-" in part:
            lo, hi = part.split("-")
            out.extend(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    return out


def _mem_entry(limit: int, usage: int = 0, max_: int = 0, failcnt: int = 0) -> dict:
    return _omit({"limit": limit, "usage": usage, "max": max_, "failcnt": failcnt},
                 "limit", "failcnt")


def _blkio_entries(text: str | None) -> list[dict]:
    out = []
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue  # the "Total" line
        major, minor = parts[0].split(":")
        out.append(_omit({"major": int(major), "minor": int(minor), "op": parts[1],
                          "value": int(parts[2])}))
    return out


def _empty() -> dict:
    return {"cpu": {"usage": {"kernel": 0, "user": 0}, "throttling": {}}, "cpuset": {},
            "memory": {"usage": _mem_entry(0), "swap": _mem_entry(0), "kernel": _mem_entry(0),
                       "kernelTCP": _mem_entry(0)},
            "pids": {}, "blkio": {}, "hugetlb": {}, "intel_rdt": {}, "network_interfaces": None}


def _throttling(stat: dict[str, int], time_scale: int, time_key: str) -> dict:
    return _omit({"periods": stat.get("nr_periods", 0),
                  "throttledPeriods": stat.get("nr_throttled", 0),
                  "throttledTime": stat.get(time_key, 0) * time_scale})


def _cpuset(directory: str | None, cpus: str, mems: str, extra: bool) -> dict:
    if directory is None:
        return {}
    data = _omit({"cpus": _cpu_list(_read(directory, cpus)), "mems": _cpu_list(_read(directory, mems))})
    if extra:
        for name in ("cpu_exclusive", "mem_hardwall", "mem_exclusive", "memory_migrate",
                     "memory_spread_page", "memory_spread_slab", "memory_pressure",
                     "sched_load_balance", "sched_relax_domain_level"):
            data[name] = _int(directory, "cpuset." + name)
    return data


def v1_stats(owners: dict[str, str], paths: dict[str, str]) -> dict:
    """owners: v1 controller -> hierarchy key; paths: hierarchy key -> directory."""
    def where(ctrl: str) -> str | None:
        return paths[owners[ctrl]] if ctrl in owners else None
    data = _empty()
    acct = where("cpuacct")
    if acct:
        ticks = _keyed(acct, "cpuacct.stat")
        usage: dict = {"total": _int(acct, "cpuacct.usage"),
                       "percpu": [int(x) for x in
                                  (_read(acct, "cpuacct.usage_percpu") or "").split()],
                       "percpu_kernel": [], "percpu_user": [],
                       "kernel": ticks.get("system", 0) * _NS_PER_TICK,
                       "user": ticks.get("user", 0) * _NS_PER_TICK}
        for line in (_read(acct, "cpuacct.usage_all") or "").splitlines()[1:]:
            _cpu, user, system = line.split()
            usage["percpu_user"].append(int(user))
            usage["percpu_kernel"].append(int(system))
        data["cpu"]["usage"] = _omit(usage, "kernel", "user")
    data["cpu"]["throttling"] = _throttling(_keyed(where("cpu"), "cpu.stat"), 1, "throttled_time")
    data["cpuset"] = _cpuset(where("cpuset"), "cpuset.cpus", "cpuset.mems", True)
    mem = where("memory")
    if mem:
        raw = _keyed(mem, "memory.stat")
        m: dict = {"cache": raw.get("cache", 0)}
        for key, prefix in (("usage", "memory."), ("swap", "memory.memsw."),
                            ("kernel", "memory.kmem."), ("kernelTCP", "memory.kmem.tcp.")):
            m[key] = _mem_entry(_int(mem, prefix + "limit_in_bytes"), _int(mem, prefix + "usage_in_bytes"),
                                _int(mem, prefix + "max_usage_in_bytes"), _int(mem, prefix + "failcnt"))
        m["raw"] = raw
        data["memory"] = _omit(m, "usage", "swap", "kernel", "kernelTCP")
    pids = where("pids")
    if pids:
        data["pids"] = _omit({"current": _int(pids, "pids.current"),
                              "limit": _pids_limit(_read(pids, "pids.max"))})
    blk = where("blkio")
    if blk:
        data["blkio"] = _v1_blkio(blk)
    huge = where("hugetlb")
    if huge:
        data["hugetlb"] = {size: _omit({"usage": _int(huge, f"hugetlb.{size}.usage_in_bytes"),
                                        "max": _int(huge, f"hugetlb.{size}.max_usage_in_bytes"),
                                        "failcnt": _int(huge, f"hugetlb.{size}.failcnt")}, "failcnt")
                           for size in _page_sizes(huge, ".limit_in_bytes")}
    return data


def _pids_limit(text: str | None) -> int:
    text = (text or "").strip()
    return int(text) if text.isdigit() else 0   # "max": unlimited, reported as 0


def _v1_blkio(directory: str) -> dict:
    """CFQ's recursive files when they have data, else BFQ's, else the throttle counters."""
    names = (("ioServiceBytesRecursive", "io_service_bytes_recursive"),
             ("ioServicedRecursive", "io_serviced_recursive"),
             ("ioQueueRecursive", "io_queued_recursive"),
             ("ioServiceTimeRecursive", "io_service_time_recursive"),
             ("ioWaitTimeRecursive", "io_wait_time_recursive"),
             ("ioMergedRecursive", "io_merged_recursive"),
             ("ioTimeRecursive", "time_recursive"),
             ("sectorsRecursive", "sectors_recursive"))
    for prefix in ("blkio.", "blkio.bfq."):
        got = {key: _blkio_entries(_read(directory, prefix + name)) for key, name in names}
        if got["ioServiceBytesRecursive"]:
            return _omit(got)
    return _omit({"ioServiceBytesRecursive": _blkio_entries(
                      _read(directory, "blkio.throttle.io_service_bytes_recursive")),
                  "ioServicedRecursive": _blkio_entries(
                      _read(directory, "blkio.throttle.io_serviced_recursive"))})


def _page_sizes(directory: str, suffix: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted({n[len("hugetlb."):-len(suffix)] for n in names
                   if n.startswith("hugetlb.") and n.endswith(suffix) and n.count(".") == 2})


def v2_hugetlb(directory: str) -> dict:
    return {size: _omit({"usage": _int(directory, f"hugetlb.{size}.current"),
                         "max": 0,
                         "failcnt": _keyed(directory, f"hugetlb.{size}.events").get("max", 0)},
                        "failcnt")
            for size in _page_sizes(directory, ".max")}


def v2_stats(directory: str) -> dict:
    data = _empty()
    cpu = _keyed(directory, "cpu.stat")
    data["cpu"]["usage"] = _omit({"total": cpu.get("usage_usec", 0) * 1000,
                                  "kernel": cpu.get("system_usec", 0) * 1000,
                                  "user": cpu.get("user_usec", 0) * 1000}, "kernel", "user")
    data["cpu"]["throttling"] = _throttling(cpu, 1000, "throttled_usec")
    data["cpuset"] = _cpuset(directory, "cpuset.cpus.effective", "cpuset.mems.effective", False)
    if _read(directory, "memory.current") is not None:
        raw = _keyed(directory, "memory.stat")
        events = _keyed(directory, "memory.events")
        usage = _mem_entry(_int(directory, "memory.max"), _int(directory, "memory.current"),
                           _int(directory, "memory.peak"), events.get("max", 0))
        swap_limit = _int(directory, "memory.swap.max")
        # v1 reports memory+swap as "swap"; runc adds the two on v2 to keep that meaning.
        swap = _mem_entry(swap_limit if swap_limit == _UNLIMITED else
                          swap_limit + usage.get("limit", 0),
                          _int(directory, "memory.swap.current") + usage.get("usage", 0))
        data["memory"] = _omit({"cache": raw.get("file", 0), "usage": usage, "swap": swap,
                                "kernel": _mem_entry(0), "kernelTCP": _mem_entry(0), "raw": raw},
                               "usage", "swap", "kernel", "kernelTCP")
    if _read(directory, "pids.current") is not None:
        data["pids"] = _omit({"current": _int(directory, "pids.current"),
                              "limit": _pids_limit(_read(directory, "pids.max"))})
    io_bytes: list[dict] = []
    io_ops: list[dict] = []
    for line in (_read(directory, "io.stat") or "").splitlines():
        dev, *pairs = line.split()
        major, minor = (int(x) for x in dev.split(":"))
        values = dict(p.split("=", 1) for p in pairs if "=" in p)
        for key, op, into in (("rbytes", "Read", io_bytes), ("wbytes", "Write", io_bytes),
                              ("dbytes", "Discard", io_bytes), ("rios", "Read", io_ops),
                              ("wios", "Write", io_ops), ("dios", "Discard", io_ops)):
            if key in values:
                into.append(_omit({"major": major, "minor": minor, "op": op,
                                   "value": int(values[key])}))
    data["blkio"] = _omit({"ioServiceBytesRecursive": io_bytes, "ioServicedRecursive": io_ops})
    data["hugetlb"] = v2_hugetlb(directory)
    return data
