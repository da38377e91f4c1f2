"""The container's root filesystem: config mounts, /dev, masked and read-only paths, sysctls,
hostname, propagation, pivot, and that nothing of it reaches the host.

Real containers on the busybox rootfs; what the container sees is read from its own
/proc/self/mountinfo, /proc/mounts and stat, what the host keeps from the host's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import is_warning, one_line_error  # noqa: F401

pytestmark = pytest.mark.kernel


# -- helpers ---------------------------------------------------------------------------------------

class MountInfo:
    """One /proc/<pid>/mountinfo line."""

    def __init__(self, line: str) -> None:
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        self.root = fields[3]
        self.point = fields[4].replace("\\040", " ")
        self.opts = set(fields[5].split(","))
        self.tags = fields[6:]
        self.fstype, self.source, superopts = (post.split() + ["", "", ""])[:3]
        self.superopts = superopts.split(",")
        self.line = line

    def __repr__(self) -> str:
        return self.line


def mountinfo(text: str) -> list[MountInfo]:
    return [MountInfo(line) for line in text.splitlines() if " - " in line]


def mount_at(text: str, point: str) -> MountInfo:
    found = [m for m in mountinfo(text) if m.point == point]
    assert found, f"no mount at {point} in:\n{text}"
    return found[-1]   # the top one


def host_mount_points() -> list[str]:
    return [m.point for m in mountinfo(Path("/proc/self/mountinfo").read_text())]




def add_mount(cfg: dict, destination: str, kind: str, source: str, options: list[str]) -> None:
    cfg["mounts"].append({"destination": destination, "type": kind, "source": source,
                          "options": options})


def create(pyrunc, bundle, cid: str, *flags: str) -> Path:
    """`pyrunc create`; the init keeps its stdio, so it goes to a file, not to a pipe we wait on.
    Returns the file that holds the container's output."""
    out = bundle.path.parent / f"{cid}.out"
    with open(out, "wb") as f:
        proc = pyrunc("create", *flags, "--bundle", str(bundle.path), cid, capture_output=False,
                      stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
    assert proc.returncode == 0, out.read_text()
    return out


def sep(*cmds: str) -> str:
    """Shell commands whose outputs are split by a marker line: out.split('@@\\n')."""
    return "; echo @@; ".join(cmds)


# -- bind mounts -----------------------------------------------------------------------------------

def test_bind_mount_rw(run_container, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "from-host").write_text("hello from host\n")
    r = run_container(["sh", "-c",
                       "cat /mnt/share/from-host && echo written > /mnt/share/from-ctr"],
                      edit=lambda c: add_mount(c, "/mnt/share", "bind", str(share), ["bind", "rw"]))
    assert r.rc == 0, r
    assert r.out == "hello from host\n"
    assert (share / "from-ctr").read_text() == "written\n"


def test_bind_mount_ro(run_container, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "f").write_text("x")
    r = run_container(["sh", "-c", sep("cat /mnt/ro/f", "touch /mnt/ro/new && echo WROTE",
                                       "cat /proc/self/mountinfo")],
                      edit=lambda c: add_mount(c, "/mnt/ro", "bind", str(share), ["bind", "ro"]))
    assert r.rc == 0, r
    content, wrote, info = r.out.split("@@\n")
    assert content == "x"
    assert "WROTE" not in wrote
    assert "Read-only file system" in r.err, r.err
    assert "ro" in mount_at(info, "/mnt/ro").opts
    assert sorted(p.name for p in share.iterdir()) == ["f"]


def test_bind_mount_single_file_creates_target(run_container, tmp_path, bundle):
    src = tmp_path / "hostfile.conf"
    src.write_text("key=value\n")
    r = run_container(["sh", "-c", "test -f /etc/conf.d/app.conf && cat /etc/conf.d/app.conf"],
                      edit=lambda c: add_mount(c, "/etc/conf.d/app.conf", "bind", str(src),
                                               ["bind", "ro"]))
    assert r.rc == 0, r
    assert r.out == "key=value\n"
    target = bundle.rootfs / "etc" / "conf.d" / "app.conf"
    assert target.is_file() and target.stat().st_size == 0, "target is an empty file in the rootfs"


@pytest.fixture
def host_tree(tmp_path):
    """tmp/tree/sub with a tmpfs mounted on sub (holding `inner`): to tell bind from rbind."""
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "top").write_text("top")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "treesub", str(tree / "sub")],
                   check=True)
    try:
        (tree / "sub" / "inner").write_text("inner")
        yield tree
    finally:
        subprocess.run(["umount", "-l", str(tree / "sub")], check=True)


