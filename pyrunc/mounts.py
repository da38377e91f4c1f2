"""config.json mounts: option parsing (pure) and attaching each mount through fds.

Binds use open_tree(OPEN_TREE_CLONE) + mount_setattr + move_mount and filesystems use
fsopen/fsconfig/fsmount + move_mount, so every attribute (ro, nosuid, ...) is set on the detached
mount before it appears in the container, and the target is an fd resolved inside the rootfs:
no remount-by-path window, no string join with a container path.
"""

from __future__ import annotations

from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc import linux, saferoot
from pyrunc.errors import ConfigError, NotSupported

L = linux

# option -> (attr_set, attr_clr) on the mount (see mount_setattr(2)).
_ATTRS: dict[str, tuple[int, int]] = {
    "ro": (L.MOUNT_ATTR_RDONLY, 0), "rw": (0, L.MOUNT_ATTR_RDONLY),
    "nosuid": (L.MOUNT_ATTR_NOSUID, 0), "suid": (0, L.MOUNT_ATTR_NOSUID),
    "nodev": (L.MOUNT_ATTR_NODEV, 0), "dev": (0, L.MOUNT_ATTR_NODEV),
    "noexec": (L.MOUNT_ATTR_NOEXEC, 0), "exec": (0, L.MOUNT_ATTR_NOEXEC),
    "noatime": (L.MOUNT_ATTR_NOATIME, L.MOUNT_ATTR__ATIME),
    "strictatime": (L.MOUNT_ATTR_STRICTATIME, L.MOUNT_ATTR__ATIME),
    "relatime": (L.MOUNT_ATTR_RELATIME, L.MOUNT_ATTR__ATIME),
    # Clearing one atime mode falls back to the kernel's default, relatime.
    "atime": (L.MOUNT_ATTR_RELATIME, L.MOUNT_ATTR__ATIME),
    "norelatime": (L.MOUNT_ATTR_RELATIME, L.MOUNT_ATTR__ATIME),
    "nostrictatime": (L.MOUNT_ATTR_RELATIME, L.MOUNT_ATTR__ATIME),
    "nodiratime": (L.MOUNT_ATTR_NODIRATIME, 0), "diratime": (0, L.MOUNT_ATTR_NODIRATIME),
    "nosymfollow": (L.MOUNT_ATTR_NOSYMFOLLOW, 0), "symfollow": (0, L.MOUNT_ATTR_NOSYMFOLLOW),
}
# Superblock flags: for new filesystems they go through fsconfig; a bind shares its superblock.
_SB_FLAGS = {"sync", "async", "dirsync", "mand", "nomand", "lazytime", "nolazytime"}
_IGNORED = {"silent", "loud", "defaults"}
_PROPAGATION: dict[str, tuple[int, bool]] = {
    "private": (L.MS_PRIVATE, False), "rprivate": (L.MS_PRIVATE, True),
    "shared": (L.MS_SHARED, False), "rshared": (L.MS_SHARED, True),
    "slave": (L.MS_SLAVE, False), "rslave": (L.MS_SLAVE, True),
    "unbindable": (L.MS_UNBINDABLE, False), "runbindable": (L.MS_UNBINDABLE, True),
}
_LATER = {"remount"}
_IDMAP = {"idmap", "ridmap"}


class MountPlan:
    """What one config.json mount asks for, once its options are understood."""

    def __init__(self, destination: str, source: str, fstype: str, bind: bool = False,
                 recursive: bool = False, attr_set: int = 0, attr_clr: int = 0,
                 data: list[tuple[str, str | None]] | None = None) -> None:
        self.destination = destination
        self.source = source
        self.fstype = fstype
        self.bind = bind
        self.recursive = recursive
        self.attr_set = attr_set
        self.attr_clr = attr_clr
        self.rec_attr_set = 0
        self.rec_attr_clr = 0
        self.propagation: list[tuple[int, bool]] = []   # (MS_* flag, recursive)
        self.sb_flags: list[str] = []                   # superblock flags for fsconfig
        self.data: list[tuple[str, str | None]] = data or []
        self.copy_up = False                            # runc's tmpcopyup
        self.idmap: str | None = None                   # "idmap" or "ridmap" (recursive)
        self.mfd = -1          # a detached clone made before the user namespace (premount_binds)


