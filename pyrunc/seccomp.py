"""linux.seccomp through a small ctypes binding of libseccomp (2.5.x).

Split in three so that nothing fails late:
  check(cfg)      pure validation, no library: called from config.check_semantics.
  compile(cfg)    in the parent, before fork: builds the libseccomp filter context (every name
                  resolved, every rule added). The context is plain memory, so the forked init
                  inherits it without needing the library file after pivot_root.
  load(filter)    in the container process, right before execve: seccomp_load and, for
                  SCMP_ACT_NOTIFY with a listenerPath, the notify fd handed to the listener.

Not `pyseccomp`: its import costs ~22 ms on every create. ctypes itself (~6 M instructions) is
imported on first use, by a config that has a filter: the others never load it.
"""

from __future__ import annotations

import _socket
import errno as _errno

from pyrunc import jsonlite
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.errors import ConfigError

LIBRARY = "libseccomp.so.2"

# Actions (seccomp.h).
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_NOTIFY = 0x7FC00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000

ACTIONS = {
    "SCMP_ACT_KILL": ACT_KILL_THREAD, "SCMP_ACT_KILL_THREAD": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": ACT_KILL_PROCESS, "SCMP_ACT_TRAP": ACT_TRAP,
    "SCMP_ACT_ERRNO": _ACT_ERRNO, "SCMP_ACT_TRACE": _ACT_TRACE, "SCMP_ACT_ALLOW": ACT_ALLOW,
    "SCMP_ACT_LOG": ACT_LOG, "SCMP_ACT_NOTIFY": ACT_NOTIFY,
}
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
       "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}

# Filter attributes (enum scmp_filter_attr).
FLTATR_CTL_NNP = 3
FLTATR_CTL_TSYNC = 4
FLTATR_CTL_LOG = 6
FLTATR_CTL_SSB = 7
# Flags we apply, and the attribute that asks libseccomp for each.
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": FLTATR_CTL_TSYNC, "SECCOMP_FILTER_FLAG_LOG": FLTATR_CTL_LOG,
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW": FLTATR_CTL_SSB}
_UNSUPPORTED_FLAGS = {
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": "libseccomp 2.5.4 has no way to set it",
    "SECCOMP_FILTER_FLAG_NEW_LISTENER": "set by the runtime itself when SCMP_ACT_NOTIFY is used",
    "SECCOMP_FILTER_FLAG_TSYNC_ESRCH": "set by the runtime itself when needed",
}

# runtime-spec architecture names -> libseccomp's tokens (seccomp_arch_resolve_name).
ARCHES = {f"SCMP_ARCH_{name.upper()}": name for name in (
    "x86", "x86_64", "x32", "arm", "aarch64", "mips", "mips64", "mips64n32", "mipsel",
    "mipsel64", "mipsel64n32", "ppc", "ppc64", "ppc64le", "s390", "s390x", "parisc",
    "parisc64", "riscv64", "loongarch64", "m68k", "sh", "sheb")}

EPERM = _errno.EPERM


TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    from typing import Any

_lib = None
_ArgCmp: Any = object   # struct scmp_arg_cmp (a ctypes.Structure), made with the library binding


def _library() -> ctypes.CDLL:
    global _lib, _ArgCmp
    if _lib is None:
        import ctypes

        class ArgCmp(ctypes.Structure):
            """struct scmp_arg_cmp: unsigned int arg; enum scmp_compare op; uint64 datum_a,
            datum_b."""
            _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                        ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]
        try:
            lib = ctypes.CDLL(LIBRARY, use_errno=True)
        except OSError as exc:
            raise ConfigError(f"config.json: /linux/seccomp: cannot load {LIBRARY}: "
                              f"{exc}") from None
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_release.restype = None
        lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                               ctypes.c_uint, ctypes.POINTER(ArgCmp)]
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        lib.seccomp_notify_fd.argtypes = [ctypes.c_void_p]
        _lib, _ArgCmp = lib, ArgCmp
    return _lib


def _action(name: str, errno_ret: int | None, where: str) -> int:
    base = ACTIONS.get(name)
    if base is None:
        raise ConfigError(f"config.json: {where}: unknown seccomp action {name!r}")
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        return base | ((EPERM if errno_ret is None else int(errno_ret)) & 0xFFFF)
    if errno_ret is not None:
        # config-linux.md: an errno on an action that returns none must be an error (runc 1.1
        # drops it silently; the filter would then not do what the config says).
        field = "defaultErrnoRet" if where.endswith("/defaultAction") else "errnoRet"
        raise ConfigError(f"config.json: {where[:where.rindex('/')]}/{field}: {name} returns "
                          "no errno (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take one)")
    return base