def test_rbind_carries_submounts(run_container, host_tree):
    r = run_container(["sh", "-c", "cat /mnt/tree/top /mnt/tree/sub/inner"],
                      edit=lambda c: add_mount(c, "/mnt/tree", "bind", str(host_tree), ["rbind"]))
    assert r.rc == 0, r
    assert r.out == "topinner"


def test_plain_bind_leaves_submounts_out(run_container, host_tree):
    r = run_container(["sh", "-c", "cat /mnt/tree/top; ls -A /mnt/tree/sub | wc -l"],
                      edit=lambda c: add_mount(c, "/mnt/tree", "bind", str(host_tree), ["bind"]))
    assert r.rc == 0, r
    assert r.out == "top0\n", r.out


def test_relative_bind_source_is_resolved_against_bundle(run_container, bundle):
    data = bundle.path / "data"
    data.mkdir()
    (data / "file").write_text("in bundle")
    r = run_container(["cat", "/data/file"],
                      edit=lambda c: add_mount(c, "/data", "bind", "data", ["bind", "ro"]))
    assert r.rc == 0, r
    assert r.out == "in bundle"


def test_bind_of_missing_source_is_a_clear_error(pyrunc, run_container, tmp_path):
    missing = tmp_path / "not-there"
    r = run_container(["true"], edit=lambda c: add_mount(c, "/mnt/x", "bind", str(missing),
                                                         ["bind"]))
    assert r.rc != 0, r
    line = one_line_error(r.err)
    assert str(missing) in line and "/mnt/x" in line, line
    assert not (pyrunc.root / r.cid).exists()


# -- tmpfs and mount flags -------------------------------------------------------------------------

def test_tmpfs_with_size_and_mode(run_container):
    r = run_container(["sh", "-c", sep("grep ' /scratch ' /proc/mounts", "stat -c %a /scratch")],
                      edit=lambda c: add_mount(c, "/scratch", "tmpfs", "tmpfs",
                                               ["size=1m", "mode=1770"]))
    assert r.rc == 0, r
    line, perms = r.out.split("@@\n")
    fields = line.split()
    assert fields[2] == "tmpfs", line
    opts = fields[3].split(",")
    assert "size=1024k" in opts and "mode=1770" in opts, line
    assert perms.strip() == "1770"


def test_nosuid_nodev_noexec_visible_in_mountinfo(run_container):
    r = run_container(["cat", "/proc/self/mountinfo"],
                      edit=lambda c: add_mount(c, "/flags", "tmpfs", "tmpfs",
                                               ["nosuid", "nodev", "noexec"]))
    assert r.rc == 0, r
    m = mount_at(r.out, "/flags")
    assert {"nosuid", "nodev", "noexec"} <= m.opts, m


def test_bind_flags_applied_and_noexec_enforced(run_container, tmp_path):
    bins = tmp_path / "bins"
    bins.mkdir()
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", bins / "busybox")
    r = run_container(["sh", "-c", sep("cat /proc/self/mountinfo",
                                       "/opt/bins/busybox true && echo EXECUTED; exit 0")],
                      edit=lambda c: add_mount(c, "/opt/bins", "bind", str(bins),
                                               ["bind", "nosuid", "nodev", "noexec"]))
    assert r.rc == 0, r
    info, ran = r.out.split("@@\n")
    assert {"nosuid", "nodev", "noexec"} <= mount_at(info, "/opt/bins").opts
    assert "EXECUTED" not in ran
    assert "Permission denied" in r.err or "permission denied" in r.err.lower(), r.err


def test_missing_nested_destination_created(run_container, bundle):
    r = run_container(["sh", "-c", "test -d /a/b/c && grep ' /a/b/c ' /proc/self/mountinfo"],
                      edit=lambda c: add_mount(c, "/a/b/c", "tmpfs", "tmpfs", []))
    assert r.rc == 0, r
    assert " - tmpfs " in r.out
    assert (bundle.rootfs / "a" / "b" / "c").is_dir()