def parse_mount(entry: dict, index: int, bundle: str) -> MountPlan:
    where = f"mounts[{index}]"
    dest = entry.get("destination", "")
    if not dest.startswith("/"):
        # runc resolves relative destinations against "/"; the spec says they SHOULD be absolute.
        dest = "/" + dest
    plan = MountPlan(dest, entry.get("source") or "", entry.get("type") or "")
    for opt in entry.get("options") or []:
        if "=" in opt:   # the else below at once (no option known by name has one): mode=...
            key, sep, value = opt.partition("=")
            plan.data.append((key, value if sep else None))
        elif opt in ("bind", "rbind"):
            plan.bind = True
            plan.recursive = plan.recursive or opt == "rbind"
        elif opt in _ATTRS:
            s, c = _ATTRS[opt]
            plan.attr_set = (plan.attr_set & ~c) | s
            plan.attr_clr = (plan.attr_clr | c) & ~s if s else plan.attr_clr | c
        elif opt.startswith("r") and opt[1:] in _ATTRS:
            s, c = _ATTRS[opt[1:]]
            plan.rec_attr_set = (plan.rec_attr_set & ~c) | s
            plan.rec_attr_clr = (plan.rec_attr_clr | c) & ~s if s else plan.rec_attr_clr | c
        elif opt in _PROPAGATION:
            plan.propagation.append(_PROPAGATION[opt])
        elif opt in _SB_FLAGS:
            plan.sb_flags.append(opt)
        elif opt in _IGNORED:
            continue
        elif opt == "tmpcopyup":
            plan.copy_up = True
        elif opt in _IDMAP:
            plan.idmap = "ridmap" if "ridmap" in (plan.idmap, opt) else "idmap"
        elif opt in _LATER:
            raise NotSupported(f"{where} ({dest}): mount option {opt!r} is not supported yet")
        else:
            key, sep, value = opt.partition("=")
            plan.data.append((key, value if sep else None))
    if plan.fstype == "bind":
        plan.bind = True
    if plan.idmap is None and (entry.get("uidMappings") or entry.get("gidMappings")):
        plan.idmap = "idmap"  # mappings without the option: runc maps the top mount
    if plan.idmap and not plan.bind:
        raise ConfigError(f"{where} ({dest}): id-mapped mounts are only supported for bind-mounts")
    if plan.copy_up and (plan.bind or plan.fstype != "tmpfs"):
        raise ConfigError(f"{where} ({dest}): tmpcopyup only applies to tmpfs mounts")
    if plan.bind:
        src = plan.source
        if not src:
            raise ConfigError(f"{where} ({dest}): a bind mount needs a source")
        plan.source = src if src.startswith("/") else os.path.join(bundle, src)
    elif not plan.fstype or plan.fstype == "none":
        raise ConfigError(f"{where} ({dest}): mount type is missing and it is not a bind mount")
    # The attributes of the top mount must win over the recursive ones set before them.
    plan.attr_clr &= ~plan.attr_set
    # mount_setattr takes an atime mode only with the whole atime field in attr_clr (EINVAL
    # otherwise): "strictatime" or "noatime" on a bind failed before this.
    for name in ("attr", "rec_attr"):
        if (getattr(plan, name + "_set") | getattr(plan, name + "_clr")) & L.MOUNT_ATTR__ATIME:
            setattr(plan, name + "_clr", getattr(plan, name + "_clr") | L.MOUNT_ATTR__ATIME)
    return plan


def _finish(mfd: int, plan: MountPlan, target_fd: int) -> None:
    """Attach a detached mount at the target and apply what can only be set once attached."""
    if plan.rec_attr_set or plan.rec_attr_clr:
        linux.mount_setattr(mfd, "", linux.AT_EMPTY_PATH | linux.AT_RECURSIVE,
                            plan.rec_attr_set, plan.rec_attr_clr)
    if plan.attr_set or plan.attr_clr:
        linux.mount_setattr(mfd, "", linux.AT_EMPTY_PATH, plan.attr_set, plan.attr_clr)
    linux.move_mount(mfd, "", target_fd, "",
                     linux.MOVE_MOUNT_F_EMPTY_PATH | linux.MOVE_MOUNT_T_EMPTY_PATH)
    for flag, recursive in plan.propagation:
        linux.mount_setattr(mfd, "", linux.AT_EMPTY_PATH | (linux.AT_RECURSIVE if recursive else 0),
                            propagation=flag)


