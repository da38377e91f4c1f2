"""User namespaces: checking the mappings, writing them for the child, rootless rules, and the
throwaway namespaces that idmapped mounts are made with.

Who does what (runc's split): the intermediate unshares CLONE_NEWUSER and asks; the parent, still
in the host's namespace with the caller's privileges, writes setgroups/uid_map/gid_map of that
child; only then does the child become root in it and unshare the rest, so every other namespace
is owned by the new user namespace.
"""

from __future__ import annotations

import errno

from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc import linux
from pyrunc.errors import ConfigError


def is_rootless() -> bool:
    """runc's RootlessEUID: the runtime itself runs without root (its own uid gets mapped)."""
    return os.geteuid() != 0


def parse_rootless_flag(value: str | None) -> bool:
    """--rootless: "true"/"false" (Go's ParseBool spellings) or "auto" (default: not root)."""
    if value is None or value in ("", "auto"):
        return is_rootless()
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ConfigError(f"--rootless: invalid value {value!r} (want true, false or auto)")


def format_map(mappings: list[dict]) -> bytes:
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings).encode()


def maps_id(mappings: list[dict], container_id: int) -> bool:
    return any(m["containerID"] <= container_id < m["containerID"] + m["size"] for m in mappings)


def namespace_entry(cfg: dict) -> dict | None:
    for ns in (cfg.get("linux") or {}).get("namespaces") or []:
        if ns.get("type") == "user":
            return ns
    return None


def check_config(cfg: dict) -> None:
    """Everything about user namespaces that can be refused before anything exists."""
    linux_cfg = cfg.get("linux") or {}
    uids, gids = linux_cfg.get("uidMappings") or [], linux_cfg.get("gidMappings") or []
    ns = namespace_entry(cfg)
    rootless = is_rootless()
    if ns is None:
        if uids or gids:
            raise ConfigError("config.json: /linux/uidMappings: user namespace mappings specified, "
                              "but user namespace isn't enabled in the config")
        if rootless:
            raise ConfigError("config.json: /linux/namespaces: rootless container requires user "
                              "namespaces")
    elif not ns.get("path"):
        if not uids and not gids:
            raise ConfigError("config.json: /linux/namespaces: user namespaces enabled, but no "
                              "namespace path to join nor mappings to apply specified")
        for field, maps in (("uidMappings", uids), ("gidMappings", gids)):
            if not maps:
                raise ConfigError(f"config.json: /linux/{field}: a new user namespace needs both "
                                  "uidMappings and gidMappings")
            if not maps_id(maps, 0):
                raise ConfigError(f"config.json: /linux/{field}: user namespaces enabled, but no "
                                  "root user mapping found (container id 0 must be mapped)")
        user = (cfg.get("process") or {}).get("user") or {}
        if not maps_id(uids, int(user.get("uid", 0))):
            raise ConfigError(f"config.json: /process/user/uid: cannot setuid to unmapped uid "
                              f"{user.get('uid')} in user namespace")
        for where, gid in [("gid", user.get("gid", 0))] + [
                (f"additionalGids/{i}", g) for i, g in enumerate(user.get("additionalGids") or [])]:
            if not maps_id(gids, int(gid)):
                raise ConfigError(f"config.json: /process/user/{where}: cannot setgid to unmapped "
                                  f"gid {gid} in user namespace")
        check_mount_ids(cfg.get("mounts") or [], uids, gids)
    if rootless and ((cfg.get("process") or {}).get("user") or {}).get("additionalGids"):
        raise ConfigError("config.json: /process/user/additionalGids: cannot set any additional "
                          "groups in a rootless container")
    check_idmapped_mounts(cfg, ns)


def check_mount_ids(mounts: list[dict], uids: list[dict], gids: list[dict]) -> None:
    """uid=/gid= mount options name ids inside the namespace: unmapped ones make mount(2) fail
    with a bare EINVAL, so say which option and why (runc checks this for rootless only)."""
    for i, entry in enumerate(mounts):
        for opt in entry.get("options") or []:
            key, sep, value = opt.partition("=")
            if (sep and key in ("uid", "gid") and value.isdigit()
                    and not maps_id(uids if key == "uid" else gids, int(value))):
                raise ConfigError(f"config.json: /mounts/{i} ({entry.get('destination')}): "
                                  f"cannot specify {opt} mount option: {key} {value} is not "
                                  f"mapped in linux.{key}Mappings")


def idmap_kind(entry: dict) -> str | None:
    """"idmap", "ridmap" or None: mappings given without either option mean "idmap" (runc)."""
    opts = entry.get("options") or []
    if "ridmap" in opts:
        return "ridmap"
    if "idmap" in opts or entry.get("uidMappings") or entry.get("gidMappings"):
        return "idmap"
    return None


def check_idmapped_mounts(cfg: dict, ns: dict | None) -> None:
    for i, entry in enumerate(cfg.get("mounts") or []):
        if idmap_kind(entry) is None:
            continue
        where = f"config.json: /mounts/{i} ({entry.get('destination')})"
        opts = entry.get("options") or []
        if "bind" not in opts and "rbind" not in opts and entry.get("type") != "bind":
            raise ConfigError(f"{where}: id-mapped mounts are only supported for bind-mounts")
        if is_rootless():
            raise ConfigError(f"{where}: id-mapped mounts are not supported for rootless "
                              "containers")
        if not entry.get("uidMappings") and ns is None:
            raise ConfigError(f"{where}: idmap without uidMappings/gidMappings needs the "
                              "container's user namespace, and there is none")