def test_unknown_filesystem_type_is_a_clear_error(pyrunc, run_container):
    r = run_container(["true"], edit=lambda c: add_mount(c, "/weird", "nosuchfs", "none", []))
    assert r.rc != 0, r
    line = one_line_error(r.err)
    assert "/weird" in line, line
    assert not (pyrunc.root / r.cid).exists()


@pytest.mark.parametrize("dest, says", [
    ("/etc/passwd", "/etc/passwd: mount target is not a directory"),
    ("/etc/passwd/below", "/etc/passwd/below: not a directory"),
])
def test_filesystem_over_a_file_is_a_clear_error(pyrunc, run_container, dest, says):
    r = run_container(["true"], edit=lambda c: add_mount(c, dest, "tmpfs", "tmpfs", []))
    assert r.rc != 0, r
    assert says in one_line_error(r.err).lower(), r
    assert not (pyrunc.root / r.cid).exists()


# -- paths that try to leave the rootfs ------------------------------------------------------------

def _create_with_evil_symlink(pyrunc, bundle, host_target: Path) -> str:
    """rootfs/evil -> <host_target> (absolute), a tmpfs mounted at /evil; `create`d, not started."""
    (bundle.rootfs / "evil").symlink_to(str(host_target))
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sh", "-c", "echo planted > /evil/planted"]
    add_mount(cfg, "/evil", "tmpfs", "tmpfs", ["size=1m"])
    bundle.write()
    cid = pyrunc.new_id()
    create(pyrunc, bundle, cid)
    return cid


def _check_evil_mount_inside(pyrunc, cid: str, host_target: Path) -> None:
    pid = pyrunc.state(cid)["pid"]
    assert str(host_target) not in Path("/proc/self/mountinfo").read_text()
    # The tmpfs is on the symlink's target resolved *inside* the rootfs.
    inside = Path(f"/proc/{pid}/root") / str(host_target).lstrip("/")
    assert inside.is_dir(), "mount target not inside the rootfs"
    assert os.stat(inside).st_dev != os.stat(f"/proc/{pid}/root/bin").st_dev, \
        "the tmpfs is not at the in-rootfs resolution of the symlink"
    ctr_mounts = Path(f"/proc/{pid}/mountinfo").read_text()
    assert any(m.point == str(host_target) and m.fstype == "tmpfs"
               for m in mountinfo(ctr_mounts)), ctr_mounts


@pytest.fixture
def host_target(tmp_path):
    target = tmp_path / "host-target-dir"
    target.mkdir()
    (target / "sentinel").write_text("untouched")
    yield target
    assert sorted(p.name for p in target.iterdir()) == ["sentinel"], "host directory changed"
    assert (target / "sentinel").read_text() == "untouched"


def test_symlink_destination_pointing_outside_stays_inside(pyrunc, bundle, host_target):
    # The symlink's target also exists inside the rootfs: that is where the tmpfs must go.
    (bundle.rootfs / str(host_target).lstrip("/")).mkdir(parents=True)
    cid = _create_with_evil_symlink(pyrunc, bundle, host_target)
    try:
        _check_evil_mount_inside(pyrunc, cid, host_target)
        pyrunc("start", cid, check=True)
    finally:
        pyrunc("delete", "--force", cid, check=True)
    assert (bundle.rootfs / "evil").is_symlink()


def test_symlink_destination_to_missing_target_created_inside(pyrunc, bundle, host_target):
    # runc 1.1.5 resolves /evil inside the rootfs and creates rootfs/<host_target> to mount on.
    cid = _create_with_evil_symlink(pyrunc, bundle, host_target)
    try:
        _check_evil_mount_inside(pyrunc, cid, host_target)
    finally:
        pyrunc("delete", "--force", cid, check=True)
    assert (bundle.rootfs / str(host_target).lstrip("/")).is_dir()


def test_dotdot_in_destination_stays_inside(run_container, bundle):
    name = "pyrunc-dotdot-" + uuid.uuid4().hex[:8]
    r = run_container(["sh", "-c", f"grep ' /tmp/{name} ' /proc/self/mountinfo"],
                      edit=lambda c: add_mount(c, f"/../../../../../../tmp/{name}", "tmpfs",
                                               "tmpfs", []))
    try:
        assert r.rc == 0, r
        assert " - tmpfs " in r.out, r.out
        assert (bundle.rootfs / "tmp" / name).is_dir()
        assert not Path("/tmp", name).exists(), "a host directory was created"
    finally:
        if Path("/tmp", name).is_dir():
            os.rmdir(Path("/tmp", name))