def clone_source(plan: MountPlan) -> int:
    """A detached copy of a bind source (a host path), to attach later through fds."""
    flags = linux.OPEN_TREE_CLONE | linux.OPEN_TREE_CLOEXEC
    if plan.recursive:
        flags |= linux.AT_RECURSIVE
    return linux.open_tree(-100, plan.source, flags)  # AT_FDCWD: the source is a host path


def attach_bind(plan: MountPlan, target_fd: int) -> None:
    mfd, plan.mfd = (plan.mfd, -1) if plan.mfd >= 0 else (clone_source(plan), -1)
    try:
        _finish(mfd, plan, target_fd)
    finally:
        os.close(mfd)


def premount_binds(cfg: dict, bundle: str, all_binds: bool,
                   joined_userns: str | None) -> dict[int, int]:
    """Detached clones of bind sources, made while we still have the caller's view and rights.

    Runs in the intermediate before it enters the container's user namespace: there, the
    container's root may not even traverse the directories holding a bind source (podman's
    are under a 0700 /var/lib/containers), and only the host's root may idmap a host
    filesystem (MOUNT_ATTR_IDMAP needs CAP_SYS_ADMIN over the superblock's namespace). The
    init attaches each fd with move_mount. all_binds: a user namespace is involved; otherwise
    only idmapped mounts are cloned here. Returns mounts index -> fd.
    """
    from pyrunc import userns
    linux_cfg = cfg.get("linux") or {}
    made: dict[int, int] = {}
    userns_fds: dict[bytes, int] = {}
    try:
        for index, entry in enumerate(cfg.get("mounts") or []):
            plan = parse_mount(entry, index, bundle)
            if not plan.bind or not (all_binds or plan.idmap):
                continue
            try:
                mfd = clone_source(plan)
                made[index] = mfd
                if plan.idmap:
                    uids = entry.get("uidMappings") or linux_cfg.get("uidMappings") or []
                    gids = entry.get("gidMappings") or linux_cfg.get("gidMappings") or []
                    key = userns.format_map(uids) + b"/" + userns.format_map(gids)
                    if key not in userns_fds:
                        if not entry.get("uidMappings") and joined_userns:
                            userns_fds[key] = os.open(joined_userns, os.O_RDONLY | os.O_CLOEXEC)
                        else:
                            userns_fds[key] = userns.mapping_userns(uids, gids)
                    flags = linux.AT_EMPTY_PATH
                    if plan.idmap == "ridmap":
                        flags |= linux.AT_RECURSIVE
                    linux.mount_setattr(mfd, "", flags, linux.MOUNT_ATTR_IDMAP,
                                        userns_fd=userns_fds[key])
            except OSError as exc:
                what = "idmapping" if index in made else "opening bind source"
                raise OSError(exc.errno, f"mounts[{index}] {plan.destination}: {what} "
                              f"{plan.source}: {exc.strerror}") from None
    except BaseException:
        for fd in made.values():
            os.close(fd)
        raise
    finally:
        for fd in userns_fds.values():
            os.close(fd)
    return made


def attach_filesystem(plan: MountPlan, target_fd: int, keep: bool = False) -> int:
    """keep: return the new mount's fd (its root, attached) instead of closing it, else -1."""
    ctx = linux.fsopen(plan.fstype)
    try:
        try:
            if plan.source:
                linux.fsconfig(ctx, linux.FSCONFIG_SET_STRING, "source", plan.source)
            for flag in plan.sb_flags:
                linux.fsconfig(ctx, linux.FSCONFIG_SET_FLAG, flag)
            for key, value in plan.data:
                if value is None:
                    linux.fsconfig(ctx, linux.FSCONFIG_SET_FLAG, key)
                else:
                    linux.fsconfig(ctx, linux.FSCONFIG_SET_STRING, key, value)
            linux.fsconfig(ctx, linux.FSCONFIG_CMD_CREATE)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, f"{plan.fstype} options") from None
        mfd = linux.fsmount(ctx, plan.attr_set)
    finally:
        os.close(ctx)
    plan.attr_set = plan.attr_clr = 0  # already applied by fsmount
    try:
        _finish(mfd, plan, target_fd)
    except BaseException:
        os.close(mfd)
        raise
    if keep:
        return mfd
    os.close(mfd)
    return -1


# Files under /proc an engine may cover (lxcfs' emulated views); nothing else may be mounted
# inside a procfs. runc keeps the same list.
LXCFS_PROC_FILES = frozenset(f"proc/{name}" for name in (
    "cpuinfo", "diskstats", "meminfo", "stat", "swaps", "uptime", "loadavg", "slabinfo",
    "net/dev", "sys/kernel/ns_last_pid"))


