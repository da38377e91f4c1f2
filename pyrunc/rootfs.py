"""The container's root filesystem, built inside its new mount namespace by the init process.

Order (each step needs the previous one): propagation of /, the rootfs bound onto itself,
config mounts, /dev nodes and links, pivot_root (or chroot with --no-pivot), then sysctls,
readonly and masked paths, and finally a read-only root. Everything under the rootfs is
reached through saferoot, never by joining strings.
"""

from __future__ import annotations

import errno
from posix import getegid, geteuid  # not through lightos: its first use adds to its globals

from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc import linux, mounts, saferoot
from pyrunc.errors import ConfigError
from pyrunc.procfs import hold_proc, write_proc  # noqa: F401 - init.py calls rootfs.hold_proc

L = linux

_PROPAGATION = {
    "private": L.MS_PRIVATE, "rprivate": L.MS_PRIVATE | L.MS_REC,
    "shared": L.MS_SHARED, "rshared": L.MS_SHARED | L.MS_REC,
    "slave": L.MS_SLAVE, "rslave": L.MS_SLAVE | L.MS_REC,
    "unbindable": L.MS_UNBINDABLE, "runbindable": L.MS_UNBINDABLE | L.MS_REC,
}

# (path, type, major, minor): what every container gets, as runc gives it.
DEFAULT_DEVICES = (
    ("/dev/null", "c", 1, 3), ("/dev/zero", "c", 1, 5), ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8), ("/dev/urandom", "c", 1, 9), ("/dev/tty", "c", 5, 0),
)
DEFAULT_LINKS = (
    ("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
)


class RootfsContext:
    """What the mount steps need to know about the rest of the container."""

    def __init__(self, cfg: dict, rootfs: str, bundle: str, new_ns: set[str],
                 cgroup_paths: dict[str, str], in_userns: bool) -> None:
        self.cfg = cfg
        self.rootfs = rootfs
        self.bundle = bundle
        self.new_ns = new_ns
        self.own_ns = set(new_ns)    # created or joined: not the host's
        self.cgroup_paths = cgroup_paths
        self.in_userns = in_userns
        self.rootfd = -1
        self.premounts: dict[int, int] = {}   # mounts index -> detached clone (premount_binds)
        self.await_cgroup_dirs = _nothing      # blocks until cgroup_paths exist (a direct init)


def _nothing() -> None:
    pass


def prepare(ctx: RootfsContext) -> None:
    """Everything up to (not including) the pivot."""
    linux_cfg = ctx.cfg.get("linux") or {}
    prop = linux_cfg.get("rootfsPropagation")
    if prop and prop not in _PROPAGATION:
        raise ConfigError(f"config.json: /linux/rootfsPropagation: unknown value {prop!r}")
    # Nothing we mount may propagate back to the host: rslave keeps host mounts flowing in, and
    # the configured propagation is applied to the new root only after pivot_root, which
    # refuses a shared old root.
    if "mount" in ctx.own_ns:
        private = prop in ("private", "rprivate", "unbindable", "runbindable")
        # Recursive from "/": no mount of this namespace is shared afterwards (a shared one
        # becomes a slave, or private without peers), the rootfs' parent mount included, which
        # is all pivot_root(2) asks of it: no /proc/self/mountinfo to read for that.
        linux.mount(None, "/", None, L.MS_REC | (L.MS_PRIVATE if private else L.MS_SLAVE))
        ctx.rootfd = bind_rootfs_onto_itself()
    else:
        # The host's mount namespace (hostmounts.py): its propagation is not ours to change,
        # and the mounts below go into it, below the rootfs, where delete finds them.
        ctx.rootfd = os.open(ctx.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    bind_dev = False
    for index, entry in enumerate(ctx.cfg.get("mounts") or []):
        plan = mounts.parse_mount(entry, index, ctx.bundle)
        plan.mfd = ctx.premounts.pop(index, -1)
        if plan.destination.rstrip("/") == "/dev" and plan.bind:
            bind_dev = True
        try:
            mount_entry(ctx, plan)
        except OSError as exc:
            raise OSError(exc.errno, f"mounts[{index}] {plan.destination}: {exc.strerror}",
                          exc.filename) from None
    if not bind_dev:
        create_devices(ctx)


def bind_rootfs_onto_itself() -> int:
    """The rootfs (our cwd: the intermediate entered it while it still had the caller's view)
    bound onto itself, as pivot_root needs a mount point; returns an O_PATH fd of the new mount.

    Through the cwd rather than the rootfs path: in a user namespace the container's root may
    not be allowed to traverse the directories above the rootfs (a 0700 bundle parent).
    """
    mfd = linux.open_tree(-100, ".", L.OPEN_TREE_CLONE | L.OPEN_TREE_CLOEXEC | L.AT_RECURSIVE)
    try:
        linux.move_mount(mfd, "", -100, ".", L.MOVE_MOUNT_F_EMPTY_PATH)
    except BaseException:
        os.close(mfd)
        raise
    return mfd


def mount_entry(ctx: RootfsContext, plan: mounts.MountPlan) -> None:
    if plan.fstype == "cgroup" and not plan.bind:
        mount_cgroups(ctx, plan)
        return
    if not plan.bind and plan.fstype == "sysfs" and "network" not in ctx.own_ns:
        # A new sysfs shows the netns of the mounter; sharing the host's netns, bind the host's.
        plan.bind, plan.recursive, plan.source = True, True, "/sys"
    try:
        mounts.mount_into_root(plan, ctx.rootfd, ctx.rootfs)
    except PermissionError:
        # In a user namespace, sysfs needs a network namespace it owns and mqueue an ipc
        # namespace it owns (a joined one is the host's, or another owner's): bind the host's
        # instead, as runc does.
        # proc has no such fallback (runc has none either): it needs its own pid namespace.
        fallback = {"sysfs": ("/sys", "a network"), "mqueue": ("/dev/mqueue", "an ipc"),
                    "proc": ("", "a pid")}.get(plan.fstype)
        if not ctx.in_userns or plan.bind or fallback is None:
            raise
        source, needs = fallback
        if not source or not os.path.exists(source):
            missing = f" (and the host has no {source} to bind)" if source else ""
            raise PermissionError(errno.EPERM, f"{plan.fstype} in a user namespace needs "
                                  f"{needs} namespace of its own{missing}") from None
        plan.bind, plan.recursive, plan.source, plan.data = True, True, source, []
        mounts.mount_into_root(plan, ctx.rootfd, ctx.rootfs)


def mount_cgroups(ctx: RootfsContext, plan: mounts.MountPlan) -> None:
    """type "cgroup": cgroup2 on a unified host, else a tmpfs holding one mount per hierarchy."""
    own_ns = "cgroup" in ctx.new_ns
    ctx.await_cgroup_dirs()
    if set(ctx.cgroup_paths) == {""}:
        if own_ns:
            plan.fstype, plan.source, plan.data = "cgroup2", "cgroup2", []
            mounts.mount_into_root(plan, ctx.rootfd, ctx.rootfs)
        else:
            plan.bind, plan.recursive, plan.source = True, True, ctx.cgroup_paths[""]
            mounts.mount_into_root(plan, ctx.rootfd, ctx.rootfs)
        return
    tmpfs = mounts.MountPlan(plan.destination, "tmpfs", "tmpfs",
                             attr_set=(plan.attr_set & ~L.MOUNT_ATTR_RDONLY),
                             data=[("mode", "755")])
    top = mounts.mount_into_root(tmpfs, ctx.rootfd, ctx.rootfs, keep=True)
    clone = L.OPEN_TREE_CLONE | L.OPEN_TREE_CLOEXEC
    attach = L.MOVE_MOUNT_F_EMPTY_PATH | L.MOVE_MOUNT_T_EMPTY_PATH
    try:
        for key, host_dir in sorted(ctx.cgroup_paths.items()):
            name = "unified" if key == "" else key.replace("name=", "")
            # Each hierarchy's directory is made in, and resolved inside, the tmpfs just
            # mounted (through its own mount fd, not a path): empty, and ours alone.
            try:
                os.mkdir(name, 0o755, dir_fd=top)
            except FileExistsError:
                pass
            target = saferoot.open_in_root(top, name, os.O_PATH | os.O_DIRECTORY)
            try:
                if own_ns:
                    sub = mounts.MountPlan(plan.destination.rstrip("/") + "/" + name, "cgroup",
                                           "cgroup2" if key == "" else "cgroup")
                    for opt in key.split(",") if key else []:
                        k, sep, v = opt.partition("=")
                        sub.data.append((k, v if sep else None))
                    mounts.attach_filesystem(sub, target)
                else:
                    # A plain clone of the host's directory (not recursive): its attributes
                    # come with everyone's, below.
                    mfd = linux.open_tree(-100, host_dir, clone)
                    try:
                        linux.move_mount(mfd, "", target, "", attach)
                    finally:
                        os.close(mfd)
            finally:
                os.close(target)
        if plan.attr_set or plan.attr_clr:
            # The configured attributes (ro, nosuid, ...) on the tmpfs and every hierarchy at
            # once, now that all are attached: one call rather than one per mount. Nothing
            # else is mounted there, and the container does not exist yet.
            linux.mount_setattr(top, "", L.AT_EMPTY_PATH | L.AT_RECURSIVE, plan.attr_set,
                                plan.attr_clr)
    finally:
        os.close(top)


# S_IFCHR, S_IFBLK, S_IFIFO: the `stat` module would cost every create ~0.3 M instructions.
_DEV_TYPES = {"c": 0o020000, "u": 0o020000, "b": 0o060000, "p": 0o010000}


def create_devices(ctx: RootfsContext) -> None:
    linux_cfg = ctx.cfg.get("linux") or {}
    wanted = [(d["path"], d["type"], d.get("major", 0), d.get("minor", 0), d.get("fileMode"),
               d.get("uid"), d.get("gid")) for d in linux_cfg.get("devices") or []]
    configured = {w[0] for w in wanted}
    devices = [(p, t, ma, mi, 0o666, 0, 0) for p, t, ma, mi in DEFAULT_DEVICES if p not in configured]
    dirs: dict[str, tuple[int, bool]] = {}
    owner = (geteuid(), getegid())   # our fsuid and fsgid: what a new node gets
    old_umask = os.umask(0)
    try:
        for path, kind, major, minor, mode, uid, gid in devices + wanted:
            make_device(ctx, path, kind, major, minor, mode, uid, gid, dirs, owner)
        for target, link in DEFAULT_LINKS:
            parent = _device_dir(ctx.rootfd, dirs, os.path.dirname(link))[0]
            try:
                os.symlink(target, os.path.basename(link), dir_fd=parent)
            except FileExistsError:
                pass
    finally:
        os.umask(old_umask)
        for fd, _ in dirs.values():
            os.close(fd)


# (fd, set-group-ID) of a directory nodes and links go into (nearly always just /dev), resolved
# (and made) inside the rootfs once, not once per node: each node is made by name in the
# directory the fd holds, whatever a racing rename does to its path meanwhile. (A comment, not
# a docstring: docstrings stay in memory, and the init's RSS is measured against runc's.)
def _device_dir(rootfd: int, dirs: dict[str, tuple[int, bool]], path: str) -> tuple[int, bool]:
    path = "/".join(saferoot.split(path))
    found = dirs.get(path)
    if found is None:
        fd = saferoot.mkdir_all(rootfd, path)
        try:
            setgid = bool(os.fstat(fd).st_mode & 0o2000)  # S_ISGID: new nodes take its group
        except BaseException:
            os.close(fd)
            raise
        found = dirs[path] = (fd, setgid)
    return found


def make_device(ctx: RootfsContext, path: str, kind: str, major: int, minor: int,
                mode: int | None, uid: int | None, gid: int | None,
                dirs: dict[str, tuple[int, bool]], owner: tuple[int, int]) -> None:
    if not path.startswith("/dev/"):
        raise ConfigError(f"config.json: /linux/devices: {path!r} is not under /dev")
    parts = saferoot.split(path)
    parent, setgid = _device_dir(ctx.rootfd, dirs, "/".join(parts[:-1]))
    name = parts[-1]
    perm = (mode if mode is not None else 0o666) & 0o7777
    try:
        if ctx.in_userns:
            raise PermissionError(errno.EPERM, "mknod in a user namespace")
        try:
            os.mknod(name, _DEV_TYPES[kind] | perm, os.makedev(major, minor), dir_fd=parent)
        except FileExistsError:
            # Replace what the image has there (mknod first: a fresh /dev has nothing).
            _remove_entry(name, parent, path)
            os.mknod(name, _DEV_TYPES[kind] | perm, os.makedev(major, minor), dir_fd=parent)
    except PermissionError:
        # Without CAP_MKNOD in the init userns, bind the host's node instead (as runc does).
        _remove_entry(name, parent, path)
        os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644,
                         dir_fd=parent))
        target = saferoot.open_in_root(ctx.rootfd, path)
        try:
            mounts.attach_bind(mounts.MountPlan(path, path, "bind", bind=True), target)
        finally:
            os.close(target)
        return
    # The node is ours: owned by our fsuid and fsgid (never set apart from euid and egid), or
    # by the directory's group if it is set-group-ID. A chown to what it already is changes
    # nothing but clear set-user-ID and set-group-ID bits: done then.
    if ((uid is not None or gid is not None)
            and (perm & 0o6000 or setgid or uid not in (None, owner[0])
                 or gid not in (None, owner[1]))):
        os.chown(name, uid if uid is not None else -1, gid if gid is not None else -1,
                 dir_fd=parent, follow_symlinks=False)