# --- the parent's side: maps for the intermediate ------------------------------------------
def write_proc(pid: int, name: str, data: bytes, field: str) -> None:
    path = f"/proc/{pid}/{name}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            if linux.fstatfs_type(fd) != linux.PROC_SUPER_MAGIC:  # CVE-2019-16884 class
                raise OSError(errno.EXDEV, "not on procfs, refusing to write")
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(f"{field}: writing {path}: {reason}") from None


def write_maps(pid: int, uids: list[dict], gids: list[dict]) -> None:
    """setgroups, uid_map, gid_map of the child's fresh user namespace (runc's rules).

    Root writes the maps and leaves setgroups allowed. A non-root caller may write only its own
    id (size 1), and gid_map only once setgroups is denied: "deny" is written when the gid map
    is exactly that; any wider map goes through the setuid newuidmap/newgidmap (its ranges
    come from /etc/subuid and /etc/subgid), which the kernel lets keep setgroups allowed.
    """
    rootless = is_rootless()
    if rootless and gids == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]:
        write_proc(pid, "setgroups", b"deny", "linux.gidMappings")
    for name, maps, tool, field in (("uid_map", uids, "newuidmap", "linux.uidMappings"),
                                    ("gid_map", gids, "newgidmap", "linux.gidMappings")):
        if not rootless or len(maps) == 1 and maps[0]["size"] == 1 and maps[0]["hostID"] == (
                os.geteuid() if name == "uid_map" else os.getegid()):
            write_proc(pid, name, format_map(maps), field)
        else:
            run_mapping_tool(tool, pid, maps, field)


def find_program(name: str) -> str | None:
    """A PATH lookup without shutil (which pulls re and fnmatch onto the create path)."""
    for directory in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def run_mapping_tool(tool: str, pid: int, maps: list[dict], field: str) -> None:
    path = find_program(tool)
    if path is None:
        raise ConfigError(f"{field}: an unprivileged user can map only its own id "
                          f"({os.geteuid()}:{os.getegid()}, size 1) without {tool}, which is "
                          "not installed (Debian: uidmap)")
    argv = [tool, str(pid)] + [str(m[k]) for m in maps for k in ("containerID", "hostID", "size")]
    err_r, err_w = os.pipe()
    try:
        child = os.posix_spawn(path, argv, dict(os.environ),
                               file_actions=[(os.POSIX_SPAWN_DUP2, err_w, 2),
                                             (os.POSIX_SPAWN_CLOSE, err_r)])
    finally:
        os.close(err_w)
    try:
        text = b""
        while chunk := os.read(err_r, 4096):
            text += chunk
    finally:
        os.close(err_r)
    status = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    if status != 0:
        said = text.decode(errors="replace").strip().splitlines()
        raise ConfigError(f"{field}: {' '.join(argv)} failed (exit {status})"
                          + (f": {said[-1]}" if said else "")
                          + f"; /etc/sub{'u' if tool == 'newuidmap' else 'g'}id must grant "
                          "these ids to this user")


def become_root() -> None:
    """After entering a user namespace: be its root (uid/gid 0 mapped), as runc's nsexec does,
    so files made while building the rootfs belong to the container's root."""
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError as exc:
        raise OSError(exc.errno, "becoming root in the user namespace (is container id 0 "
                      f"mapped?): {exc.strerror}") from None


def check_joined_maps(uids: list[dict], gids: list[dict]) -> None:
    """A joined user namespace and configured mappings must agree (runc's rule)."""
    for name, want in (("uid_map", uids), ("gid_map", gids)):
        if not want:
            continue
        with open(f"/proc/self/{name}", "rb") as f:
            have = sorted(tuple(int(x) for x in line.split()) for line in f.read().splitlines())
        wanted = sorted((m["containerID"], m["hostID"], m["size"]) for m in want)
        if have != wanted:
            raise OSError(errno.EINVAL, "user namespaces enabled, but both namespace path and "
                          "non-matching mapping specified -- you may only provide one")


# --- idmapped mounts: a user namespace that only carries a mapping -------------------------
def mapping_userns(uids: list[dict], gids: list[dict]) -> int:
    """An fd of a new user namespace with these maps, for mount_setattr(MOUNT_ATTR_IDMAP).

    A forked child unshares it and waits; we (host root) write its maps, open its ns file,
    and let it go: the namespace lives on through the fd. The child exits on EOF of its pipe,
    so nothing outlives us whatever happens.
    """
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_r)
            os.close(hold_w)
            linux.unshare(linux.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(hold_r, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError(errno.ECHILD, "creating a user namespace for an idmapped mount failed")
        write_proc(pid, "uid_map", format_map(uids), "mount uidMappings")
        write_proc(pid, "gid_map", format_map(gids), "mount gidMappings")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(hold_w)
        os.waitpid(pid, 0)
