"""`pyrunc spec`: the starter config.json, the same defaults runc's `spec` gives."""

from __future__ import annotations

import json
import os

from pyrunc.errors import PyruncError

_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
_MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
           "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
           "/proc/scsi"]
_READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def _mount(dest: str, kind: str, source: str, options: list[str] | None = None) -> dict:
    m: dict = {"destination": dest, "type": kind, "source": source}
    if options:
        m["options"] = options
    return m


def default_spec(rootless: bool = False) -> dict:
    spec: dict = {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(_CAPS) for k in ("bounding", "effective", "permitted",
                                                      "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pyrunc",
        "mounts": [
            _mount("/proc", "proc", "proc"),
            _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
            _mount("/dev/pts", "devpts", "devpts", ["nosuid", "noexec", "newinstance",
                                                    "ptmxmode=0666", "mode=0620", "gid=5"]),
            _mount("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777",
                                               "size=65536k"]),
            _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
            _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
            _mount("/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime",
                                                          "ro"]),
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": list(_MASKED),
            "readonlyPaths": list(_READONLY),
        },
    }
    if rootless:
        # No device cgroup, no network namespace (it would have no usable interface), the
        # host's /sys bound in, and the caller's own ids mapped to root.
        linux = spec["linux"]
        del linux["resources"]
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getgid(), "size": 1}]
        linux["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "user")]
        spec["mounts"][5] = _mount("/sys", "none", "/sys",
                                   ["rbind", "nosuid", "noexec", "nodev", "ro"])
        for m in spec["mounts"]:
            if m["destination"] == "/dev/pts":
                m["options"].remove("gid=5")
    return spec


def write_spec(bundle: str, rootless: bool = False) -> str:
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise PyruncError(f"File {path} exists. Remove it first")
    with open(path, "x") as f:
        f.write(json.dumps(default_spec(rootless), indent="\t"))
    return path