def _remove_entry(name: str, parent: int, path: str) -> None:
    try:
        os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise ConfigError(f"config.json: /linux/devices: {path} is a directory") from None


def pivot(ctx: RootfsContext, no_pivot: bool) -> None:
    """Make the rootfs `/`; the old root is detached so no host path stays reachable."""
    os.fchdir(ctx.rootfd)
    if "mount" not in ctx.own_ns:
        # Sharing the host's mount namespace: pivot_root or MS_MOVE would change the host's
        # root for everyone; chroot changes only ours.
        os.chroot(".")
    elif no_pivot:
        linux.mount(".", "/", None, L.MS_MOVE)
        os.chroot(".")
    else:
        old_root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            linux.pivot_root(".", ".")
            # The old root is now stacked on the new one. "." must name the old root, not the
            # new one (cwd), or the recursive slave below would also strip the propagation
            # (shared, ...) just given to the container's own mounts.
            os.fchdir(old_root)
        finally:
            os.close(old_root)
        # Slave first so the detach cannot propagate an unmount to the host.
        linux.mount(None, ".", None, L.MS_SLAVE | L.MS_REC)
        linux.umount2(".", L.MNT_DETACH)
    os.chdir("/")
    os.close(ctx.rootfd)
    ctx.rootfd = -1


