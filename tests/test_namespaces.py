"""Namespaces: new ones are really new, joined ones are really joined, and mistakes are refused.

Every test runs a real container on the busybox rootfs and compares namespace inodes
(`readlink /proc/self/ns/X`) seen inside with the host's or with a holder process's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import is_warning, one_line_error, poll  # noqa: F401

pytestmark = pytest.mark.kernel

# config.json namespace type -> name under /proc/<pid>/ns
NS_FILES = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt",
            "cgroup": "cgroup", "time": "time"}


def host_ns(name: str, pid: str = "self") -> str:
    return os.readlink(f"/proc/{pid}/ns/{name}")


def ns_script(names) -> str:
    return "; ".join(f"echo {n}=$(readlink /proc/self/ns/{n})" for n in names)


def parse_kv(out: str) -> dict[str, str]:
    pairs = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            pairs[key.strip()] = value.strip()
    return pairs


def set_namespaces(cfg: dict, entries: list[dict]) -> None:
    cfg["linux"]["namespaces"] = entries


def without(cfg: dict, kind: str) -> None:
    cfg["linux"]["namespaces"] = [ns for ns in cfg["linux"]["namespaces"] if ns["type"] != kind]


def join_only(cfg: dict, kind: str, path: str) -> None:
    """The default namespaces, with `kind` joined from `path` instead of created."""
    if kind == "uts":
        cfg.pop("hostname", None)
    without(cfg, kind)
    cfg["linux"]["namespaces"].append({"type": kind, "path": path})




@pytest.fixture
def holder():
    """`unshare --net --uts --ipc` running sleep with its own hostname: namespaces to join."""
    if shutil.which("unshare") is None:
        pytest.skip("util-linux unshare is not installed")
    procs: list[subprocess.Popen] = []

    def start(hostname: str) -> int:
        proc = subprocess.Popen(["unshare", "--net", "--uts", "--ipc", "sh", "-c",
                                 f"hostname {hostname} && exec sleep 1000"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + 10
        # Ready once sh has exec'd sleep: the namespaces exist and the hostname is set.
        while Path(f"/proc/{proc.pid}/comm").read_text().strip() != "sleep":
            assert proc.poll() is None, "unshare holder exited early"
            assert time.monotonic() < deadline, "unshare holder did not start"
            time.sleep(0.01)
        for name in ("net", "uts", "ipc"):
            assert host_ns(name, str(proc.pid)) != host_ns(name)
        return proc.pid

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def test_each_namespace_created_new(run_container):
    kinds = ["pid", "network", "ipc", "uts", "mount", "cgroup", "time"]
    r = run_container(["sh", "-c", ns_script(NS_FILES[k] for k in kinds)],
                      edit=lambda c: set_namespaces(c, [{"type": k} for k in kinds]))
    assert r.rc == 0, r
    inside = parse_kv(r.out)
    for kind in kinds:
        name = NS_FILES[kind]
        assert inside.get(name, "").startswith(f"{name}:["), (kind, r)
        assert inside[name] != host_ns(name), f"{kind} namespace is the host's: {inside[name]}"


def test_namespaces_not_asked_for_are_the_hosts(run_container):
    # The default config has no cgroup or time namespace: those stay the host's.
    r = run_container(["sh", "-c", ns_script(["cgroup", "time", "net"])])
    assert r.rc == 0, r
    inside = parse_kv(r.out)
    assert inside["cgroup"] == host_ns("cgroup")
    assert inside["time"] == host_ns("time")
    assert inside["net"] != host_ns("net")


def test_cgroup_namespace_roots_the_container_cgroup(run_container):
    r = run_container(["cat", "/proc/self/cgroup"],
                      edit=lambda c: c["linux"]["namespaces"].append({"type": "cgroup"}))
    assert r.rc == 0, r
    lines = [line for line in r.out.splitlines() if line]
    assert lines, r
    for line in lines:
        assert line.split(":", 2)[2] == "/", f"cgroup path not rooted in the namespace: {line}"


def test_container_process_is_pid_1(run_container):
    r = run_container(["cat", "/proc/self/stat"])
    assert r.rc == 0, r
    fields = r.out.split()
    assert fields[0] == "1" and fields[1] == "(cat)", r.out


def test_shell_is_pid_1_and_sees_only_its_children(run_container):
    r = run_container(["sh", "-c", "echo $$; ls /proc | grep -E '^[0-9]+$'"])
    assert r.rc == 0, r
    first, *pids = [int(x) for x in r.out.split()]
    assert first == 1
    # Only the shell and its pipeline: numbered from 1 in the new pid namespace.
    assert 1 in pids and max(pids) < 20, pids


@pytest.mark.parametrize("kind", ["network", "uts", "ipc"])
def test_join_one_namespace_by_path(run_container, holder, kind):
    pid = holder("joined-" + uuid.uuid4().hex[:6])
    name = NS_FILES[kind]
    r = run_container(["readlink", f"/proc/self/ns/{name}"],
                      edit=lambda c: join_only(c, kind, f"/proc/{pid}/ns/{name}"))
    assert r.rc == 0, r
    assert r.out.strip() == host_ns(name, str(pid)) != host_ns(name)


def test_join_namespaces_by_path(run_container, holder):
    pid = holder("joined-" + uuid.uuid4().hex[:6])
    joined = {"network": "net", "uts": "uts", "ipc": "ipc"}

    def edit(cfg: dict) -> None:
        del cfg["hostname"]
        set_namespaces(cfg, [{"type": "pid"}, {"type": "mount"}]
                       + [{"type": k, "path": f"/proc/{pid}/ns/{n}"} for k, n in joined.items()])

    r = run_container(["sh", "-c", ns_script(["net", "uts", "ipc", "pid", "mnt"])], edit=edit)
    assert r.rc == 0, r
    inside = parse_kv(r.out)
    for name in joined.values():
        assert inside[name] == host_ns(name, str(pid)), (name, r.out)
    assert inside["pid"] != host_ns("pid")
    assert inside["mnt"] != host_ns("mnt")


def test_joined_uts_namespace_keeps_its_hostname(run_container, holder):
    name = "joined-" + uuid.uuid4().hex[:6]
    pid = holder(name)
    r = run_container(["hostname"], edit=lambda c: join_only(c, "uts", f"/proc/{pid}/ns/uts"))
    assert r.rc == 0, r
    assert r.out.strip() == name


def test_joined_network_namespace_loopback_left_alone(run_container, holder):
    # unshare leaves the holder's loopback down: pyrunc brings lo up only in a namespace it made.
    pid = holder("x" + uuid.uuid4().hex[:6])
    r = run_container(["sh", "-c", "readlink /proc/self/ns/net; ip -o link show lo"],
                      edit=lambda c: join_only(c, "network", f"/proc/{pid}/ns/net"))
    assert r.rc == 0, r
    ns, link = r.out.split("\n", 1)
    assert ns == host_ns("net", str(pid))
    assert "UP" not in link.split("<", 1)[1].split(">", 1)[0].split(","), link


def test_sysfs_shows_the_joined_network_namespace(run_container, holder):
    # sysfs is mounted fresh whenever the container has a network namespace (new or joined),
    # so /sys/class/net lists that namespace's links (runc's rule), not the host's.
    pid = holder("x" + uuid.uuid4().hex[:6])
    assert sorted(os.listdir("/sys/class/net")) != ["lo"], "host has only lo: test cannot tell"
    r = run_container(["sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/flags"],
                      edit=lambda c: join_only(c, "network", f"/proc/{pid}/ns/net"))
    assert r.rc == 0, r
    names, flags = r.out.rsplit("\n", 2)[0], r.out.split()[-1]
    assert names.split() == ["lo"], r.out
    assert int(flags, 16) & 0x1 == 0, f"/sys/class/net/lo is not the joined (down) lo: {flags}"


def test_joined_ipc_namespace_gets_its_own_mqueue(run_container, holder):
    # mqueue must be mounted inside the joined ipc namespace, not bound from the host's.
    pid = holder("x" + uuid.uuid4().hex[:6])
    script = "readlink /proc/self/ns/ipc; grep ' /dev/mqueue ' /proc/self/mountinfo"
    r = run_container(["sh", "-c", script],
                      edit=lambda c: join_only(c, "ipc", f"/proc/{pid}/ns/ipc"))
    assert r.rc == 0, r
    ns, mnt = r.out.split("\n", 1)
    assert ns == host_ns("ipc", str(pid))
    assert " - mqueue " in mnt, mnt


def test_time_namespace_boottime_offset(run_container):
    ten_days = 86400 * 10

    def edit(cfg: dict) -> None:
        cfg["linux"]["namespaces"].append({"type": "time"})
        cfg["linux"]["timeOffsets"] = {"boottime": {"secs": ten_days, "nanosecs": 0},
                                       "monotonic": {"secs": 3600}}

    r = run_container(["sh", "-c", "cat /proc/uptime; cat /proc/self/timens_offsets"], edit=edit)
    assert r.rc == 0, r
    uptime, offsets = r.out.split("\n", 1)
    parsed = {line.split()[0]: line.split()[1:] for line in offsets.splitlines()}
    assert parsed == {"boottime": [str(ten_days), "0"], "monotonic": ["3600", "0"]}, offsets
    inside = float(uptime.split()[0])
    host = float(Path("/proc/uptime").read_text().split()[0])
    assert inside >= ten_days, r.out
    assert inside >= host + ten_days - 60, (inside, host)


def test_time_namespace_without_offsets_keeps_host_clock(run_container):
    r = run_container(["cat", "/proc/uptime"],
                      edit=lambda c: c["linux"]["namespaces"].append({"type": "time"}))
    assert r.rc == 0, r
    host = float(Path("/proc/uptime").read_text().split()[0])
    assert abs(float(r.out.split()[0]) - host) < 3600, (r.out, host)


def test_loopback_up_in_new_network_namespace(run_container):
    r = run_container(["sh", "-c",
                       "cat /sys/class/net/lo/flags; ls /sys/class/net; ip link show lo"])
    assert r.rc == 0, r
    lines = r.out.split("\n")
    flags = int(lines[0], 16)
    assert flags & 0x1, f"lo is not up: flags {lines[0]}"
    assert flags & 0x8, f"lo is not a loopback: flags {lines[0]}"
    assert lines[1].split() == ["lo"], f"a new netns has only lo: {r.out}"
    assert "UP" in r.out.split("<", 1)[1].split(">", 1)[0].split(","), r.out


@pytest.mark.parametrize("kind", ["network", "ipc", "uts"])
def test_missing_namespace_path_is_a_clear_error(pyrunc, run_container, tmp_path, kind):
    missing = str(tmp_path / f"no-such-{kind}-ns")
    r = run_container(["true"], edit=lambda c: join_only(c, kind, missing))
    assert r.rc != 0, r
    line = one_line_error(r.err)
    assert missing in line, line
    assert "no such file or directory" in line.lower(), line
    assert not (pyrunc.root / r.cid).exists()


def test_namespace_path_of_wrong_type_refused(pyrunc, run_container):
    # A uts namespace file given as the network namespace: setns must refuse it.
    r = run_container(["true"], edit=lambda c: join_only(c, "network", "/proc/self/ns/uts"))
    assert r.rc != 0, r
    line = one_line_error(r.err)
    assert "/proc/self/ns/uts" in line and "network" in line, line
    assert not (pyrunc.root / r.cid).exists()


def test_hostname_set_in_joined_uts_namespace(run_container, holder):
    # runc's rule and runtime-tools' linux_ns_path: a uts namespace joined by path is the
    # container's own, so config.hostname applies there.
    pid = holder("before-" + uuid.uuid4().hex[:6])

    def edit(cfg: dict) -> None:
        join_only(cfg, "uts", f"/proc/{pid}/ns/uts")
        cfg["hostname"] = "set-by-config"

    r = run_container(["hostname"], edit=edit)
    assert r.rc == 0, r
    assert r.out.strip() == "set-by-config"
    assert Path(f"/proc/{pid}/ns/uts").exists()
    out = subprocess.run(["nsenter", "-t", str(pid), "-u", "hostname"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "set-by-config"


@pytest.mark.parametrize("how", ["absent", "runtime-own-path"])
def test_hostname_without_own_uts_namespace_refused(pyrunc, run_container, how):
    def edit(cfg: dict) -> None:
        without(cfg, "uts")
        if how == "runtime-own-path":
            cfg["linux"]["namespaces"].append({"type": "uts", "path": f"/proc/{os.getpid()}/ns/uts"})
        cfg["hostname"] = "must-not-reach-host"

    before = os.uname().nodename
    r = run_container(["true"], edit=edit)
    assert r.rc != 0, r
    line = one_line_error(r.err)
    assert "/hostname" in line and "uts namespace" in line, line
    assert os.uname().nodename == before
    assert not (pyrunc.root / r.cid).exists()


# -- no mount namespace: the host's is inherited (config-linux.md), its mounts undone by delete ----

def _mounts_below(path: Path) -> list[str]:
    prefix = str(path) + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def _host_mount_ns(cfg: dict) -> None:
    without(cfg, "mount")
    cfg["root"]["readonly"] = False
    cfg["linux"].pop("rootfsPropagation", None)


def test_no_mount_namespace_inherits_the_hosts(pyrunc, bundle):
    # runtime-tools' linux_ns_itype. The container's /proc, /dev, masked paths... are mounts
    # in the host's table below the rootfs while it exists, and delete removes every one
    # (runc leaves them behind).
    cfg = bundle.edit()
    _host_mount_ns(cfg)
    cfg["process"]["args"] = ["sh", "-c", ("readlink /proc/self/ns/mnt; ls /bin/busybox; "
                               "cat /proc/timer_list | wc -c")]
    bundle.write()
    cid = pyrunc.new_id()
    out = bundle.path / "out"
    with open(out, "wb") as f:
        pyrunc("create", "--bundle", str(bundle.path), cid, check=True, capture_output=False,
               stdout=f, stderr=subprocess.STDOUT)
    pid = pyrunc.state(cid)["pid"]
    assert host_ns("mnt", pid) == host_ns("mnt")
    below = _mounts_below(bundle.rootfs)
    assert str(bundle.rootfs / "proc") in below and str(bundle.rootfs / "dev") in below, below
    pyrunc("start", cid, check=True)
    poll(lambda: pyrunc.state(cid)["status"] == "stopped", what="container exit")
    assert out.read_text().split() == [host_ns("mnt"), "/bin/busybox", "0"], out.read_text()
    pyrunc("delete", cid, check=True)
    assert _mounts_below(bundle.rootfs) == []


def test_no_mount_namespace_failed_create_leaves_no_mount(pyrunc, run_container, bundle):
    def edit(cfg: dict) -> None:
        _host_mount_ns(cfg)
        cfg["mounts"].append({"destination": "/late", "type": "no-such-fs", "source": "x"})

    r = run_container(["true"], edit=edit)
    assert r.rc != 0, r
    assert "no-such-fs" in one_line_error(r.err)
    assert _mounts_below(bundle.rootfs) == []
    assert not (pyrunc.root / r.cid).exists()


@pytest.mark.parametrize("field, value", [("readonly", True), ("rootfsPropagation", "shared")])
def test_no_mount_namespace_refuses_changing_host_mounts(pyrunc, run_container, bundle, field,
                                                         value):
    def edit(cfg: dict) -> None:
        _host_mount_ns(cfg)
        if field == "readonly":
            cfg["root"]["readonly"] = value
        else:
            cfg["linux"][field] = value

    r = run_container(["true"], edit=edit)
    assert r.rc != 0, r
    line = one_line_error(r.err)
    assert field in line and "mount namespace" in line, line
    assert _mounts_below(bundle.rootfs) == []