def test_symlinked_parent_with_dotdot_stays_inside(run_container, bundle, tmp_path):
    # rootfs/up -> ../../../../.. : a mount under /up/<host path> must land in the rootfs.
    host_dir = tmp_path / "host-side"
    host_dir.mkdir()
    (bundle.rootfs / "up").symlink_to("../../../../../../../..")
    dest = "/up" + str(host_dir)
    r = run_container(["sh", "-c", f"touch {host_dir}/planted && echo ok"],
                      edit=lambda c: add_mount(c, dest, "tmpfs", "tmpfs", []))
    assert r.rc == 0, r
    assert r.out == "ok\n"
    assert list(host_dir.iterdir()) == [], "the container wrote into a host directory"
    assert (bundle.rootfs / str(host_dir).lstrip("/")).is_dir()


# -- the root itself -------------------------------------------------------------------------------

def test_readonly_root(run_container, bundle):
    r = run_container(["sh", "-c", "touch /x && echo WROTE"])
    assert r.rc != 0, r
    assert "WROTE" not in r.out
    assert not (bundle.rootfs / "x").exists()


def test_writable_root(run_container, bundle):
    def edit(cfg: dict) -> None:
        cfg["root"]["readonly"] = False

    r = run_container(["sh", "-c", "touch /x && echo WROTE"], edit=edit)
    assert r.rc == 0, r
    assert r.out == "WROTE\n"
    assert (bundle.rootfs / "x").exists()


def _root_tags(cfg_prop: str | None, run_container) -> list[str]:
    def edit(cfg: dict) -> None:
        if cfg_prop is not None:
            cfg["linux"]["rootfsPropagation"] = cfg_prop

    r = run_container(["cat", "/proc/self/mountinfo"], edit=edit)
    assert r.rc == 0, r
    return mount_at(r.out, "/").tags


@pytest.mark.parametrize("prop", ["shared", "rshared"])
def test_rootfs_propagation_shared(run_container, prop):
    tags = _root_tags(prop, run_container)
    assert any(t.startswith("shared:") for t in tags), tags


@pytest.mark.parametrize("prop", ["private", "rprivate"])
def test_rootfs_propagation_private(run_container, prop):
    tags = _root_tags(prop, run_container)
    assert tags == [], tags


@pytest.mark.parametrize("prop", ["unbindable", "runbindable"])
def test_rootfs_propagation_unbindable(run_container, prop):
    tags = _root_tags(prop, run_container)
    assert "unbindable" in tags, tags


@pytest.mark.parametrize("prop", [None, "slave", "rslave"])
def test_rootfs_propagation_default_and_slave_not_shared(run_container, prop):
    tags = _root_tags(prop, run_container)
    assert not any(t.startswith("shared:") for t in tags), tags


def test_unknown_rootfs_propagation_refused(pyrunc, run_container):
    def edit(cfg: dict) -> None:
        cfg["linux"]["rootfsPropagation"] = "sideways"

    r = run_container(["true"], edit=edit)
    assert r.rc != 0, r
    assert "rootfsPropagation" in one_line_error(r.err)


def test_no_pivot(run_container, bundle, tmp_path):
    (bundle.rootfs / "marker").write_text("in rootfs")
    r = run_container(["sh", "-c", sep("cat /marker", "ls /",
                                       f"test -e {tmp_path} && echo HOST-VISIBLE",
                                       "readlink /proc/self/root")],
                      flags=("--no-pivot",))
    assert r.rc == 0, r
    marker, listing, host, root = r.out.split("@@\n")
    assert marker == "in rootfs"
    assert sorted(listing.split()) == sorted(p.name for p in bundle.rootfs.iterdir())
    assert "HOST-VISIBLE" not in host
    assert root.strip() == "/"


def test_no_mount_left_under_bundle_after_run(run_container, bundle, tmp_path):
    share = tmp_path / "share"
    share.mkdir()

    def edit(cfg: dict) -> None:
        add_mount(cfg, "/mnt/share", "bind", str(share), ["rbind"])
        add_mount(cfg, "/scratch", "tmpfs", "tmpfs", [])

    r = run_container(["true"], edit=edit)
    assert r.rc == 0, r
    text = Path("/proc/self/mountinfo").read_text()
    assert str(bundle.path) not in text and str(share) not in text


