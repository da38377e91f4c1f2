"""`pyrunc update`: runc's flags and --resources (file, =file, stdin) change live limits."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pyrunc.update import parse_bytes

pytestmark = pytest.mark.kernel


@pytest.fixture
def running(pyrunc, bundle):
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sleep", "100000"]
    bundle.write()
    cid = pyrunc.new_id()
    pyrunc("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    return cid


def _cgroup_file(pid: int, controller: str, name: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, keys, path = line.split(":", 2)
        if controller in keys.split(","):
            return Path(f"/sys/fs/cgroup/{controller}{path}/{name}").read_text().strip()
    raise AssertionError(f"no {controller} hierarchy for {pid}")


def test_flags(pyrunc, running):
    pyrunc("update", "--memory", "64m", "--memory-reservation=32M", "--cpu-shares", "512",
           "--cpu-quota", "50000", "--cpu-period", "100000", "--pids-limit", "77",
           "--cpuset-cpus", "0", running, check=True)
    pid = pyrunc.state(running)["pid"]
    assert _cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(64 << 20)
    assert _cgroup_file(pid, "memory", "memory.soft_limit_in_bytes") == str(32 << 20)
    assert _cgroup_file(pid, "cpu", "cpu.shares") == "512"
    assert _cgroup_file(pid, "cpu", "cpu.cfs_quota_us") == "50000"
    assert _cgroup_file(pid, "pids", "pids.max") == "77"
    assert _cgroup_file(pid, "cpuset", "cpuset.cpus") == "0"


@pytest.mark.parametrize("form", ["file", "equals", "stdin"])
def test_resources_document(pyrunc, running, tmp_path, form):
    doc = {"memory": {"limit": 128 << 20, "swap": 256 << 20}, "pids": {"limit": 99}}
    path = tmp_path / "res.json"
    path.write_text(json.dumps(doc))
    if form == "file":
        pyrunc("update", "--resources", str(path), running, check=True)
    elif form == "equals":
        pyrunc("update", f"--resources={path}", running, check=True)
    else:
        pyrunc("update", "--resources", "-", running, input=json.dumps(doc).encode(), check=True)
    pid = pyrunc.state(running)["pid"]
    assert _cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(128 << 20)
    assert _cgroup_file(pid, "memory", "memory.memsw.limit_in_bytes") == str(256 << 20)
    assert _cgroup_file(pid, "pids", "pids.max") == "99"


@pytest.mark.parametrize("args, needle", [
    (["--memory", "12x"], b"--memory: invalid size"),
    (["--l3-cache-schema", "L3:0=f"], b"Intel RDT"),
    (["--cpuset-cpus", "99-100"], b"cpuset.cpus"),
])
def test_bad_updates_fail_with_one_line_and_change_nothing(pyrunc, running, args, needle):
    pid = pyrunc.state(running)["pid"]
    before = _cgroup_file(pid, "memory", "memory.limit_in_bytes")
    res = pyrunc("update", *args, running)
    assert res.returncode == 1
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert _cgroup_file(pid, "memory", "memory.limit_in_bytes") == before
    assert pyrunc.state(running)["status"] == "running"


def test_invalid_document_names_the_field(pyrunc, running, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"pids": {"limit": "x"}}')
    res = pyrunc("update", "--resources", str(bad), running)
    assert res.returncode == 1 and b"/linux/resources/pids/limit" in res.stderr


def test_update_of_a_stopped_container_is_refused(pyrunc, running):
    pyrunc("kill", running, "KILL", check=True)
    for _ in range(250):
        if pyrunc.state(running)["status"] == "stopped":
            break
    res = pyrunc("update", "--memory", "64m", running)
    assert res.returncode == 1 and b"stopped" in res.stderr


@pytest.mark.parametrize("text, value", [("64m", 64 << 20), ("1G", 1 << 30), ("512k", 512 << 10),
                                         ("1000", 1000), ("-1", -1), ("1.5g", 3 << 29)])
def test_sizes(text, value):
    assert parse_bytes("memory", text) == value


DOCKER_DEVICES = [{"allow": False, "access": "rwm"},
                  {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                  {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
                  {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]


def test_resending_the_same_devices_never_blocks_an_open(pyrunc, running, tmp_path):
    """containerd resends the whole devices list on every update: rewriting it would deny
    everything for a moment (deny-all comes first), and an open in the container fail."""
    doc = tmp_path / "res.json"
    doc.write_text(json.dumps({"devices": DOCKER_DEVICES, "pids": {"limit": 500}}))
    pyrunc("update", "--resources", str(doc), running, check=True)
    pid = pyrunc.state(running)["pid"]
    listed = _cgroup_file(pid, "devices", "devices.list")
    loop = ("while test ! -e /dev/shm/stop; do true > /dev/null || echo fail >> /dev/shm/fails; done; "
            "touch /dev/shm/done")
    shm = Path(f"/proc/{pid}/root/dev/shm")     # the rootfs is read-only; /dev/shm is a tmpfs
    with open(tmp_path / "exec.out", "wb") as out:
        pyrunc("exec", "-d", running, "sh", "-c", loop, check=True, capture_output=False,
               stdout=out, stderr=out)
    for _ in range(20):
        pyrunc("update", "--resources", str(doc), running, check=True)
    (shm / "stop").touch()
    deadline = time.monotonic() + 10
    while not (shm / "done").exists():
        assert time.monotonic() < deadline, "the open loop never stopped"
        time.sleep(0.01)
    assert not (shm / "fails").exists(), (shm / "fails").read_text()
    assert _cgroup_file(pid, "devices", "devices.list") == listed
    # a changed list is still applied
    doc.write_text(json.dumps({"devices": DOCKER_DEVICES[:-1]}))
    pyrunc("update", "--resources", str(doc), running, check=True)
    assert "c 10:229 rwm" not in listed.splitlines()
    assert "c 10:229 rwm" not in _cgroup_file(pid, "devices", "devices.list").splitlines()
    doc.write_text(json.dumps({"devices": DOCKER_DEVICES[:-1] + [
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}]}))
    pyrunc("update", "--resources", str(doc), running, check=True)
    assert "c 10:229 rw" in _cgroup_file(pid, "devices", "devices.list").splitlines()