_ROOT_FD = [-1]


def _root_fd() -> int:
    if _ROOT_FD[0] < 0:
        _ROOT_FD[0] = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return _ROOT_FD[0]


def apply_sysctls(sysctl: dict[str, str]) -> None:
    for key, value in sysctl.items():
        try:
            write_proc("/proc/sys/" + key.replace(".", "/"), value)
        except OSError as exc:
            raise OSError(exc.errno, f"sysctl {key}: {exc.strerror}") from None


def readonly_path(path: str) -> None:
    try:
        fd = saferoot.open_in_root(_root_fd(), path)
    except FileNotFoundError:
        return
    try:
        mfd = linux.open_tree(fd, "", L.OPEN_TREE_CLONE | L.OPEN_TREE_CLOEXEC | L.AT_RECURSIVE
                              | L.AT_EMPTY_PATH)
        try:
            linux.mount_setattr(mfd, "", L.AT_EMPTY_PATH | L.AT_RECURSIVE, L.MOUNT_ATTR_RDONLY
                                | L.MOUNT_ATTR_NOSUID | L.MOUNT_ATTR_NODEV | L.MOUNT_ATTR_NOEXEC)
            linux.move_mount(mfd, "", fd, "", L.MOVE_MOUNT_F_EMPTY_PATH | L.MOVE_MOUNT_T_EMPTY_PATH)
        finally:
            os.close(mfd)
    finally:
        os.close(fd)


