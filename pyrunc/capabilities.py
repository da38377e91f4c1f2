"""process.capabilities: all five sets, exactly as configured, across the switch of uid.

Everything goes through linux.py: prctl for the bounding set, keepcaps and ambient capabilities,
one capset(2) for the effective, permitted and inheritable sets (python-prctl did this through
libcap, at ~0.5 ms per call for loading the two libraries). Unknown names are configuration errors: runc and crun accept a bogus CAP_TEST, we
do not.
"""

from __future__ import annotations

from pyrunc import (
    errors,  # its classes are made on first use: errors.X at the raise sites
    linux,
)

# A /proc file through posix, without io's layers; the launcher has loaded it for create, run
# and exec (the keeper reads its /proc files with it).
from pyrunc.cgroup_keeper import read_all as _read

# Kernel numbering (include/uapi/linux/capability.h).
CAPS = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
        "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN",
        "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
        "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
        "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
        "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
        "PERFMON", "BPF", "CHECKPOINT_RESTORE")
NUMBER = {f"CAP_{name}": i for i, name in enumerate(CAPS)}
SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")

PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
_EINVAL = 22   # errno.EINVAL
PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2


_last_cap: list[int] = []


def last_cap() -> int:
    """The highest capability number this kernel knows, what /proc/sys/kernel/cap_last_cap
    says; found once per process (cached: it is also needed after the seccomp filter is
    loaded)."""
    if not _last_cap:
        try:
            _last_cap.append(_probe_last_cap())
        except OSError:   # prctl refused (a seccomp profile around us): the file says it
            try:
                _last_cap.append(int(_read("/proc/sys/kernel/cap_last_cap")))
            except (OSError, ValueError):
                _last_cap.append(len(CAPS) - 1)
    return _last_cap[0]


def _probe_last_cap(guess: int = len(CAPS) - 1) -> int:
    """PR_CAPBSET_READ refuses (EINVAL) exactly the numbers above the kernel's last capability:
    two prctl calls where the kernel knows `guess` last (a search otherwise), instead
    of opening a /proc/sys file, whose look-up a fresh process pays in the kernel (~0.1 ms
    here, on the way to the fork of exec, create and run). Raises OSError for any other
    refusal."""
    def known(cap: int) -> bool:
        try:
            linux.prctl(PR_CAPBSET_READ, cap)
        except OSError as exc:
            if exc.errno != _EINVAL:
                raise
            return False
        return True
    if known(guess) and not known(guess + 1):
        return guess
    low, high = 0, 63   # capability sets are 64 bits wide; 0 is always known
    while low < high:
        mid = (low + high + 1) // 2
        if known(mid):
            low = mid
        else:
            high = mid - 1
    return low


def parse(caps: dict | None, where: str = "config.json: /process/capabilities") -> dict[str, list[int]]:
    """Names -> numbers per set. No capabilities object grants nothing: every set is empty, as
    runc 1.1.5 runs it (measured: CapBnd 0 even for uid 0), never the runtime's own full set.
    Capabilities this kernel does not know are dropped from the sets, as runc does."""
    if caps is None:
        caps = {}
    top = last_cap()
    out: dict[str, list[int]] = {}
    for kind in SETS:
        numbers = []
        for i, name in enumerate(caps.get(kind) or []):
            if name not in NUMBER:
                raise errors.ConfigError(f"{where}/{kind}/{i}: unknown capability {name!r}")
            if NUMBER[name] <= top:
                numbers.append(NUMBER[name])
        out[kind] = sorted(set(numbers))
    # The kernel only lets a capability be ambient while it is permitted and inheritable. runc's
    # own starter config asks for ambient capabilities without inheritable ones, and runc runs it
    # with an empty ambient set; we do the same rather than refuse that config.
    allowed = set(out["permitted"]) & set(out["inheritable"])
    out["ambient"] = [c for c in out["ambient"] if c in allowed]
    return only_grantable(out)


_held: list[set[int]] = []
# Names dropped by the last parse() because the runtime itself lacks them (see only_grantable).
NOT_GRANTABLE: list[str] = []


def held_bounding() -> set[int]:
    """The runtime's own bounding set: nothing outside it can be handed to a container. Read
    from our CapBnd line (one read, where PR_CAPBSET_READ is one ctypes call per capability:
    ~0.5 M instructions before create's fork); the prctl loop only if that line is missing."""
    if not _held:
        mask = -1
        try:
            status = _read("/proc/self/status")
            at = status.find(b"\nCapBnd:")
            if at >= 0:
                mask = int(status[at + 8:status.index(b"\n", at + 8)], 16)
        except (OSError, ValueError):
            pass
        top = last_cap()
        if mask < 0:
            _held.append({c for c in range(top + 1) if linux.prctl(PR_CAPBSET_READ, c) == 1})
        else:
            _held.append({c for c in range(top + 1) if mask >> c & 1})
    return _held[0]


def only_grantable(sets: dict[str, list[int]]) -> dict[str, list[int]]:
    """runtime-spec config.md: a capability that cannot be granted is a warning, and runtimes
    SHOULD NOT fail (e.g. CAP_SYS_RESOURCE on a host whose root lacks it). The container gets the
    rest; the caller warns with NOT_GRANTABLE."""
    held = held_bounding()
    missing = sorted({c for kind in SETS for c in sets[kind]} - held)
    NOT_GRANTABLE[:] = [f"CAP_{CAPS[c]}" for c in missing]
    if missing:
        sets = {kind: [c for c in sets[kind] if c in held] for kind in SETS}
    return sets


def drop_bounding(sets: dict[str, list[int]]) -> None:
    keep = set(sets["bounding"])
    for cap in range(last_cap() + 1):
        if cap not in keep:
            linux.prctl(PR_CAPBSET_DROP, cap)


def keep_caps(on: bool) -> None:
    linux.prctl(PR_SET_KEEPCAPS, 1 if on else 0)


def apply_sets(sets: dict[str, list[int]], ambient: bool = True) -> None:
    """Effective, permitted and inheritable in one capset, then ambient raised one by one."""
    try:
        linux.capset(*(sum(1 << c for c in set(sets[kind]))
                       for kind in ("effective", "permitted", "inheritable")))
    except OSError as exc:
        raise OSError(exc.errno, f"unable to apply caps: {exc.strerror}") from None
    for cap in sets["ambient"] if ambient else ():
        try:
            linux.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)
        except OSError as exc:
            raise OSError(exc.errno, f"unable to raise ambient capability CAP_{CAPS[cap]} (it must "
                          f"be permitted and inheritable): {exc.strerror}") from None
