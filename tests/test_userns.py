"""User namespaces (runtime as root): the maps the parent writes, what the mapped root can do,
the mounts that need special handling inside one, exec into it, and the mistakes refused.

Each test runs real containers whose root is host uid 100000 (runc's integration tests use the
same range). The bundles live under pytest's 0700 tmp directory: the container's root could not
traverse it, so these tests also prove that the rootfs and bind sources are reached from the
runtime's side.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import base_config, one_line_error, wait_status

pytestmark = pytest.mark.kernel

HOST = 100000
MAP = [{"containerID": 0, "hostID": HOST, "size": 65536}]


def with_userns(cfg: dict, uids: list | None = None, gids: list | None = None) -> None:
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = uids if uids is not None else MAP
    cfg["linux"]["gidMappings"] = gids if gids is not None else MAP


def edits(*fns):
    def edit(cfg: dict) -> None:
        for fn in fns:
            fn(cfg)
    return edit


def _sleeper_in_a_userns(rt, bundle) -> tuple[str, int]:
    """A detached container running `sleep` in a new user namespace: its id and host pid."""
    cfg = base_config(["sleep", "1000"])
    with_userns(cfg)
    bundle.write(cfg)
    cid = rt.new_id()
    rt("run", "-d", "--bundle", str(bundle.path), cid, check=True, capture_output=False,
       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cid, wait_status(rt, cid, "running")["pid"]


def test_maps_written_by_the_parent_and_root_inside(run_container):
    r = run_container(["sh", "-c", ("cat /proc/self/uid_map /proc/self/gid_map "
                                    "/proc/self/setgroups; id -u; id -g; hostname; "
                                    "readlink /proc/self/ns/user")],
                      edit=with_userns)
    assert r.rc == 0, r
    lines = [line.split() for line in r.out.splitlines()]
    assert lines[0] == ["0", str(HOST), "65536"] and lines[1] == ["0", str(HOST), "65536"], r.out
    # A root parent leaves setgroups allowed (runc writes "deny" only without privileges).
    assert lines[2] == ["allow"]
    assert lines[3] == ["0"] and lines[4] == ["0"]
    assert lines[5] == ["pyrunc"]
    assert lines[6][0] != os.readlink("/proc/self/ns/user"), "user namespace is the host's"


def test_init_runs_as_the_mapped_host_uid(pyrunc, bundle):
    cid, pid = _sleeper_in_a_userns(pyrunc, bundle)
    status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    gids = next(line for line in status.splitlines() if line.startswith("Gid:")).split()[1:]
    assert uids == [str(HOST)] * 4 and gids == [str(HOST)] * 4
    # Every namespace the config created belongs to the container's user namespace: its
    # hostname is its own, and the parent still placed it in its cgroups.
    cgroups = Path(f"/proc/{pid}/cgroup").read_text()
    assert cid in cgroups, cgroups
    pyrunc("delete", "--force", cid, check=True)


def test_bind_mount_writes_belong_to_the_mapped_uid(run_container, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    os.chown(share, HOST, HOST)

    def mount_share(cfg: dict) -> None:
        # /tmp exists in the (root-owned) rootfs: the mapped root could not create a target.
        cfg["mounts"].append({"destination": "/tmp", "type": "bind", "source": str(share),
                              "options": ["rbind", "rw"]})
    r = run_container(["sh", "-c", ("touch /tmp/made && stat -c %u:%g /tmp/made && "
                        "mkdir /tmp/d && stat -c %u:%g /tmp/d")],
                      edit=edits(with_userns, mount_share))
    assert r.rc == 0, r
    assert r.out.split() == ["0:0", "0:0"]
    for name in ("made", "d"):
        st = os.stat(share / name)
        assert (st.st_uid, st.st_gid) == (HOST, HOST), name


def test_rootfs_owned_by_the_mapped_root_is_writable(run_container, bundle):
    for dirpath, dirnames, filenames in os.walk(bundle.rootfs):
        for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
            os.lchown(name, HOST, HOST)

    def writable_root(cfg: dict) -> None:
        cfg["root"]["readonly"] = False
    r = run_container(["sh", "-c", "echo hi > /root/note && stat -c %u /root/note"],
                      edit=edits(with_userns, writable_root))
    assert r.rc == 0, r
    assert r.out.strip() == "0"
    st = os.stat(bundle.rootfs / "root" / "note")
    assert (st.st_uid, st.st_gid) == (HOST, HOST)


def test_host_files_unmapped_show_as_overflow_ids(run_container):
    # The host's /proc/1 (root-owned, unmapped in the namespace) cannot be seen from a new pid
    # namespace, but the host's /sys (bound from the host, root-owned) can.
    r = run_container(["stat", "-c", "%u", "/sys/kernel"],
                      edit=edits(with_userns, lambda c: c["linux"]["namespaces"].remove(
                          {"type": "network"})))
    assert r.rc == 0, r
    assert r.out.strip() == Path("/proc/sys/kernel/overflowuid").read_text().strip()


def test_special_filesystems_inside(run_container):
    r = run_container(["sh", "-c", ("cat /proc/self/mounts; echo x > /dev/null && echo nullok; "
                        "ls /proc/1/ns/user >/dev/null && echo procok")], edit=with_userns)
    assert r.rc == 0, r
    mounts = {line.split()[1]: line.split()[2] for line in r.out.splitlines() if len(line.split()) > 3}
    assert mounts["/proc"] == "proc"
    assert mounts["/sys"] == "sysfs"       # a new network namespace owned by the container's
    assert mounts["/dev/pts"] == "devpts"
    assert mounts["/dev/mqueue"] == "mqueue"
    # mknod is refused in a user namespace: the default nodes are binds of the host's.
    assert mounts["/dev/null"] == "devtmpfs" and mounts["/dev/zero"] == "devtmpfs"
    assert "nullok" in r.out and "procok" in r.out


def without(kind: str):
    def edit(cfg: dict) -> None:
        cfg["linux"]["namespaces"] = [ns for ns in cfg["linux"]["namespaces"]
                                      if ns["type"] != kind]
    return edit


def test_sysfs_without_a_network_namespace_is_the_hosts(run_container):
    r = run_container(["sh", "-c", "grep ' /sys ' /proc/self/mountinfo; ls /sys/class/net"],
                      edit=edits(with_userns, without("network")))
    assert r.rc == 0, r
    assert " /sys " in r.out and " - sysfs " in r.out, r.out
    # The host's interfaces: the host's sysfs, bound (a new sysfs would refuse to mount).
    assert set(os.listdir("/sys/class/net")) <= set(r.out.split())


def test_mqueue_without_an_ipc_namespace_binds_the_hosts_or_says_why(run_container):
    # A new mqueue needs an ipc namespace the user namespace owns; without one, the host's
    # /dev/mqueue is bound (runc's fallback) if the host has one, else a clear error.
    host_has = os.path.isdir("/dev/mqueue")
    r = run_container(["grep", " /dev/mqueue ", "/proc/self/mounts"],
                      edit=edits(with_userns, without("ipc")))
    if os.path.isdir("/dev/mqueue") != host_has:
        pytest.skip("the host's /dev/mqueue came or went during the test")
    if host_has:
        assert r.rc == 0, r
        assert r.out.split()[2] in ("mqueue", "tmpfs", "devtmpfs"), r.out
    else:
        assert r.rc == 1, r
        line = one_line_error(r.err)
        assert "mounts[4] /dev/mqueue" in line and "needs an ipc namespace of its own" in line, line


def test_oom_score_adj_is_set_before_the_user_namespace(run_container):
    def oom(cfg: dict) -> None:
        cfg["process"]["oomScoreAdj"] = 321
    r = run_container(["cat", "/proc/self/oom_score_adj"], edit=edits(with_userns, oom))
    assert r.rc == 0, r
    assert r.out.strip() == "321"


def test_cgroup_namespace_inside_a_user_namespace(run_container):
    r = run_container(["cat", "/proc/self/cgroup"], edit=edits(
        with_userns, lambda c: c["linux"]["namespaces"].append({"type": "cgroup"})))
    assert r.rc == 0, r
    assert all(line.endswith(":/") for line in r.out.splitlines() if line), r.out


def test_exec_enters_the_user_namespace(pyrunc, bundle, tmp_path):
    cid, pid = _sleeper_in_a_userns(pyrunc, bundle)
    res = pyrunc("exec", cid, "sh", "-c", "id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user;"
                 " touch /dev/shm/x && stat -c %u /dev/shm/x", check=True)
    out = res.stdout.decode().split("\n")
    assert out[0] == "0"
    assert out[1].split() == ["0", str(HOST), "65536"]
    assert out[2] == os.readlink(f"/proc/{pid}/ns/user")
    assert out[3] == "0"
    user = pyrunc("exec", "--user", "1000:1000", cid, "id", check=True).stdout.decode()
    assert user.startswith("uid=1000 gid=1000"), user
    pyrunc("delete", "--force", cid, check=True)


def test_join_a_user_namespace_by_path(pyrunc, bundle, run_container):
    holder, pid = _sleeper_in_a_userns(pyrunc, bundle)
    path = f"/proc/{pid}/ns/user"

    def join(cfg: dict) -> None:
        cfg["linux"]["namespaces"].append({"type": "user", "path": path})
    r = run_container(["sh", "-c", "readlink /proc/self/ns/user; id -u; cat /proc/self/uid_map"],
                      edit=join)
    assert r.rc == 0, r
    lines = r.out.splitlines()
    assert lines[0] == os.readlink(path)
    assert lines[1] == "0" and lines[2].split() == ["0", str(HOST), "65536"]

    def join_wrong_maps(cfg: dict) -> None:
        join(cfg)
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 10}]
        cfg["linux"]["gidMappings"] = MAP
    r = run_container(["true"], edit=join_wrong_maps)
    assert r.rc == 1
    assert "non-matching mapping" in one_line_error(r.err)
    pyrunc("delete", "--force", holder, check=True)


@pytest.mark.parametrize("edit, needle", [
    (lambda c: c["linux"]["namespaces"].append({"type": "user"}),
     "user namespaces enabled, but no namespace path to join nor mappings"),
    (lambda c: c["linux"].update(uidMappings=MAP, gidMappings=MAP),
     "user namespace mappings specified, but user namespace isn't enabled"),
    (lambda c: with_userns(c, uids=[{"containerID": 1, "hostID": HOST, "size": 10}]),
     "/linux/uidMappings: user namespaces enabled, but no root user mapping found"),
    (lambda c: (with_userns(c), c["process"]["user"].update(uid=70000)),
     "/process/user/uid: cannot setuid to unmapped uid 70000 in user namespace"),
    (lambda c: with_userns(c, gids=[{"containerID": 0, "hostID": HOST, "size": 1}]),
     "/mounts/2 (/dev/pts): cannot specify gid=5 mount option"),
])
def test_impossible_user_namespace_configs_are_refused(run_container, edit, needle):
    r = run_container(["true"], edit=edit)
    assert r.rc == 1, r
    assert needle in one_line_error(r.err)


def test_a_map_the_kernel_refuses_fails_cleanly(run_container):
    # Overlapping ranges pass our checks but not the kernel's: the parent's write fails, the
    # intermediate waiting for its maps is ended, and the fixture finds nothing left behind.
    overlap = [{"containerID": 0, "hostID": HOST, "size": 100},
               {"containerID": 50, "hostID": HOST + 1000, "size": 100}]
    r = run_container(["true"], edit=lambda c: with_userns(c, uids=overlap))
    assert r.rc == 1, r
    line = one_line_error(r.err)
    assert "linux.uidMappings: writing /proc/" in line and "invalid argument" in line, line


def test_state_is_the_same_as_without_a_user_namespace(pyrunc, bundle):
    cfg = base_config(["sleep", "1000"])
    with_userns(cfg)
    bundle.write(cfg)
    cid = pyrunc.new_id()
    pyrunc("create", "--bundle", str(bundle.path), cid, check=True,
           capture_output=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
           stderr=subprocess.DEVNULL)
    st = pyrunc.state(cid)
    assert st["status"] == "created"
    pyrunc("start", cid, check=True)
    assert wait_status(pyrunc, cid, "running")["pid"] == st["pid"]
    pyrunc("kill", cid, "KILL", check=True)
    wait_status(pyrunc, cid, "stopped")
    pyrunc("delete", cid, check=True)
    assert json.loads(pyrunc("list", "--format", "json", check=True).stdout or b"[]") == []


def test_time_offsets_written_by_the_parent(run_container):
    def timens(cfg: dict) -> None:
        cfg["linux"]["namespaces"].append({"type": "time"})
        cfg["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 365, "nanosecs": 0}}
    r = run_container(["cat", "/proc/uptime"], edit=edits(with_userns, timens))
    assert r.rc == 0, r
    host_uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert float(r.out.split()[0]) >= host_uptime + 86400 * 365 - 60, r.out
