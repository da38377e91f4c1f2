"""Where a container's processes live: linux.cgroupsPath resolved in every hierarchy of the host
(v1 controllers, named hierarchies, and cgroup2 at /sys/fs/cgroup/unified on this hybrid host),
and `delete` removing exactly the directories `create` made.

runc 1.1.5 (/usr/sbin/runc) is the oracle for the default placement.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

RUNC = shutil.which("runc") or "/usr/sbin/runc"
needs_runc = pytest.mark.skipif(not os.access(RUNC, os.X_OK),
                                reason="runc (the oracle) is not installed")


def cgroup_file(pid: int | str) -> dict[str, str]:
    """/proc/<pid>/cgroup as {hierarchy key: path} ("" is cgroup2)."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, key, path = line.split(":", 2)
        out[key] = path
    return out


def hierarchies() -> dict[str, str]:
    """{hierarchy key as /proc/self/cgroup names it: mount point} of the host."""
    found: dict[str, str] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fstype, _src, superopts = (post.split() + ["", ""])[:3]
        fields = pre.split()
        if fstype not in ("cgroup", "cgroup2") or fields[3] != "/":
            continue
        if fstype == "cgroup2":
            key = ""
        else:
            own = cgroup_file("self")
            opts = superopts.split(",")
            key = next((k for k in own if k and set(k.split(",")) <= set(opts)), None)
            if key is None:
                continue
        found.setdefault(key, fields[4])
    return found


def join(base: str, rel: str) -> str:
    return "/" + "/".join(p for p in (base.strip("/"), rel.strip("/")) if p)


def create(rt_binary: list[str], bundle, cid: str) -> subprocess.CompletedProcess:
    """`create`: the init keeps its stdio, so it goes to a file, never a pipe we would wait on."""
    log = bundle.path.parent / f"{cid}.create.log"
    with open(log, "wb") as f:
        proc = subprocess.run([*rt_binary, "create", "--bundle", str(bundle.path), cid],
                              stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                              timeout=30, check=False)
    proc.stdout = log.read_bytes()
    return proc


def init_pid(rt_binary: list[str], cid: str) -> int:
    out = subprocess.run([*rt_binary, "state", cid], capture_output=True, check=True, timeout=30)
    return json.loads(out.stdout)["pid"]


def write_config(bundle, cgroups_path: str | None) -> None:
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sleep", "1000"]
    if cgroups_path is not None:
        cfg["linux"]["cgroupsPath"] = cgroups_path
    bundle.write()


@pytest.fixture
def created(pyrunc, bundle):
    """created(cgroupsPath) -> (cid, pid) of a `pyrunc create`d container; deleted afterwards."""
    made: list[str] = []
    rt = [pyrunc.binary, "--root", str(pyrunc.root)]

    def make(cgroups_path: str | None, cid: str | None = None) -> tuple[str, int]:
        write_config(bundle, cgroups_path)
        cid = cid or pyrunc.new_id()
        proc = create(rt, bundle, cid)
        assert proc.returncode == 0, proc.stdout
        made.append(cid)
        return cid, init_pid(rt, cid)

    yield make
    for cid in made:
        pyrunc("delete", "--force", cid)


def test_default_cgroups_path_is_own_cgroup_plus_id(created):
    own = cgroup_file("self")
    cid, pid = created(None)
    placed = cgroup_file(pid)
    assert set(placed) == set(own)
    for key, path in own.items():
        assert placed[key] == join(path, cid), (key, placed[key])


@needs_runc
def test_empty_cgroups_path_matches_runc(pyrunc, created, bundle, tmp_path):
    cid, pid = created("")
    ours = cgroup_file(pid)
    runc_id = pyrunc.new_id("runc")
    runc = [RUNC, "--root", str(tmp_path / "runc-root")]
    proc = create(runc, bundle, runc_id)   # same bundle, same config (cgroupsPath "")
    assert proc.returncode == 0, proc.stdout
    try:
        theirs = cgroup_file(init_pid(runc, runc_id))
    finally:
        subprocess.run([*runc, "delete", "--force", runc_id], check=True, timeout=30,
                       capture_output=True)
    assert set(ours) == set(theirs)
    for key in theirs:
        assert ours[key].rsplit("/", 1)[0] == theirs[key].rsplit("/", 1)[0], (key, ours, theirs)
        assert ours[key].rsplit("/", 1)[1] == cid and theirs[key].rsplit("/", 1)[1] == runc_id


def test_directories_exist_in_every_hierarchy(created):
    own = cgroup_file("self")
    cid, pid = created(None)
    for key, mountpoint in hierarchies().items():
        directory = Path(mountpoint + join(own[key], cid))
        assert directory.is_dir(), directory
        procs = (directory / "cgroup.procs").read_text().split()
        assert str(pid) in procs, (directory, procs)


def test_absolute_cgroups_path(pyrunc, created):
    top = f"{pyrunc.prefix}-abs"
    cid, pid = created(f"/{top}/x")
    placed = cgroup_file(pid)
    for key, mountpoint in hierarchies().items():
        assert placed[key] == f"/{top}/x", (key, placed)
        assert str(pid) in (Path(mountpoint) / top / "x" / "cgroup.procs").read_text().split()
    pyrunc("delete", "--force", cid, check=True)
    for key, mountpoint in hierarchies().items():
        assert not (Path(mountpoint) / top).exists(), f"{mountpoint}/{top} left after delete"


