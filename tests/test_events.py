"""`pyrunc events`: --stats against the cgroup files (and runc's field layout), the --interval
stream, and an OOM notice from a container that allocates past its memory limit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import one_line_error

from pyrunc.errors import PyruncError
from pyrunc.events import parse_duration

RUNC = shutil.which("runc") or "/usr/sbin/runc"
kernel = pytest.mark.kernel


def test_durations() -> None:
    assert parse_duration("5s") == 5.0
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("250ms") == 0.25
    for bad in ("5", "s", "5x", ""):
        with pytest.raises(PyruncError, match="--interval"):
            parse_duration(bad)


def _create(pyrunc, bundle, tmp_path: Path, resources: dict, args: list[str]) -> str:
    cfg = bundle.edit()
    cfg["process"]["args"] = args
    cfg["linux"]["resources"] = resources
    bundle.write()
    cid = pyrunc.new_id()
    with open(tmp_path / f"{cid}.out", "wb") as out:
        pyrunc("create", "--bundle", str(bundle.path), cid, check=True, capture_output=False,
               stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    return cid


def _v1(pid: int, ctrl: str, name: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, keys, path = line.split(":", 2)
        if ctrl in keys.split(","):
            return Path(f"/sys/fs/cgroup/{ctrl}{path}/{name}").read_text()
    raise AssertionError(f"no {ctrl} hierarchy")


def _shape(value: object) -> object:
    """The field names of a stats object, recursively (raw's kernel-dependent keys aside)."""
    if isinstance(value, dict):
        return {k: (None if k == "raw" else _shape(v)) for k, v in value.items()}
    return type(value).__name__


RES = {"memory": {"limit": 64 << 20}, "pids": {"limit": 50}, "cpu": {"shares": 512},
       "devices": [{"allow": False, "access": "rwm"}]}


@kernel
def test_stats_match_the_cgroup_files(pyrunc, bundle, tmp_path) -> None:
    cid = _create(pyrunc, bundle, tmp_path, RES, ["sleep", "1000"])
    pid = pyrunc.state(cid)["pid"]
    res = pyrunc("events", "--stats", cid)
    assert res.returncode == 0 and res.stderr == b"", res
    assert res.stdout.count(b"\n") == 1                     # one JSON object, one line
    event = json.loads(res.stdout)
    assert (event["type"], event["id"]) == ("stats", cid)
    data = event["data"]
    assert data["memory"]["usage"]["limit"] == int(_v1(pid, "memory", "memory.limit_in_bytes"))
    assert data["memory"]["usage"].get("usage", 0) == int(_v1(pid, "memory", "memory.usage_in_bytes"))
    assert data["pids"] == {"current": int(_v1(pid, "pids", "pids.current")), "limit": 50}
    assert data["cpu"]["usage"].get("total", 0) == int(_v1(pid, "cpuacct", "cpuacct.usage"))
    assert data["cpu"]["usage"]["percpu"] == [int(x) for x in _v1(pid, "cpuacct",
                                                                  "cpuacct.usage_percpu").split()]
    raw = dict(line.split() for line in _v1(pid, "memory", "memory.stat").splitlines())
    assert data["memory"]["raw"] == {k: int(v) for k, v in raw.items()}
    assert data["network_interfaces"] is None and data["intel_rdt"] == {}


@kernel
@pytest.mark.skipif(not os.access(RUNC, os.X_OK), reason="runc (the oracle) is not installed")
def test_stats_have_runcs_fields(pyrunc, bundle, tmp_path) -> None:
    ours = _create(pyrunc, bundle, tmp_path, RES, ["sleep", "1000"])
    pyrunc("start", ours, check=True)                       # both started: memory in use
    mine = json.loads(pyrunc("events", "--stats", ours, check=True).stdout)
    theirs = pyrunc.new_id("runc")
    runc = [RUNC, "--root", str(tmp_path / "runc")]
    with open(tmp_path / "runc.out", "wb") as out:
        proc = subprocess.run([*runc, "create", "--bundle", str(bundle.path), theirs],
                              stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60, check=False)
    try:
        assert proc.returncode == 0, (tmp_path / "runc.out").read_text()
        subprocess.run([*runc, "start", theirs], capture_output=True, timeout=60, check=True)
        ref = json.loads(subprocess.run([*runc, "events", "--stats", theirs], capture_output=True,
                                        timeout=60, check=True).stdout)
    finally:
        subprocess.run([*runc, "delete", "--force", theirs], capture_output=True, timeout=60, check=False)
    got = _shape(mine["data"])
    want = _shape(ref["data"])
    # runc 1.1 finds no hugetlb on this hybrid host (it is on cgroup2 here); we report it
    got.pop("hugetlb"), want.pop("hugetlb")
    # zero counters are left out by both (Go's omitempty), so compare the always-there fields
    for part in ("cpuset", "pids", "intel_rdt", "network_interfaces", "blkio"):
        assert got[part] == want[part], part
    assert got["memory"] == want["memory"]
    assert set(got["cpu"]) == set(want["cpu"]) and set(got["cpu"]["usage"]) == set(want["cpu"]["usage"])


@kernel
def test_stream_and_oom_notice(pyrunc, bundle, tmp_path) -> None:
    res = {"memory": {"limit": 16 << 20, "swap": 16 << 20}}
    script = "sleep 1; dd if=/dev/zero of=/dev/shm/fill bs=1M count=64; sleep 1000"
    cid = _create(pyrunc, bundle, tmp_path, res, ["sh", "-c", script])
    with subprocess.Popen([pyrunc.binary, "--root", str(pyrunc.root), "events", "--interval",
                           "1s", cid], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as stream:
        try:
            first = json.loads(stream.stdout.readline())       # the OOM watch is in place now
            assert first["type"] == "stats" and first["data"]["memory"]["usage"]["limit"] == 16 << 20
            pyrunc("start", cid, check=True)
            kinds = []
            while "oom" not in kinds:
                line = stream.stdout.readline()
                assert line, f"stream ended before an oom event: {kinds} {stream.stderr.read()!r}"
                event = json.loads(line)
                assert event["id"] == cid
                kinds.append(event["type"])
            assert kinds.count("stats") >= 1
            pyrunc("delete", "--force", cid, check=True)
            assert stream.wait(timeout=30) == 0                # the stream ends with the container
        finally:
            if stream.poll() is None:
                stream.kill()


@kernel
def test_events_of_a_stopped_container(pyrunc, bundle, tmp_path) -> None:
    cid = _create(pyrunc, bundle, tmp_path, {}, ["true"])
    pyrunc("start", cid, check=True)
    for _ in range(500):
        if pyrunc.state(cid)["status"] == "stopped":
            break
    res = pyrunc("events", "--stats", cid)
    assert res.returncode == 1 and res.stdout == b""
    assert "is not running" in one_line_error(res.stderr.decode())
    res = pyrunc("events", "--interval", "soon", cid)
    assert res.returncode == 1 and "--interval" in one_line_error(res.stderr.decode())
