"""The pure cgroup v2 manager: for real on this hybrid host's cgroup2 mount (PYRUNC_CGROUP_LAYOUT=v2
places a container there only, the way a pure v2 host would), and against a directory tree that
mirrors cgroupfs for the v2 controllers this host lacks (the exact files and values written).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import one_line_error, wait_status

from pyrunc import cgroup_resources as tr
from pyrunc import devfilter
from pyrunc.cgroups import CgroupManager, HybridManager, UnifiedManager, V1Manager
from pyrunc.errors import PyruncError

kernel = pytest.mark.kernel
UNIFIED = Path("/sys/fs/cgroup/unified")
V2_ENV = {**os.environ, "PYRUNC_CGROUP_LAYOUT": "v2"}
needs_cgroup2 = pytest.mark.skipif(not (UNIFIED / "cgroup.procs").exists(),
                                   reason="no cgroup2 mount at /sys/fs/cgroup/unified")


# -- the filter program ---------------------------------------------------------------------------

def _decode(code: bytes) -> list[tuple[int, int, int, int, int]]:
    out = []
    for i in range(0, len(code), 8):
        op, regs, off, imm = struct.unpack_from("<BBhi", code, i)
        out.append((op, regs & 0xF, regs >> 4, off, imm))
    return out


def test_filter_program_shape() -> None:
    # deny-all alone: the six context loads, then "return 0" and nothing after (the verifier
    # refuses unreachable instructions)
    prog = _decode(devfilter.assemble([devfilter.Rule(False)]))
    assert len(prog) == 8 and prog[-2] == (0xB7, 0, 0, 0, 0) and prog[-1][0] == 0x95
    # allow c 10:229 r after it: checked first; every mismatch jumps exactly past its block
    prog = _decode(devfilter.assemble([devfilter.Rule(False), devfilter.Rule(True, "c", 10, 229, "r")]))
    block = prog[6:14]
    assert [(i[0], i[1], i[4]) for i in block[:3]] == [(0x55, 2, 2), (0x55, 4, 10), (0x55, 5, 229)]
    assert [i[3] for i in block[:3]] == [7, 6, 5]
    assert block[4] == (0x54, 1, 0, 0, 5)            # r1 = access & ~(read): anything else asked
    assert block[5][3] == 2 and block[6] == (0xB7, 0, 0, 0, 1)
    assert prog[14:] == [(0xB7, 0, 0, 0, 0), (0x95, 0, 0, 0, 0)]


def test_rules_keep_runc_defaults_last() -> None:
    rules = devfilter.rules_from_config({"devices": [{"allow": False, "access": "rwm"}]},
                                        [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229}],
                                        tr.DEFAULT_ALLOWS)
    assert (rules[0].allow, rules[0].kind, rules[0].major) == (False, "a", None)
    assert [(r.kind, r.major, r.minor, r.access) for r in rules[1:3]] == [("c", None, None, 1),
                                                                         ("b", None, None, 1)]
    assert (rules[-1].kind, rules[-1].major, rules[-1].minor, rules[-1].allow) == ("c", 10, 229, True)


# -- against a tree that mirrors cgroupfs ---------------------------------------------------------

V2_FILES = ["cgroup.procs", "cgroup.freeze", "cgroup.subtree_control", "cgroup.controllers",
            "memory.max", "memory.swap.max", "memory.low", "memory.high", "cpu.weight", "cpu.max",
            "cpu.max.burst", "cpu.idle", "cpuset.cpus", "cpuset.mems", "pids.max", "io.weight",
            "io.max", "hugetlb.2MB.max", "rdma.max"]


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "cgroupfs"
    root.mkdir()
    for name in V2_FILES:
        (root / name).write_text("")
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma\n")
    return root


def _written(d: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(d.iterdir())
            if p.is_file() and p.read_text() and p.name != "cgroup.controllers"}


ENGINE = {
    "docker": {"memory": {"limit": 268435456, "swap": 536870912, "reservation": 134217728,
                          "disableOOMKiller": False},
               "cpu": {"shares": 512, "quota": 150000, "period": 100000, "cpus": "0-1", "mems": "0"},
               "pids": {"limit": 100}, "blockIO": {"weight": 0},
               "hugepageLimits": [{"pageSize": "2MB", "limit": 0}]},
    "podman": {"pids": {"limit": 2048}, "memory": {"limit": 536870912, "swap": 1073741824},
               "cpu": {"shares": 1024, "quota": 100000, "period": 100000}},
}
EXPECTED = {
    "docker": {"memory.max": "268435456", "memory.swap.max": "268435456", "memory.low": "134217728",
               "cpu.weight": "20", "cpu.max": "150000 100000", "cpuset.cpus": "0-1",
               "cpuset.mems": "0", "pids.max": "100", "hugetlb.2MB.max": "0"},
    "podman": {"memory.max": "536870912", "memory.swap.max": "536870912", "cpu.weight": "39",
               "cpu.max": "100000 100000", "pids.max": "2048"},
}


@pytest.mark.parametrize("engine", sorted(ENGINE))
def test_engine_config_on_a_v2_tree(tmp_path: Path, engine: str) -> None:
    root = _tree(tmp_path)
    ctr = root / "pod" / "ctr"
    mgr = UnifiedManager({"": str(ctr)})
    mgr.create()
    for name in V2_FILES:
        (ctr / name).write_text("")
    assert mgr.apply(ENGINE[engine], with_devices=False) == []
    assert _written(ctr) == EXPECTED[engine]
    for f in ctr.iterdir():     # cgroupfs drops a directory's files with it; a plain tree cannot
        f.unlink()
    mgr.destroy()
    assert not (root / "pod").exists() and root.exists()   # only what create made


def test_v2_tree_unified_and_rdma(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    warnings = UnifiedManager({"": str(root)}).apply(
        {"rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}}, "unified": {"memory.high": "1G"},
         "memory": {"swappiness": 5}, "network": {"classID": 7}}, with_devices=False)
    assert _written(root) == {"rdma.max": "mlx5_1 hca_handle=3 hca_object=10000", "memory.high": "1G"}
    assert len(warnings) == 2 and "swappiness" in warnings[0] and "network" in warnings[1]


def test_layout_is_recorded_and_restored() -> None:
    assert isinstance(CgroupManager.from_state({"layout": "v2", "paths": {"": "/x"}}), UnifiedManager)
    assert isinstance(CgroupManager.from_state({"paths": {"": "/x"}}), UnifiedManager)
    assert isinstance(CgroupManager.from_state({"paths": {"memory": "/m", "": "/u"}}), HybridManager)
    assert type(CgroupManager.from_state({"paths": {"memory": "/m"}})) is V1Manager
    mgr = CgroupManager.from_state({"layout": "v1", "paths": {"memory": "/m"}, "created": ["/m"]})
    assert mgr.to_state() == {"layout": "v1", "paths": {"memory": "/m"}, "created": ["/m"]}


def test_forced_layout(monkeypatch) -> None:
    monkeypatch.setenv("PYRUNC_CGROUP_LAYOUT", "v3")
    with pytest.raises(PyruncError, match=r"^PYRUNC_CGROUP_LAYOUT=v3: not a layout"):
        CgroupManager.for_container("/x", "x")
    if (UNIFIED / "cgroup.procs").exists():
        monkeypatch.setenv("PYRUNC_CGROUP_LAYOUT", "v2")
        mgr = CgroupManager.for_container("/x", "x")
        assert isinstance(mgr, UnifiedManager) and mgr.paths == {"": str(UNIFIED / "x")}


# -- for real on the cgroup2 mount ----------------------------------------------------------------

FUSE_BIND = {"destination": "/dev/fuse", "type": "bind", "source": "/dev/fuse", "options": ["bind"]}
PROBE = ("exec 3</dev/fuse && echo read-ok; (exec 4>/dev/fuse) 2>/dev/null && echo write-ok "
         "|| echo write-denied; echo x > /dev/null && head -c 2 /dev/zero | wc -c; "
         "grep -E ':(devices)?:' /proc/self/cgroup")


def _run_v2(pyrunc, bundle, access: str, args: list[str]) -> subprocess.CompletedProcess:
    cfg = bundle.edit()
    cfg["process"]["args"] = args
    cfg["mounts"].append(FUSE_BIND)
    cfg["linux"]["resources"] = {"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": access}]}
    bundle.write()
    cid = pyrunc.new_id()
    return pyrunc("run", "--bundle", str(bundle.path), cid, env=V2_ENV, stdin=subprocess.DEVNULL)


@kernel
@needs_cgroup2
@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse to bind in")
def test_ebpf_filter_denies_and_allows(pyrunc, bundle) -> None:
    r = _run_v2(pyrunc, bundle, "r", ["sh", "-c", PROBE])
    out = r.stdout.decode().split()
    assert r.returncode == 0, r
    # read allowed, write denied (EPERM from the filter), default nodes fine with a deny-all
    assert out[:3] == ["read-ok", "write-denied", "2"], r
    # the container is in a cgroup2 directory of its own, and in the root of the v1 devices
    # hierarchy (which allows everything): the filter is what denied the write
    assert "5:devices:/" in out or not any(":devices:" in x for x in out), out
    assert any(x.startswith("0::/" + pyrunc.prefix) for x in out), out
    control = _run_v2(pyrunc, bundle, "rw", ["sh", "-c", PROBE])
    assert control.stdout.decode().split()[:2] == ["read-ok", "write-ok"], control


@pytest.fixture
def running_v2(pyrunc, bundle, tmp_path):
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sleep", "100000"]
    cfg["mounts"].append(FUSE_BIND)
    cfg["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}],
                                 "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]}
    bundle.write()
    cid = pyrunc.new_id()
    with open(tmp_path / "ctr.out", "wb") as out:
        pyrunc("run", "-d", "--bundle", str(bundle.path), cid, check=True, capture_output=False,
               stdout=out, stderr=out, env=V2_ENV)
    state = pyrunc.state(cid)
    own = next(line.split(":", 2)[2] for line in Path(f"/proc/{state['pid']}/cgroup").read_text().splitlines()
           if line.startswith("0::"))
    return cid, UNIFIED / own.lstrip("/")


def _attached(directory: Path) -> list[int]:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return devfilter.attached(fd)
    finally:
        os.close(fd)


@kernel
@needs_cgroup2
@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse to bind in")
def test_update_replaces_the_filter(pyrunc, running_v2, tmp_path) -> None:
    cid, cgdir = running_v2
    first = _attached(cgdir)
    assert len(first) == 1
    probe = ["sh", "-c", "(exec 4>/dev/fuse) 2>/dev/null && echo write-ok || echo write-denied"]
    assert pyrunc("exec", cid, *probe, check=True).stdout == b"write-denied\n"
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"devices": [{"allow": True, "type": "c", "major": 10, "minor": 229,
                                            "access": "rw"}]}))
    pyrunc("update", "--resources", str(res), cid, check=True)
    second = _attached(cgdir)
    assert len(second) == 1 and second != first       # replaced, not stacked
    assert pyrunc("exec", cid, *probe, check=True).stdout == b"write-ok\n"
    # an update without devices leaves the filter alone
    pyrunc("update", "--pids-limit", "0", cid)
    assert _attached(cgdir) == second


@kernel
@needs_cgroup2
def test_v2_freeze_stats_and_kill_all(pyrunc, running_v2) -> None:
    cid, cgdir = running_v2
    assert (cgdir / "hugetlb.2MB.max").read_text().strip() == "2097152"
    stats = json.loads(pyrunc("events", "--stats", cid, check=True).stdout)
    assert stats["type"] == "stats" and stats["id"] == cid
    cpu = {k: int(v) for k, v in (line.split() for line in (cgdir / "cpu.stat").read_text().splitlines())}
    assert stats["data"]["cpu"]["usage"]["total"] == cpu["usage_usec"] * 1000   # asleep: stable
    assert set(stats["data"]["hugetlb"]) >= {"2MB"}
    pyrunc("pause", cid, check=True)
    assert (cgdir / "cgroup.freeze").read_text().strip() == "1"
    assert "frozen 1" in (cgdir / "cgroup.events").read_text().splitlines()
    assert pyrunc.state(cid)["status"] == "paused"
    pyrunc("kill", "--all", cid, "KILL", check=True)      # frozen: cgroup.kill still lands
    wait_status(pyrunc, cid, "stopped")
    pyrunc("delete", cid, check=True)
    assert not cgdir.exists()


# -- the v1 view of this host (a pure v1 host: no cgroup2 at all) ----------------------------------

@kernel
def test_v1_layout_has_no_cgroup2_and_refuses_hugetlb(pyrunc, bundle, tmp_path) -> None:
    env = {**os.environ, "PYRUNC_CGROUP_LAYOUT": "v1"}
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sh", "-c", "cat /proc/self/cgroup"]
    cfg["linux"]["resources"] = {"pids": {"limit": 20}}
    bundle.write()
    r = pyrunc("run", "--bundle", str(bundle.path), pyrunc.new_id(), env=env, stdin=subprocess.DEVNULL)
    lines = r.stdout.decode().splitlines()
    assert r.returncode == 0, r
    assert any(":pids:/" in x and pyrunc.prefix in x for x in lines), lines
    assert "0::/" in lines or not any(x.startswith("0::") for x in lines), lines  # not moved on v2
    cfg["linux"]["resources"] = {"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]}
    bundle.write()
    cid = pyrunc.new_id()
    r = pyrunc("run", "--bundle", str(bundle.path), cid, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert one_line_error(r.stderr.decode()).endswith(
        "linux.resources.hugepageLimits: needs cgroup v2 (or a v1 hugetlb hierarchy), which this "
        "host does not mount")
    assert not (pyrunc.root / cid).exists()
