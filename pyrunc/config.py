"""Read a bundle's config.json and refuse, in one line, anything we cannot honour."""

from __future__ import annotations

from pyrunc import jsonlite
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.errors import ConfigError, NotSupported

NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")


def check_oci_version(version: object) -> None:
    if not isinstance(version, str) or not version:
        raise ConfigError("config.json: /ociVersion: missing")
    major, _, rest = version.partition(".")
    minor = rest.partition(".")[0]
    if major != "1" or not minor.isdigit() or int(minor) > 3:
        raise ConfigError(f"config.json: /ociVersion: unsupported version {version!r} "
                          "(pyrunc supports 1.0.x to 1.3.x)")


def read_file(path: str, label: str) -> bytes:
    """A file's bytes ("-": standard input), or one line naming `label` and the OS error.
    Through posix: io's open and read cost 9 syscalls and a buffered reader where this takes 4
    (a directory fails at the read instead of the open, with the same EISDIR)."""
    try:
        if path == "-":
            import sys
            return sys.stdin.buffer.read()
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            # 64 KB at a time: a read of 1 MB makes its buffer with mmap (and the read at
            # end of file another one): 4 syscalls and a page fault more for every create.
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    except OSError as exc:
        text = exc.strerror or str(exc)
        raise ConfigError(f"{label}: {text[:1].lower()}{text[1:]}") from None


def parse_json(raw: bytes, label: str) -> object:
    try:
        doc = jsonlite.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{label}: invalid JSON: {exc}") from None
    if b"\\u0000" in raw:  # paths, args, env, names: no syscall can carry a NUL
        where = _nul_at(doc, "")
        if where is not None:
            raise ConfigError(f"{label}: {where or '/'}: contains a NUL character")
    return doc


def _nul_at(node: object, pointer: str) -> str | None:
    """The JSON pointer of the first string (or key) holding a NUL, else None."""
    if isinstance(node, str):
        return pointer if "\0" in node else None
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        here = f"{pointer}/{key}".replace("\0", "\\0")
        if isinstance(key, str) and "\0" in key:
            return here
        found = _nul_at(value, here)
        if found is not None:
            return found
    return None


def load_bundle(bundle: str) -> tuple[dict, bytes]:
    """(config, raw bytes) of <bundle>/config.json, validated; raw bytes are kept in the state dir."""
    path = os.path.join(bundle, "config.json")
    raw = read_file(path, path)
    cfg = parse_json(raw, "config.json")
    if not isinstance(cfg, dict):
        raise ConfigError("config.json: the document must be a JSON object")
    check_oci_version(cfg.get("ociVersion"))
    from pyrunc import schema
    schema.validate(cfg, "config", "config.json")
    check_semantics(cfg)
    return cfg, raw