def test_relative_cgroups_path(pyrunc, created):
    own = cgroup_file("self")
    rel = f"{pyrunc.prefix}-rel/y"
    cid, pid = created(rel)
    placed = cgroup_file(pid)
    for key, path in own.items():
        assert placed[key] == join(path, rel), (key, placed[key])
    pyrunc("delete", "--force", cid, check=True)
    for key, mountpoint in hierarchies().items():
        assert not Path(mountpoint + join(own[key], f"{pyrunc.prefix}-rel")).exists()


def test_delete_keeps_a_parent_it_did_not_create(pyrunc, created):
    parent = f"{pyrunc.prefix}-parent"
    pre_existing = Path("/sys/fs/cgroup/pids") / parent
    pre_existing.mkdir()
    try:
        cid, pid = created(f"/{parent}/c")
        assert cgroup_file(pid)["pids"] == f"/{parent}/c"
        pyrunc("delete", "--force", cid, check=True)
        assert pre_existing.is_dir(), "delete removed a cgroup the container did not create"
        assert not (pre_existing / "c").exists()
        for key, mountpoint in hierarchies().items():
            if key != "pids":
                assert not (Path(mountpoint) / parent).exists(), f"{mountpoint}/{parent} left"
    finally:
        deadline = time.monotonic() + 5
        while pre_existing.exists():
            try:
                pre_existing.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


def test_delete_after_exit_removes_cgroups(pyrunc, created):
    top = f"{pyrunc.prefix}-exit"
    cid, _pid = created(f"/{top}/z")
    pyrunc("kill", cid, "KILL", check=True)
    deadline = time.monotonic() + 10
    while pyrunc.state(cid)["status"] != "stopped":
        assert time.monotonic() < deadline, "container did not stop"
        time.sleep(0.01)
    pyrunc("delete", cid, check=True)
    for mountpoint in hierarchies().values():
        assert not (Path(mountpoint) / top).exists()


def test_delete_after_exit_kills_what_the_init_left(pyrunc, bundle):
    """A container in the host's pid namespace whose init exits while a child of it lives on:
    `delete` of the stopped container (whose rmdir is refused while the child is there) kills
    that process and then removes every cgroup directory."""
    top = f"{pyrunc.prefix}-strays"
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sh", "-c", "sleep 1000 </dev/null >/dev/null 2>&1 & exit 0"]
    cfg["linux"]["namespaces"] = [ns for ns in cfg["linux"]["namespaces"] if ns["type"] != "pid"]
    cfg["linux"]["cgroupsPath"] = f"/{top}/s"
    bundle.write()
    cid = pyrunc.new_id()
    rt = [pyrunc.binary, "--root", str(pyrunc.root)]
    try:
        assert create(rt, bundle, cid).returncode == 0
        pyrunc("start", cid, check=True)
        deadline = time.monotonic() + 10
        while pyrunc.state(cid)["status"] != "stopped":
            assert time.monotonic() < deadline, "container did not stop"
            time.sleep(0.01)
        procs = Path(hierarchies()[""]) / top / "s" / "cgroup.procs"
        strays = [int(p) for p in procs.read_text().split()]
        assert strays, "the init's child should still be in the container's cgroup"
        r = pyrunc("delete", cid)
        assert r.returncode == 0, r.stderr
        for pid in strays:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except FileNotFoundError:
                continue
            assert stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"), f"{pid} survived the delete"
        for mountpoint in hierarchies().values():
            assert not (Path(mountpoint) / top).exists(), f"{mountpoint}/{top} left"
    finally:
        pyrunc("delete", "--force", cid)


@pytest.mark.parametrize("path", ["/{p}-a/../{p}-b", "../{p}-up", "{p}-c/../../x", "/{p}/.."])
def test_dotdot_in_cgroups_path_refused(pyrunc, bundle, path):
    write_config(bundle, path.format(p=pyrunc.prefix))
    cid = pyrunc.new_id()
    r = create([pyrunc.binary, "--root", str(pyrunc.root)], bundle, cid)
    assert r.returncode != 0, r
    err = r.stdout.decode()
    lines = [line for line in err.splitlines()
             if line.strip() and not line.startswith("pyrunc: warning:")]
    assert len(lines) == 1 and "cgroupsPath" in lines[0] and ".." in lines[0], err
    assert not (pyrunc.root / cid).exists()


def test_placement_with_cgroup_namespace(created, bundle):
    cfg = bundle.edit()
    cfg["linux"]["namespaces"].append({"type": "cgroup"})
    bundle.write()
    # created() rewrites args and cgroupsPath only: the cgroup namespace stays.
    cid, pid = created(None)
    own = cgroup_file("self")
    assert cgroup_file(pid)["pids"] == join(own["pids"], cid)
    # The init's cgroup namespace is rooted at its own cgroup.
    assert os.readlink(f"/proc/{pid}/ns/cgroup") != os.readlink("/proc/self/ns/cgroup")