def check(sc: dict | None) -> None:
    """Validate linux.seccomp without the library: actions, operators, flags, architectures."""
    if not sc:
        return
    base = "/linux/seccomp"
    _action(sc.get("defaultAction", ""), sc.get("defaultErrnoRet"), f"{base}/defaultAction")
    for i, arch in enumerate(sc.get("architectures") or []):
        if arch not in ARCHES:
            raise ConfigError(f"config.json: {base}/architectures/{i}: unknown architecture "
                              f"{arch!r}")
    for i, flag in enumerate(sc.get("flags") or []):
        if flag in FLAGS:
            continue
        why = _UNSUPPORTED_FLAGS.get(flag, "unknown flag")
        raise ConfigError(f"config.json: {base}/flags/{i}: seccomp flag {flag} is not "
                          f"supported ({why})")
    notify = sc.get("defaultAction") == "SCMP_ACT_NOTIFY"
    for i, rule in enumerate(sc.get("syscalls") or []):
        where = f"{base}/syscalls/{i}"
        _action(rule.get("action", ""), rule.get("errnoRet"), f"{where}/action")
        if rule.get("action") == "SCMP_ACT_NOTIFY":
            notify = True
            if "sendmsg" in (rule.get("names") or []):
                # The notify fd itself goes out with sendmsg, under the filter (runc refuses
                # `write` for the same reason): nobody could answer that notification.
                raise ConfigError(f"config.json: {where}/action: SCMP_ACT_NOTIFY cannot be "
                                  "used for sendmsg")
        for j, arg in enumerate(rule.get("args") or []):
            if arg.get("op") not in OPS:
                raise ConfigError(f"config.json: {where}/args/{j}/op: unknown seccomp operator "
                                  f"{arg.get('op')!r}")
            if not 0 <= int(arg.get("index", 0)) <= 5:
                raise ConfigError(f"config.json: {where}/args/{j}/index: must be 0 to 5")
    if sc.get("defaultAction") == "SCMP_ACT_NOTIFY":
        raise ConfigError(f"config.json: {base}/defaultAction: SCMP_ACT_NOTIFY cannot be the "
                          "default action (the runtime could not exec the process)")
    if notify and not sc.get("listenerPath"):
        raise ConfigError(f"config.json: {base}/listenerPath: required with SCMP_ACT_NOTIFY")


def _rules_for(rule: dict) -> list[list[tuple[int, int, int, int]]]:
    """The argument conditions of one config entry as libseccomp rules: all conditions in one
    rule (AND), unless one argument is compared twice, which libseccomp cannot hold in one rule:
    then one rule per condition (OR), as runc does."""
    conds = [(int(a.get("index", 0)), OPS[a["op"]], int(a.get("value", 0)),
              int(a.get("valueTwo", 0))) for a in rule.get("args") or []]
    indexes = [c[0] for c in conds]
    if len(set(indexes)) != len(indexes):
        return [[c] for c in conds]
    return [conds]


class Filter:
    """A built (not yet loaded) libseccomp context plus what loading it needs."""

    def __init__(self, ctx: int, notify: bool, listener_path: str, metadata: str) -> None:
        self.ctx = ctx
        self.notify = notify
        self.listener_path = listener_path
        self.metadata = metadata
        self.listener = -1  # connected socket, opened while the host is still reachable
        self.execveat = True  # the profile lets execveat through (exeguard's way in)

    def release(self) -> None:
        if self.ctx:
            _library().seccomp_release(self.ctx)
            self.ctx = 0