# -- /dev ------------------------------------------------------------------------------------------

DEFAULT_DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
                   "urandom": (1, 9), "tty": (5, 0)}
DEFAULT_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                 "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}


def test_default_devices(run_container):
    script = "; ".join(f"echo {n} $(stat -c '%t:%T %a' /dev/{n}) $(test -c /dev/{n} && echo chr)"
                       for n in DEFAULT_DEVICES)
    r = run_container(["sh", "-c", script])
    assert r.rc == 0, r
    seen = {line.split()[0]: line.split()[1:] for line in r.out.splitlines()}
    for name, (major, minor) in DEFAULT_DEVICES.items():
        assert seen.get(name) == [f"{major:x}:{minor:x}", "666", "chr"], (name, r.out)


def test_default_dev_symlinks(run_container):
    script = "; ".join(f"echo {n} $(readlink /dev/{n})" for n in DEFAULT_LINKS)
    r = run_container(["sh", "-c", script])
    assert r.rc == 0, r
    seen = dict(line.split(" ", 1) for line in r.out.splitlines())
    assert seen == DEFAULT_LINKS


def test_dev_pts_and_shm_mounted(run_container):
    r = run_container(["cat", "/proc/self/mountinfo"])
    assert r.rc == 0, r
    assert mount_at(r.out, "/dev/pts").fstype == "devpts"
    shm = mount_at(r.out, "/dev/shm")
    assert shm.fstype == "tmpfs" and {"nosuid", "nodev", "noexec"} <= shm.opts, shm
    assert mount_at(r.out, "/dev").fstype == "tmpfs"


def test_linux_devices_char_and_fifo(run_container):
    def edit(cfg: dict) -> None:
        cfg["linux"]["devices"] = [
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600,
             "uid": 0, "gid": 0},
            {"path": "/dev/myfifo", "type": "p", "fileMode": 0o640, "uid": 65534, "gid": 65534},
            {"path": "/dev/sub/dir/mynull", "type": "c", "major": 1, "minor": 3},
        ]

    r = run_container(["sh", "-c", sep(
        "stat -c '%t:%T %a %u:%g' /dev/fuse; test -c /dev/fuse && echo chr",
        "stat -c '%a %u:%g' /dev/myfifo; test -p /dev/myfifo && echo fifo",
        "stat -c '%t:%T' /dev/sub/dir/mynull; test -c /dev/sub/dir/mynull && echo chr")],
        edit=edit)
    assert r.rc == 0, r
    fuse, fifo, mynull = r.out.split("@@\n")
    assert fuse.split() == ["a:e5", "600", "0:0", "chr"], fuse
    assert fifo.split() == ["640", "65534:65534", "fifo"], fifo
    assert mynull.split() == ["1:3", "chr"], mynull


def _image_dev(cfg: dict) -> None:
    """No tmpfs on /dev (nor anything below it): nodes go into the image's own /dev."""
    cfg["mounts"] = [m for m in cfg["mounts"] if not m["destination"].startswith("/dev")]


def test_devices_in_the_image_dev_replace_its_entries(run_container, bundle):
    dev = bundle.rootfs / "dev"
    (dev / "null").write_text("not a device")
    (dev / "zero").symlink_to("/host-file")
    os.chown(dev, 0, 5)
    os.chmod(dev, 0o2775)   # set-group-ID: new nodes take group 5 unless chowned

    def edit(cfg: dict) -> None:
        _image_dev(cfg)
        cfg["linux"]["devices"] = [
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "uid": 0, "gid": 0},
            {"path": "/dev/mine", "type": "c", "major": 1, "minor": 3, "uid": 65534, "gid": 5},
        ]

    script = "stat -c '%n %t:%T %F %u:%g' /dev/null /dev/zero /dev/fuse /dev/tty /dev/mine"
    r = run_container(["sh", "-c", script], edit=edit)
    assert r.rc == 0, r
    seen = {line.split()[0]: line.split(" ", 1)[1] for line in r.out.splitlines()}
    assert seen == {"/dev/null": "1:3 character special file 0:0",
                    "/dev/zero": "1:5 character special file 0:0",
                    "/dev/fuse": "a:e5 character special file 0:0",
                    "/dev/tty": "5:0 character special file 0:0",
                    "/dev/mine": "1:3 character special file 65534:5"}, r.out
    assert not Path("/host-file").exists()


