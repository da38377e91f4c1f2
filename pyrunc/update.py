"""`pyrunc update`: change a live container's cgroup limits, with runc's flags.

Either a resources document (`--resources FILE`, `--resources=FILE`, `--resources -` for stdin,
as docker sends it) or the individual flags; only what is given is written, through the same
translation as create (cgroup_resources.py), after the same schema check.
"""

from __future__ import annotations

from pyrunc import state
from pyrunc.cgroups import CgroupManager
from pyrunc.errors import ConfigError, InvalidState, NotSupported, PyruncError

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}

# flag destination -> (resources section, field, parser)
FLAGS = {
    "memory": ("memory", "limit", "bytes"), "memory_swap": ("memory", "swap", "bytes"),
    "memory_reservation": ("memory", "reservation", "bytes"),
    "kernel_memory": ("memory", "kernel", "bytes"), "kernel_memory_tcp": ("memory", "kernelTCP", "bytes"),
    "cpu_shares": ("cpu", "shares", "int"), "cpu_quota": ("cpu", "quota", "int"),
    "cpu_period": ("cpu", "period", "int"), "cpu_rt_runtime": ("cpu", "realtimeRuntime", "int"),
    "cpu_rt_period": ("cpu", "realtimePeriod", "int"), "cpu_idle": ("cpu", "idle", "int"),
    "cpuset_cpus": ("cpu", "cpus", "str"), "cpuset_mems": ("cpu", "mems", "str"),
    "pids_limit": ("pids", "limit", "int"), "blkio_weight": ("blockIO", "weight", "int"),
}


def parse_bytes(flag: str, text: str) -> int:
    """runc's sizes: a number with an optional k/m/g/t suffix (binary units); -1 is unlimited."""
    raw = text.strip().lower()
    if raw == "-1":
        return -1
    digits = raw.rstrip("kmgtb")
    unit = raw[len(digits):]
    try:
        return int(float(digits) * _UNITS[unit])
    except (KeyError, ValueError):
        raise PyruncError(f"--{flag.replace('_', '-')}: invalid size {text!r}") from None


def resources_from_flags(opts: dict) -> dict:
    for refused in ("l3_cache_schema", "mem_bw_schema"):
        if opts.get(refused):
            raise NotSupported(f"--{refused.replace('_', '-')}: Intel RDT is not supported")
    out: dict = {}
    for dest, (section, field, kind) in FLAGS.items():
        if opts.get(dest) is None:
            continue
        value = opts[dest]
        if kind == "bytes":
            value = parse_bytes(dest, value)
        elif kind == "int":
            try:
                value = int(value)
            except ValueError:
                raise PyruncError(f"--{dest.replace('_', '-')}: not a number: {value!r}") from None
        out.setdefault(section, {})[field] = value
    return out


def resources_from_file(path: str) -> dict:
    from pyrunc.config import parse_json, read_file
    label = f"--resources {path}"
    res = parse_json(read_file(path, label), label)
    if not isinstance(res, dict):
        raise ConfigError(f"{label}: expected a JSON object (linux.resources)")
    return res


def update(root: str, container_id: str, opts: dict) -> int:
    ctr = state.Container(root, container_id).load(lock=True)
    if ctr.status() == "stopped":
        raise InvalidState("cannot update a stopped container")
    res = resources_from_file(opts["resources"]) if opts.get("resources") else \
        resources_from_flags(opts)
    from pyrunc import schema
    schema.validate({"ociVersion": "1.0.0", "root": {"path": "/"}, "linux": {"resources": res}},
                    "config", opts.get("resources") or "update")
    cg = CgroupManager.from_state(ctr.data.get("cgroup", {}))
    devices = (ctr.config().get("linux") or {}).get("devices") or []
    warnings = cg.apply(res, devices, with_devices="devices" in res)
    if warnings:
        from pyrunc.log import Log
        for w in warnings:
            Log.warning(w)
    ctr.unlock()
    return 0