def check_semantics(cfg: dict) -> None:
    """Rules a schema cannot say: duplicates, and fields only meaningful with a namespace."""
    linux = cfg.get("linux") or {}
    seen: set[str] = set()
    for i, ns in enumerate(linux.get("namespaces") or []):
        kind = ns.get("type")
        if kind in seen:
            raise ConfigError(f"config.json: /linux/namespaces/{i}: duplicate namespace {kind!r}")
        seen.add(kind)
        if ns.get("path") and not os.path.isabs(ns["path"]):
            raise ConfigError(f"config.json: /linux/namespaces/{i}/path: must be absolute")
    if "process" not in cfg:
        raise ConfigError("config.json: /process: required to create a container")
    if not (cfg.get("root") or {}).get("path"):
        raise ConfigError("config.json: /root/path: required to create a container")
    if not (cfg["process"].get("args") or []):
        raise ConfigError("config.json: /process/args: must name the program to run")
    cwd = cfg["process"].get("cwd")
    if cwd is not None and not cwd.startswith("/"):
        raise ConfigError(f"config.json: /process/cwd: {cwd!r} must be an absolute path")
    kinds: set[str] = set()
    for i, limit in enumerate(cfg["process"].get("rlimits") or []):
        if limit.get("type") in kinds:  # runtime-spec config.md: duplicates are an error
            raise ConfigError(f"config.json: /process/rlimits/{i}: duplicate rlimit type "
                              f"{limit.get('type')!r}")
        kinds.add(limit.get("type"))
    if linux.get("timeOffsets") and "time" not in seen:
        raise ConfigError("config.json: /linux/timeOffsets: needs a time namespace")
    from pyrunc import userns
    userns.check_config(cfg)
    for key in (linux.get("sysctl") or {}):
        check_sysctl(key, linux.get("namespaces") or [])
    from pyrunc import capabilities
    capabilities.parse(cfg["process"].get("capabilities"))
    if capabilities.NOT_GRANTABLE:
        from pyrunc.log import Log
        Log.warning(f"config.json: /process/capabilities: {', '.join(capabilities.NOT_GRANTABLE)} "
                    "not in the runtime's own bounding set: left out")
    if linux.get("seccomp"):   # seccomp.check has nothing to do otherwise: no import
        from pyrunc import seccomp
        seccomp.check(linux["seccomp"])
    if linux.get("netDevices"):
        from pyrunc import netdev
        netdev.check(cfg)
    from pyrunc import lsm
    lsm.check(cfg["process"], linux)
    refuse_unimplemented(cfg)


_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}


# Fields engines send on every container, which later issues implement: warned about, so the
# engines keep working meanwhile, but never dropped silently.
_WARN_NOT_ENFORCED: tuple[tuple[str, str], ...] = ()  # linux.resources: cgroups.apply
# Fields no engine here sends: refused until implemented.
_REFUSED = (("linux", "intelRdt"), ("linux", "personality"),
            ("linux", "memoryPolicy"), ("process", "ioPriority"), ("process", "scheduler"),
            ("process", "execCPUAffinity"))


def not_enforced(cfg: dict) -> list[str]:
    """Paths of fields present in cfg that pyrunc accepts but does not apply yet."""
    found = []
    for top, key in _WARN_NOT_ENFORCED:
        value = (cfg.get(top) or {}).get(key)
        if value:
            found.append(f"{top}.{key}")
    return found


def refuse_unimplemented(cfg: dict) -> None:
    for top, key in _REFUSED:
        if (cfg.get(top) or {}).get(key):
            raise NotSupported(f"config.json: /{top}/{key}: not supported yet")


def check_sysctl(key: str, namespaces: list[dict]) -> None:
    """Only sysctls scoped to a namespace the container owns may be set (runc's rule)."""
    kinds = {ns.get("type"): ns.get("path") for ns in namespaces}
    where = f"config.json: /linux/sysctl/{key}"
    if "/" in key or ".." in key.split("."):
        raise ConfigError(f"{where}: invalid sysctl name")
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        if "ipc" not in kinds:
            raise ConfigError(f"{where}: needs an ipc namespace")
        return
    if key.startswith("net."):
        if "network" not in kinds:
            raise ConfigError(f"{where}: not allowed in the host's network namespace")
        return
    if key in ("kernel.hostname", "kernel.domainname"):
        if "uts" not in kinds:
            raise ConfigError(f"{where}: needs a uts namespace")
        return
    raise ConfigError(f"{where}: not in a separate kernel namespace, refusing to change the host")


def rootfs_path(cfg: dict, bundle: str) -> str:
    """The rootfs directory with every symlink resolved, as the kernel resolves it: opened, then
    named by /proc/self/fd (three syscalls, and no posixpath.realpath, which imports os)."""
    path = cfg["root"]["path"]
    path = path if os.path.isabs(path) else os.path.join(bundle, path)
    try:
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except (OSError, ValueError):
        raise ConfigError(f"config.json: /root/path: {path}: no such directory") from None
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
