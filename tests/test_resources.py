"""linux.resources: the pure v1/v2 translation (no root), cgroup2 apply against a fake cgroupfs
tree, and real enforcement on this host's v1 hierarchies (kernel tests), with runc as oracle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pyrunc import cgroup_resources as tr
from pyrunc.cgroups import UnifiedManager, V1Manager
from pyrunc.errors import ConfigError

kernel = pytest.mark.kernel
RUNC = shutil.which("runc") or "/usr/sbin/runc"
V1 = {"memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "devices", "freezer"}


# -- pure translation -----------------------------------------------------------------------------

def test_conversions_match_runc_formulas() -> None:
    assert [tr.cpu_weight(s) for s in (2, 1024, 262144)] == [1, 39, 10000]
    assert [tr.io_weight(w) for w in (10, 500, 1000)] == [1, 4950, 10000]
    assert tr.swap_v2(64 << 20, 32 << 20) == 32 << 20
    assert tr.swap_v2(-1, 32 << 20) == -1
    assert tr.swap_v2(0, -1) == -1
    assert tr.swap_v2(0, 32 << 20) == 0
    with pytest.raises(ConfigError, match="memory.swap"):
        tr.swap_v2(16 << 20, 32 << 20)
    with pytest.raises(ConfigError, match="without a memory limit"):
        tr.swap_v2(16 << 20, 0)


FULL = {
    "memory": {"limit": 33554432, "reservation": 16777216, "swap": 67108864, "swappiness": 10,
               "kernel": 1 << 30, "disableOOMKiller": True, "checkBeforeUpdate": True},
    "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000, "cpus": "0-1",
            "mems": "0", "idle": 0},
    "pids": {"limit": 64},
    "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 200}],
                "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": 254, "minor": 0, "rate": 100}]},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
    "unified": {"memory.high": "30M"},
}


def test_v2_translation() -> None:
    warnings: list[str] = []
    got = tr.v2_writes(FULL, lambda _c, name: name != "io.bfq.weight", warnings)
    assert got == [
        ("memory.swap.max", "33554432"), ("memory.max", "33554432"), ("memory.low", "16777216"),
        ("cpu.weight", "39"), ("cpu.max", "50000 100000"), ("cpu.max.burst", "1000"),
        ("cpu.idle", "0"), ("cpuset.cpus", "0-1"), ("cpuset.mems", "0"), ("pids.max", "64"),
        ("io.weight", "4950"), ("io.bfq.weight", "8:0 200"), ("io.max", "254:0 rbps=1048576"),
        ("io.max", "254:0 wiops=100"), ("hugetlb.2MB.max", "4194304"), ("memory.high", "30M"),
    ]
    assert any("memory.kernel" in w for w in warnings)
    assert any("disableOOMKiller" in w for w in warnings)


def test_v2_special_values() -> None:
    res = {"memory": {"limit": -1, "swap": -1}, "cpu": {"quota": -1}, "pids": {"limit": -1}}
    assert tr.v2_writes(res) == [("memory.swap.max", "max"), ("memory.max", "max"),
                                 ("cpu.max", "max"), ("pids.max", "max")]
    # swap == limit: no swap at all, written as 0; -1 without swap accounting: nothing to do
    assert tr.v2_writes({"memory": {"limit": 100, "swap": 100}})[0] == ("memory.swap.max", "0")
    assert tr.v2_writes({"memory": {"swap": -1, "limit": 10}}, lambda c, n: False) == \
        [("memory.max", "10")]
    assert tr.v2_writes({"blockIO": {"weight": 300}}) == [("io.bfq.weight", "300")]
    with pytest.raises(ConfigError, match="realtime"):
        tr.v2_writes({"cpu": {"realtimeRuntime": 1000}})


def test_v1_translation_and_order() -> None:
    warnings: list[str] = []
    def exists(_ctrl: str, name: str) -> bool:
        return name not in ("blkio.weight", "memory.kmem.limit_in_bytes")
    got = tr.v1_writes(FULL, V1, exists, None, warnings)
    assert got == [
        ("memory", "memory.limit_in_bytes", "33554432"),
        ("memory", "memory.memsw.limit_in_bytes", "67108864"),
        ("memory", "memory.soft_limit_in_bytes", "16777216"),
        ("memory", "memory.swappiness", "10"), ("memory", "memory.oom_control", "1"),
        ("cpu", "cpu.shares", "1024"), ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "50000"), ("cpu", "cpu.cfs_burst_us", "1000"),
        ("cpu", "cpu.idle", "0"),
        ("cpuset", "cpuset.cpus", "0-1"), ("cpuset", "cpuset.mems", "0"),
        ("pids", "pids.max", "64"),
        ("blkio", "blkio.bfq.weight", "500"), ("blkio", "blkio.bfq.weight_device", "8:0 200"),
        ("blkio", "blkio.throttle.read_bps_device", "254:0 1048576"),
        ("blkio", "blkio.throttle.write_iops_device", "254:0 100"),
    ]
    assert got[0].field == "linux.resources.memory.limit"
    # raising past the current limit (or unlimited swap): memsw first
    mem = {"memory": {"limit": 200, "swap": -1}}
    assert [w[1] for w in tr.v1_writes(mem, V1)] == ["memory.memsw.limit_in_bytes",
                                                     "memory.limit_in_bytes"]
    mem = {"memory": {"limit": 200, "swap": 400}}
    assert tr.v1_writes(mem, V1, cur_mem_limit=100)[0][1] == "memory.memsw.limit_in_bytes"
    assert tr.v1_writes(mem, V1, cur_mem_limit=1000)[0][1] == "memory.limit_in_bytes"
    # docker's zeros mean unset
    assert tr.v1_writes({"cpu": {"shares": 0}, "blockIO": {"weight": 0},
                         "memory": {"disableOOMKiller": False}}, V1) == []


def test_v1_unhonourable_fields() -> None:
    with pytest.raises(ConfigError, match=r"memory.swappiness: invalid value 101"):
        tr.v1_writes({"memory": {"swappiness": 101}}, V1)
    with pytest.raises(ConfigError, match=r"linux.resources.rdma.mlx4_0: cannot set rdma"):
        tr.v1_writes({"rdma": {"mlx4_0": {"hcaHandles": 3}}}, V1)
    with pytest.raises(ConfigError, match=r"pids.limit: .*pids"):
        tr.v1_writes({"pids": {"limit": 5}}, V1 - {"pids"})
    # runc's rule (and runtime-tools' linux_cgroups_network): unmounted net_cls/net_prio fail.
    for net, field in (({"classID": 7}, "network.classID"),
                       ({"priorities": [{"name": "eth0", "priority": 1}]}, r"network.priorities\[0\]")):
        with pytest.raises(ConfigError, match=field + r": cannot set net_(cls|prio) .* not mounted"):
            tr.v1_writes({"network": net}, V1 - {"net_cls", "net_prio"})
    got = tr.v1_writes({"network": {"classID": 7, "priorities": [{"name": "eth0", "priority": 1}]}},
                       V1 | {"net_cls", "net_prio"})
    assert [w[:2] for w in got] == [("net_cls", "net_cls.classid"), ("net_prio", "net_prio.ifpriomap")]
    assert tr.v1_writes({"memory": {"kernelTCP": 100}}, V1, lambda c, n: False) == []


def test_device_rules() -> None:
    got = tr.device_writes({"devices": [{"allow": False, "access": "rwm"},
                                        {"allow": True, "type": "c", "major": 10, "minor": 200,
                                         "access": "rwm"},
                                        {"allow": False, "type": "c", "major": 10, "minor": 229}]},
                           [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229}])
    assert got[:3] == [("devices", "devices.deny", "a"),
                       ("devices", "devices.allow", "c 10:200 rwm"),
                       ("devices", "devices.deny", "c 10:229 rwm")]
    assert ("devices", "devices.allow", "c 136:* rwm") in got
    assert got[-1] == ("devices", "devices.allow", "c 10:229 rwm")


def test_device_list_model() -> None:
    w = [("devices", "devices.deny", "a"), ("devices", "devices.allow", "c 1:3 r"),
         ("devices", "devices.allow", "c 1:3 w"), ("devices", "devices.allow", "c 10:229 rwm"),
         ("devices", "devices.deny", "c 10:229 rw"), ("devices", "devices.deny", "c 4:* rwm")]
    assert tr.devices_after(w) == tr.devices_state("c 1:3 rw\nc 10:229 m\n")
    assert tr.devices_state("a *:* rwm\n") is None           # exceptions not shown: unknown
    assert tr.devices_after(w[:2] + [("devices", "devices.allow", "a")]) is None
    # an "a" rule with less than rwm is an exception, not a reset
    assert tr.device_writes({"devices": [{"allow": False, "access": "rwm"},
                                         {"allow": True, "type": "a", "access": "m"}]}, [])[1] == \
        ("devices", "devices.allow", "a *:* m")


def _fake_v2(tmp_path: Path, names: list[str]) -> Path:
    d = tmp_path / "cg"
    d.mkdir()
    for n in names:
        (d / n).write_text("")
    return d


def test_v2_apply_to_directory_tree(tmp_path: Path) -> None:
    names = ["memory.max", "memory.swap.max", "memory.low", "cpu.weight", "cpu.max",
             "cpu.max.burst", "cpu.idle", "cpuset.cpus", "cpuset.mems", "pids.max", "io.weight",
             "io.bfq.weight", "io.max", "hugetlb.2MB.max", "memory.high"]
    d = _fake_v2(tmp_path, names)
    warnings = UnifiedManager({"": str(d)}).apply(dict(FULL), with_devices=False)
    assert (d / "memory.max").read_text() == "33554432"
    assert (d / "memory.swap.max").read_text() == "33554432"
    assert (d / "cpu.weight").read_text() == "39"
    assert (d / "cpu.max").read_text() == "50000 100000"
    assert (d / "pids.max").read_text() == "64"
    assert (d / "io.bfq.weight").read_text() == "8:0 200"   # plain files keep the last write
    assert (d / "io.max").read_text() == "254:0 wiops=100"
    assert (d / "hugetlb.2MB.max").read_text() == "4194304"
    assert (d / "memory.high").read_text() == "30M"
    assert warnings


def test_v2_apply_errors(tmp_path: Path) -> None:
    d = _fake_v2(tmp_path, ["pids.max"])
    with pytest.raises(ConfigError, match=r"^linux.resources.memory.limit: writing 100 to "
                                          r"memory.max: no such file or directory$"):
        UnifiedManager({"": str(d)}).apply({"memory": {"limit": 100}}, with_devices=False)
    with pytest.raises(ConfigError, match="unified"):
        V1Manager({"pids": str(d)}).apply({"unified": {"pids.max": "5"}})


# -- real enforcement on this host ---------------------------------------------------------------

def _config(bundle, cid: str, resources: dict, args: list[str]) -> dict:
    cfg = bundle.edit()
    cfg["process"]["args"] = args
    cfg["linux"]["cgroupsPath"] = "/" + cid
    cfg["linux"]["resources"] = resources
    return cfg


def _file(ctrl: str, cid: str, name: str) -> str:
    return Path(f"/sys/fs/cgroup/{ctrl}/{cid}/{name}").read_text().strip()


def _created(pyrunc, bundle, resources: dict) -> str:
    cid = pyrunc.new_id()
    bundle.write(_config(bundle, cid, resources, ["sleep", "100"]))
    log = bundle.path.parent / f"{cid}.create.log"
    with open(log, "wb") as f:  # the init keeps its stdio: a file, never a pipe we would wait on
        proc = pyrunc("create", "--bundle", str(bundle.path), cid, stdin=subprocess.DEVNULL,
                      stdout=f, stderr=subprocess.STDOUT, capture_output=False)
    assert proc.returncode == 0, log.read_text()
    return cid


@kernel
def test_values_in_cgroup_files(pyrunc, bundle) -> None:
    res = {"memory": {"limit": 32 << 20, "swap": 64 << 20, "swappiness": 10,
                      "disableOOMKiller": True},
           "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0"},
           "pids": {"limit": 30},
           "blockIO": {"throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}]},
           "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
           "devices": [{"allow": False, "access": "rwm"},
                       {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"}]}
    cid = _created(pyrunc, bundle, res)
    try:
        assert _file("memory", cid, "memory.limit_in_bytes") == str(32 << 20)
        assert _file("memory", cid, "memory.memsw.limit_in_bytes") == str(64 << 20)
        assert _file("memory", cid, "memory.swappiness") == "10"
        assert "oom_kill_disable 1" in _file("memory", cid, "memory.oom_control")
        assert _file("cpu", cid, "cpu.shares") == "512"
        assert _file("cpu", cid, "cpu.cfs_quota_us") == "20000"
        assert _file("cpu", cid, "cpu.cfs_period_us") == "100000"
        assert _file("cpuset", cid, "cpuset.cpus") == "0"
        assert _file("pids", cid, "pids.max") == "30"
        assert _file("blkio", cid, "blkio.throttle.read_bps_device") == "254:0 1048576"
        assert _file("unified", cid, "hugetlb.2MB.max") == "4194304"
        devices = _file("devices", cid, "devices.list").splitlines()
        assert "c 10:200 rwm" in devices and "c 1:3 rwm" in devices
        assert "a *:* rwm" not in devices
    finally:
        pyrunc("delete", "--force", cid, check=True)


@kernel
def test_memory_limit_kills(run_container) -> None:
    def edit(cfg: dict) -> None:
        cfg["linux"]["resources"]["memory"] = {"limit": 16 << 20, "swap": 16 << 20}
    fill = ["sh", "-c", "dd if=/dev/zero of=/dev/shm/x bs=1M count=48 && echo filled"]
    control = run_container(fill)
    assert control.out == "filled\n", control     # the control: fine without the limit
    r = run_container(fill, edit=edit)
    assert r.rc != 0 and "filled" not in r.out, r


@kernel
def test_pids_limit_stops_forks(run_container) -> None:
    def edit(cfg: dict) -> None:
        cfg["linux"]["resources"]["pids"] = {"limit": 8}
    script = "i=0; while test $i -lt 20; do sleep 30 & i=$((i+1)); done; echo looped"
    assert "fork" not in run_container(["sh", "-c", script]).err    # the control
    r = run_container(["sh", "-c", script], edit=edit)
    assert "fork" in r.err.lower(), r


@kernel
def test_deny_all_devices_keeps_default_nodes(run_container) -> None:
    # runc's (and podman's) config: the only rule is deny-all
    script = ("echo x > /dev/null && head -c 4 /dev/zero | wc -c && "
              "head -c 4 /dev/urandom > /dev/null && echo ok")
    r = run_container(["sh", "-c", script])
    assert r.rc == 0 and r.out.split() == ["4", "ok"], r


ENGINE_RESOURCES = {
    "podman": {"pids": {"limit": 2048}, "devices": [{"allow": False, "access": "rwm"}]},
    # podman run --memory 256m --memory-swap 512m --cpus 0.5
    "podman-limits": {"memory": {"limit": 268435456, "swap": 536870912},
                      "cpu": {"quota": 50000, "period": 100000}, "pids": {"limit": 2048},
                      "devices": [{"allow": False, "access": "rwm"}]},
    "containerd": {"cpu": {"shares": 1024}, "devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
        {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
        {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
        {"allow": True, "type": "c", "major": 136, "access": "rwm"},
        {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"}]},
    "docker": {"memory": {"disableOOMKiller": False}, "cpu": {"shares": 0},
               "blockIO": {"weight": 0}, "devices": [
                   {"allow": False, "access": "rwm"},
                   {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
                   {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                   {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
                   {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
                   {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
                   {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
                   {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]},
}


@kernel
@pytest.mark.parametrize("engine", sorted(ENGINE_RESOURCES))
def test_engine_resources_apply(run_container, engine: str) -> None:
    def edit(cfg: dict) -> None:
        cfg["linux"]["resources"] = ENGINE_RESOURCES[engine]
    r = run_container(["sh", "-c", "echo ok > /dev/null && echo ok"], edit=edit)
    assert (r.rc, r.out, r.err) == (0, "ok\n", ""), r


@kernel
def test_bad_value_one_line_error(pyrunc, bundle) -> None:
    cid = pyrunc.new_id()
    bundle.write(_config(bundle, cid, {"cpu": {"cpus": "99-100"}}, ["true"]))
    proc = pyrunc("create", "--bundle", str(bundle.path), cid, stdin=subprocess.DEVNULL)
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert "linux.resources.cpu.cpus: writing 99-100 to cpuset.cpus" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (pyrunc.root / cid).exists()


def _realtime() -> None:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))


@kernel
def test_realtime_caller_needs_realtime_runtime(pyrunc, bundle) -> None:
    """A SCHED_FIFO caller (inherited by the init) cannot join a v1 cpu cgroup without realtime
    time: the kernel says EINVAL. The error names the join, the file and the fix, not the
    cgroup mount where the init first needed its cgroups; with realtimeRuntime it runs."""
    cid = pyrunc.new_id()
    bundle.write(_config(bundle, cid, {}, ["true"]))
    proc = pyrunc("run", "--bundle", str(bundle.path), cid, stdin=subprocess.DEVNULL,
                  preexec_fn=_realtime)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert len(err.strip().splitlines()) == 1, err
    assert f"joining the container's cgroups: /sys/fs/cgroup/cpu/{cid}/tasks: invalid argument: " \
        "a process with a realtime scheduling policy" in err, err
    assert "linux.resources.cpu.realtimeRuntime" in err and "mounts[" not in err, err
    assert not (pyrunc.root / cid).exists()
    assert not Path(f"/sys/fs/cgroup/cpu/{cid}").exists()
    cid = pyrunc.new_id()
    bundle.write(_config(bundle, cid, {"cpu": {"realtimeRuntime": 10000,
                                               "realtimePeriod": 1000000}}, ["true"]))
    proc = pyrunc("run", "--bundle", str(bundle.path), cid, stdin=subprocess.DEVNULL,
                  preexec_fn=_realtime)
    assert proc.returncode == 0, proc.stderr.decode()
    assert not (pyrunc.root / cid).exists()


RUNC_CASES = {
    "limits": {"memory": {"limit": 48 << 20, "swap": 96 << 20, "reservation": 32 << 20,
                          "swappiness": 20, "disableOOMKiller": True},
               "cpu": {"shares": 700, "quota": 30000, "period": 100000, "cpus": "0", "mems": "0"},
               "pids": {"limit": 40},
               "blockIO": {"throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}],
                           "throttleWriteIOPSDevice": [{"major": 254, "minor": 0, "rate": 300}]},
               "devices": [{"allow": False, "access": "rwm"},
                           {"allow": True, "type": "b", "major": 7, "access": "r"}]},
    "no-device-rules": {"pids": {"limit": 10}},
    **{k: ENGINE_RESOURCES[k] for k in ("podman", "podman-limits", "docker", "containerd")},
}
RUNC_FILES = [("memory", "memory.limit_in_bytes"), ("memory", "memory.memsw.limit_in_bytes"),
              ("memory", "memory.soft_limit_in_bytes"), ("memory", "memory.swappiness"),
              ("memory", "memory.oom_control"), ("cpu", "cpu.shares"), ("cpu", "cpu.cfs_quota_us"),
              ("cpu", "cpu.cfs_period_us"), ("cpuset", "cpuset.cpus"), ("cpuset", "cpuset.mems"),
              ("pids", "pids.max"), ("blkio", "blkio.throttle.read_bps_device"),
              ("blkio", "blkio.throttle.write_iops_device"), ("freezer", "freezer.state"),
              ("devices", "devices.list")]


def _snapshot(cid: str) -> dict[str, object]:
    """The files above, plus which hierarchies hold the container (cgroup2 included)."""
    out: dict[str, object] = {}
    for ctrl, name in RUNC_FILES:
        text = _file(ctrl, cid, name)
        if name == "memory.oom_control":
            text = text.splitlines()[0]            # under_oom and the kill count vary
        out[name] = sorted(text.splitlines()) if name == "devices.list" else text
    out["dirs"] = sorted(h.name for h in Path("/sys/fs/cgroup").iterdir() if (h / cid).is_dir())
    return out


@kernel
@pytest.mark.skipif(not os.access(RUNC, os.X_OK), reason="runc (the oracle) is not installed")
@pytest.mark.parametrize("case", sorted(RUNC_CASES))
def test_same_values_as_runc(pyrunc, bundle, tmp_path: Path, case: str) -> None:
    res = RUNC_CASES[case]
    ours = _created(pyrunc, bundle, res)
    try:
        mine = _snapshot(ours)
        # the model update uses to skip an unchanged list agrees with the kernel
        assert tr.devices_state(_file("devices", ours, "devices.list")) == \
            tr.devices_after(tr.device_writes(res, []))
    finally:
        pyrunc("delete", "--force", ours, check=True)
    theirs = pyrunc.new_id("runc")
    bundle.write(_config(bundle, theirs, res, ["sleep", "100"]))
    runc = [RUNC, "--root", str(tmp_path / "runc")]
    with open(tmp_path / "runc.log", "wb") as f:
        proc = subprocess.run([*runc, "create", "--bundle", str(bundle.path), theirs],
                              stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              timeout=60, check=False)
    try:
        assert proc.returncode == 0, (tmp_path / "runc.log").read_text()
        assert _snapshot(theirs) == mine
    finally:
        subprocess.run([*runc, "delete", "--force", theirs], capture_output=True, timeout=60,
                       check=False)
