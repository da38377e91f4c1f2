"""`pyrunc update`: runc's flags and --resources (file, =file, stdin) change live limits."""

from __future__ import annotations

import json
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