def compile(sc: dict) -> Filter:
    """Build the filter in the parent; ConfigError names the JSON path of what failed."""
    check(sc)
    lib = _library()
    base = "/linux/seccomp"
    default = _action(sc["defaultAction"], sc.get("defaultErrnoRet"), f"{base}/defaultAction")
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise ConfigError(f"config.json: {base}: seccomp_init failed")
    flt = Filter(ctx, False, sc.get("listenerPath") or "", sc.get("listenerMetadata") or "")
    from pyrunc.exeguard import allows
    flt.execveat = allows(sc, "execveat")
    try:
        # libseccomp would set no_new_privs on load by default: that is process.noNewPrivileges'
        # business (prepare_process), as with runc.
        if lib.seccomp_attr_set(ctx, FLTATR_CTL_NNP, 0) < 0:
            raise ConfigError(f"config.json: {base}: cannot clear libseccomp's NNP attribute")
        for i, arch in enumerate(sc.get("architectures") or []):
            token = lib.seccomp_arch_resolve_name(ARCHES[arch].encode())
            if token == 0:
                raise ConfigError(f"config.json: {base}/architectures/{i}: {arch} is not known "
                                  "to this libseccomp")
            rc = lib.seccomp_arch_add(ctx, token)
            if rc == -_errno.EDOM:
                raise ConfigError(f"config.json: {base}/architectures/{i}: {arch} cannot share "
                                  "a filter with this host's architecture (other endianness)")
            if rc < 0 and rc != -_errno.EEXIST:
                raise ConfigError(f"config.json: {base}/architectures/{i}: adding {arch}: "
                                  f"{os.strerror(-rc)}")
        for i, flag in enumerate(sc.get("flags") or []):
            rc = lib.seccomp_attr_set(ctx, FLAGS[flag], 1)
            if rc < 0:
                raise ConfigError(f"config.json: {base}/flags/{i}: {flag}: {os.strerror(-rc)}")
        for i, rule in enumerate(sc.get("syscalls") or []):
            where = f"{base}/syscalls/{i}"
            action = _action(rule["action"], rule.get("errnoRet"), f"{where}/action")
            if action == default:
                continue  # libseccomp refuses rules that repeat the default (runc skips them)
            if action == ACT_NOTIFY:
                flt.notify = True
            groups = _rules_for(rule)
            for name in rule.get("names") or []:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr == -1:
                    continue  # unknown to libseccomp: skipped, as runc does
                for conds in groups:
                    arr = (_ArgCmp * max(len(conds), 1))(*[_ArgCmp(*c) for c in conds])
                    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(conds), arr)
                    if rc < 0:
                        raise ConfigError(f"config.json: {where}: adding a rule for {name}: "
                                          f"{os.strerror(-rc)}")
    except BaseException:
        flt.release()
        raise
    return flt


def connect_listener(flt: Filter | None) -> None:
    """Connect to listenerPath while the host's filesystem is still reachable (before pivot)."""
    if flt is None or not flt.notify or not flt.listener_path:
        return
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        s.connect(flt.listener_path)
    except OSError as exc:
        s.close()
        raise OSError(exc.errno, f"connecting to the seccomp listener: {exc.strerror}",
                      flt.listener_path) from None
    flt.listener = s.detach()


def load(flt: Filter | None, state_json: bytes = b"") -> None:
    """seccomp_load, then hand the notify fd over; the last step before execve."""
    if flt is None:
        return
    lib = _library()
    rc = lib.seccomp_load(flt.ctx)
    if rc < 0:
        raise OSError(-rc, f"loading the seccomp filter: {os.strerror(-rc)}")
    if flt.listener < 0:
        return
    fd = lib.seccomp_notify_fd(flt.ctx)
    if fd < 0:
        raise OSError(-fd, f"getting the seccomp notify fd: {os.strerror(-fd)}")
    s = _socket.socket(fileno=flt.listener)
    try:
        s.sendmsg([state_json], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                  fd.to_bytes(4, "little"))])
    finally:
        s.close()
        os.close(fd)


def process_state(flt: Filter, container_id: str, pid: int, bundle: str, annotations: dict,
                  status: str, oci_version: str) -> bytes:
    """The runtime-spec's container process state, sent with the notify fd."""
    return jsonlite.dumps({
        "ociVersion": oci_version, "fds": ["seccompFd"], "pid": pid, "metadata": flt.metadata,
        "state": {"ociVersion": oci_version, "id": container_id, "status": status, "pid": pid,
                  "bundle": bundle, "annotations": annotations or {}},
    }).encode()


def _loadable_arches(lib: ctypes.CDLL) -> list[str]:
    """The architectures a filter built here can hold: known to this libseccomp and of the
    host's endianness (libseccomp refuses to mix them with EDOM)."""
    ctx = lib.seccomp_init(ACT_ALLOW)
    out = []
    try:
        for name, token in sorted(ARCHES.items()):
            number = lib.seccomp_arch_resolve_name(token.encode())
            if number and lib.seccomp_arch_add(ctx, number) in (0, -_errno.EEXIST):
                out.append(name)
    finally:
        lib.seccomp_release(ctx)
    return out


def features() -> dict:
    """`pyrunc features`' linux.seccomp entry, from the same tables the filter is built with."""
    try:
        lib = _library()
    except ConfigError:
        return {"enabled": False}
    return {
        "enabled": True,
        "actions": sorted(ACTIONS),
        "operators": sorted(OPS),
        "archs": _loadable_arches(lib),
        "knownFlags": sorted([*FLAGS, *_UNSUPPORTED_FLAGS]),
        "supportedFlags": sorted(FLAGS),
    }