def test_device_over_an_image_directory_is_a_clear_error(pyrunc, run_container, bundle):
    (bundle.rootfs / "dev" / "fuse").mkdir()

    def edit(cfg: dict) -> None:
        _image_dev(cfg)
        cfg["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]

    r = run_container(["true"], edit=edit)
    assert r.rc != 0
    assert "/linux/devices: /dev/fuse is a directory" in one_line_error(r.err), r


@pytest.mark.parametrize("cgroupns", [False, True])
def test_sys_fs_cgroup_is_read_only_with_one_mount_per_hierarchy(run_container, cgroupns):
    hierarchies = sorted(h.name for h in Path("/sys/fs/cgroup").iterdir()
                         if h.is_dir() and os.path.ismount(h))
    if not hierarchies or os.path.ismount("/sys/fs/cgroup") and not hierarchies[1:]:
        pytest.skip("not a v1 or hybrid cgroup host")

    def edit(cfg: dict) -> None:
        if cgroupns:
            cfg["linux"]["namespaces"].append({"type": "cgroup"})

    r = run_container(["sh", "-c", sep("cat /proc/self/mountinfo", "ls /sys/fs/cgroup",
                                       "cat /sys/fs/cgroup/pids/pids.max",
                                       "mkdir /sys/fs/cgroup/x 2>&1; echo rc=$?")], edit=edit)
    assert r.rc == 0, r
    info, names, pids_max, mkdir = r.out.split("@@\n")
    top = mount_at(info, "/sys/fs/cgroup")
    assert top.fstype == "tmpfs" and {"ro", "nosuid", "nodev", "noexec"} <= top.opts, top
    assert names.split() == hierarchies, names
    for name in hierarchies:
        sub = mount_at(info, f"/sys/fs/cgroup/{name}")
        assert sub.fstype in ("cgroup", "cgroup2") and "ro" in sub.opts, sub
        assert sub.root == "/" or not cgroupns, sub
    assert pids_max.strip() == "max", pids_max
    assert "rc=0" not in mkdir, mkdir


# -- masked and read-only paths --------------------------------------------------------------------

def test_masked_file_reads_empty(run_container):
    masked = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list") if os.path.exists(p)]
    assert masked, "no maskable /proc file on this host"
    for p in masked:
        try:
            with open(p, "rb") as f:
                assert f.read(1), f"host {p} is empty: cannot tell masking"
        except OSError:
            pass
    r = run_container(["sh", "-c", "; ".join(f"echo {p} $(cat {p} | wc -c)" for p in masked)])
    assert r.rc == 0, r
    sizes = dict(line.split() for line in r.out.splitlines())
    assert sizes == {p: "0" for p in masked}, r.out


def test_masked_directory_is_empty(run_container):
    assert os.listdir("/sys/firmware"), "host /sys/firmware is empty: cannot tell masking"
    r = run_container(["sh", "-c", "ls -A /sys/firmware | wc -l; touch /sys/firmware/x && echo W"])
    assert r.rc != 0 or "W" not in r.out
    assert r.out.split()[0] == "0", r


def test_masked_paths_that_do_not_exist_are_tolerated(run_container):
    def edit(cfg: dict) -> None:
        cfg["linux"]["maskedPaths"] += ["/proc/pyrunc-no-such-file", "/no/such/dir/at/all"]

    r = run_container(["echo", "ok"], edit=edit)
    assert r.rc == 0, r
    assert r.out == "ok\n"


def assert_write_refused(run_container, write: str, point: str) -> None:
    """In a container, the shell command `write` fails with EROFS: `point` is mounted ro."""
    r = run_container(["sh", "-c", sep(f"{write} && echo WROTE", "cat /proc/self/mountinfo")])
    assert r.rc == 0, r
    wrote, info = r.out.split("@@\n")
    assert "WROTE" not in wrote, r
    assert "Read-only file system" in r.err, r.err
    assert "ro" in mount_at(info, point).opts


def test_readonly_sysrq_trigger(run_container):
    if not os.path.exists("/proc/sysrq-trigger"):
        pytest.skip("this kernel has no /proc/sysrq-trigger (CONFIG_MAGIC_SYSRQ off)")
    # 'h' only prints sysrq help to the kernel log, should the protection be missing.
    assert_write_refused(run_container, "echo h > /proc/sysrq-trigger", "/proc/sysrq-trigger")


def test_readonly_proc_irq(run_container):
    # Writes back the value it read: harmless even if the protection were missing.
    f = "/proc/irq/default_smp_affinity"
    if not os.path.exists(f):
        pytest.skip(f"this kernel has no {f}")
    assert_write_refused(run_container, f"v=$(cat {f}); echo $v > {f}", "/proc/irq")


def test_readonly_proc_sys(run_container):
    r = run_container(["sh", "-c", sep("echo changed > /proc/sys/kernel/hostname && echo WROTE",
                                       "hostname", "cat /proc/self/mountinfo")])
    assert r.rc == 0, r
    wrote, hostname, info = r.out.split("@@\n")
    assert "WROTE" not in wrote
    assert hostname.strip() == "pyrunc"
    assert "ro" in mount_at(info, "/proc/sys").opts


# -- hostname, domainname, sysctl ------------------------------------------------------------------

def test_hostname_and_domainname(run_container):
    def edit(cfg: dict) -> None:
        cfg["hostname"] = "box-" + cid_tag
        cfg["domainname"] = "dom-" + cid_tag

    cid_tag = uuid.uuid4().hex[:6]
    r = run_container(["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"], edit=edit)
    assert r.rc == 0, r
    assert r.out.split() == ["box-" + cid_tag, "dom-" + cid_tag]


def test_namespaced_sysctls_applied(run_container):
    host_fwd = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    host_shmmax = Path("/proc/sys/kernel/shmmax").read_text()
    wanted_fwd = "0" if host_fwd.strip() == "1" else "1"

    def edit(cfg: dict) -> None:
        cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": wanted_fwd, "kernel.shmmax": "123456789"}

    r = run_container(["cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/shmmax"],
                      edit=edit)
    assert r.rc == 0, r
    assert r.out.split() == [wanted_fwd, "123456789"]
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host_fwd
    assert Path("/proc/sys/kernel/shmmax").read_text() == host_shmmax


@pytest.mark.parametrize("key,value", [("vm.swappiness", "17"), ("kernel.panic", "7")])
def test_host_sysctl_refused(pyrunc, run_container, key, value):
    path = Path("/proc/sys", *key.split("."))
    before = path.read_text()

    def edit(cfg: dict) -> None:
        cfg["linux"]["sysctl"] = {key: value}

    r = run_container(["true"], edit=edit)
    assert r.rc != 0, r
    assert key in one_line_error(r.err)
    assert path.read_text() == before
    assert not (pyrunc.root / r.cid).exists()


def test_net_sysctl_without_network_namespace_refused(pyrunc, run_container):
    before = Path("/proc/sys/net/ipv4/ip_forward").read_text()

    def edit(cfg: dict) -> None:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"]
                                      if n["type"] != "network"]
        cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "0" if before.strip() == "1" else "1"}

    r = run_container(["true"], edit=edit)
    assert r.rc != 0, r
    assert "net.ipv4.ip_forward" in one_line_error(r.err)
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == before


def test_ipc_sysctl_without_ipc_namespace_refused(pyrunc, run_container):
    def edit(cfg: dict) -> None:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "ipc"]
        cfg["linux"]["sysctl"] = {"kernel.shmmax": "123456789"}

    r = run_container(["true"], edit=edit)
    assert r.rc != 0, r
    assert "kernel.shmmax" in one_line_error(r.err)


def test_sysfs_without_network_namespace_is_hosts(run_container):
    def edit(cfg: dict) -> None:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"]
                                      if n["type"] != "network"]

    r = run_container(["sh", "-c", sep("ls /sys/class/net", "cat /proc/self/mountinfo")],
                      edit=edit)
    assert r.rc == 0, r
    names, info = r.out.split("@@\n")
    assert sorted(names.split()) == sorted(os.listdir("/sys/class/net"))
    sys_mount = mount_at(info, "/sys")
    assert "ro" in sys_mount.opts, sys_mount


def test_sysfs_with_new_network_namespace_is_its_own(run_container):
    r = run_container(["ls", "/sys/class/net"])
    assert r.rc == 0, r
    assert r.out.split() == ["lo"]