def mask_path(path: str) -> None:
    """A directory is hidden under an empty read-only tmpfs, a file under /dev/null."""
    try:
        fd = saferoot.open_in_root(_root_fd(), path)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        if os.fstat(fd).st_mode & 0o170000 == 0o040000:  # S_ISDIR
            plan = mounts.MountPlan(path, "tmpfs", "tmpfs", attr_set=L.MOUNT_ATTR_RDONLY)
            mounts.attach_filesystem(plan, fd)
        else:
            mounts.attach_bind(mounts.MountPlan(path, "/dev/null", "bind", bind=True), fd)
    finally:
        os.close(fd)


PROC_ROOT_INO = 1


def check_proc(cfg: dict) -> None:
    """A config that mounts procfs on /proc must find the root of a procfs there after the
    pivot: anything else was put over it during setup (a hook, or a process racing us through
    a shared mount), and the container's processes would read a forged /proc. Our own writes
    never go through it (see hold_proc); this is so that the container is refused too."""
    wanted = any(m.get("type") == "proc" and saferoot.split(m.get("destination", "")) == ["proc"]
                 for m in cfg.get("mounts") or [])
    if not wanted:
        return
    fd = saferoot.open_in_root(_root_fd(), "/proc", os.O_PATH | os.O_DIRECTORY)
    try:
        if linux.fstatfs_type(fd) != L.PROC_SUPER_MAGIC or os.fstat(fd).st_ino != PROC_ROOT_INO:
            raise OSError(errno.EXDEV, "/proc is not the procfs mounted by config.json (it was "
                          "covered during setup): refusing to start the container")
    finally:
        os.close(fd)


def finalize(cfg: dict) -> None:
    """After the pivot: sysctls, then readonly and masked paths, then a read-only root."""
    linux_cfg = cfg.get("linux") or {}
    check_proc(cfg)
    if linux_cfg.get("sysctl"):
        apply_sysctls(linux_cfg["sysctl"])
    for path in linux_cfg.get("readonlyPaths") or []:
        readonly_path(path)
    for path in linux_cfg.get("maskedPaths") or []:
        mask_path(path)
    if (cfg.get("root") or {}).get("readonly"):
        linux.mount_setattr(_root_fd(), "", L.AT_EMPTY_PATH, L.MOUNT_ATTR_RDONLY)
    prop = linux_cfg.get("rootfsPropagation")
    if prop:
        # Last: an unbindable tree refuses the clones that readonly and masked paths make.
        linux.mount(None, "/", None, _PROPAGATION[prop])
    if _ROOT_FD[0] >= 0:
        os.close(_ROOT_FD[0])
        _ROOT_FD[0] = -1