def guard_proc(plan: MountPlan, target: int, root_path: str) -> None:
    """Refuse a fake /proc (anything but procfs on <rootfs>/proc) and any mount inside a procfs
    except lxcfs' files: a procfs file covered by another is how the CVE-2019-16884 and
    CVE-2025-52881 attacks redirect a runtime's writes. The resolved target is checked, so a
    symlink or `..` leading to /proc is caught too."""
    resolved = os.readlink(saferoot.proc_fd_path(target))
    if resolved.startswith(root_path + "/") and "/." not in resolved:
        where = resolved[len(root_path) + 1:]   # what relpath gives, without its normalizing
    else:
        where = os.path.relpath(resolved, root_path)
    if where == "proc":
        if plan.bind and plan.mfd >= 0:  # cloned before the user namespace: check the clone
            ok = linux.fstatfs_type(plan.mfd) == linux.PROC_SUPER_MAGIC
        elif plan.bind:
            src = os.open(plan.source, os.O_PATH | os.O_CLOEXEC)
            try:
                ok = linux.fstatfs_type(src) == linux.PROC_SUPER_MAGIC
            finally:
                os.close(src)
        else:
            ok = plan.fstype == "proc"
        if not ok:
            raise OSError(1, "only a procfs may be mounted on /proc")
    elif ((linux.fstatfs_type(target) == linux.PROC_SUPER_MAGIC or where.startswith("proc/"))
          and where not in LXCFS_PROC_FILES):
        raise OSError(1, "mounts inside /proc are refused (only lxcfs' files may be covered)")


def mount_into_root(plan: MountPlan, rootfd: int, root_path: str = "", keep: bool = False) -> int:
    """Create the target inside the rootfs and attach the mount there; with root_path (the
    rootfs' host path) the target is first checked with guard_proc. keep (a filesystem, not a
    bind): return the new mount's own fd, else -1."""
    is_dir = True
    if plan.bind and plan.mfd >= 0:
        is_dir = os.fstat(plan.mfd).st_mode & 0o170000 == 0o040000  # S_ISDIR (no `stat`: ~0.3 M)
    elif plan.bind:
        is_dir = os.path.isdir(plan.source)
        if not is_dir and not os.path.exists(plan.source):
            raise FileNotFoundError(2, "No such file or directory", plan.source)
    target = saferoot.ensure_target(rootfd, plan.destination, is_dir)
    below = kept = -1
    try:
        if root_path:
            guard_proc(plan, target, root_path)
        if plan.copy_up:
            # Keep a handle on what the tmpfs is about to cover, to copy it up afterwards.
            below = os.open(saferoot.proc_fd_path(target), os.O_RDONLY | os.O_DIRECTORY
                            | os.O_CLOEXEC)
        if plan.bind:
            attach_bind(plan, target)
        else:
            kept = attach_filesystem(plan, target, keep)
        if below >= 0:
            above = saferoot.open_in_root(rootfd, plan.destination, os.O_RDONLY | os.O_DIRECTORY)
            try:
                copy_tree(below, above)
            finally:
                os.close(above)
    except BaseException:
        if kept >= 0:
            os.close(kept)
        raise
    finally:
        if below >= 0:
            os.close(below)
        os.close(target)
    return kept


def copy_tree(src: int, dst: int) -> None:
    """Copy a directory's contents between two fds (tmpcopyup), never following symlinks."""
    for entry in os.scandir(src):
        st = entry.stat(follow_symlinks=False)
        mode = st.st_mode & 0o7777
        if entry.is_symlink():
            os.symlink(os.readlink(entry.name, dir_fd=src), entry.name, dir_fd=dst)
        elif entry.is_dir(follow_symlinks=False):
            os.mkdir(entry.name, mode, dir_fd=dst)
            sfd = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=src)
            dfd = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=dst)
            try:
                copy_tree(sfd, dfd)
            finally:
                os.close(sfd)
                os.close(dfd)
        elif entry.is_file(follow_symlinks=False):
            sfd = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
            dfd = os.open(entry.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, mode, dir_fd=dst)
            try:
                while os.sendfile(dfd, sfd, None, 1 << 20):
                    pass
            finally:
                os.close(sfd)
                os.close(dfd)
        else:
            continue  # device nodes, fifos and sockets are not copied
        os.chown(entry.name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
        if not entry.is_symlink():
            os.chmod(entry.name, mode, dir_fd=dst)
