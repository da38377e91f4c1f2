"""linux.netDevices: interfaces moved into the container's network namespace, as the spec says.

Everything happens in a network namespace each test creates (`ip netns add`); pyrunc runs in it
through nsenter (only the network namespace changes: cgroups and mounts stay the host's), so
no interface of the host is ever touched, and the namespace is deleted after the test. A
virtual device moved into a container must die with the container's namespace (and a veth's
peer with it): the tests wait for that after delete.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import NetNS, ip, is_warning, links, one_line_error, poll, wait_status

pytestmark = pytest.mark.kernel


def veth_pair(ns: NetNS) -> None:
    """ve-host (10.200.0.1) stays; ve-ctr carries global v4/v6 addresses, a host-scope one
    (not to be moved), an MTU of 1400, and is up."""
    ns.sh("ip link add ve-host type veth peer name ve-ctr; "
          "ip addr add 10.200.0.1/24 dev ve-host; ip link set ve-host up; "
          "ip addr add 10.200.0.2/24 dev ve-ctr; ip addr add fd00:200::2/64 dev ve-ctr; "
          "ip addr add 10.200.9.9/32 scope host dev ve-ctr; "
          "ip link set ve-ctr mtu 1400; ip link set ve-ctr up")


def with_devices(bundle, devices: dict, args: list[str]) -> None:
    cfg = bundle.edit()
    cfg["linux"]["netDevices"] = devices
    cfg["process"]["args"] = args
    caps = cfg["process"]["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        caps[kind] = caps[kind] + ["CAP_NET_RAW"]  # busybox ping opens a raw socket
    for applet in ("ping",):
        link = bundle.rootfs / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    bundle.write()


def test_veth_moved_renamed_with_its_addresses_and_gone_after_delete(pyrunc, bundle, netns,
                                                                      tmp_path):
    veth_pair(netns)
    script = "ip -o link show eth0; ip -o addr show dev eth0; ping -c 1 -W 10 10.200.0.1"
    with_devices(bundle, {"ve-ctr": {"name": "eth0"}}, ["sh", "-c", script])
    cid = pyrunc.new_id()
    with open(tmp_path / "out", "wb") as out:
        pyrunc("create", "--bundle", str(bundle.path), cid, check=True, capture_output=False,
               stdout=out, stderr=out)
    pid = pyrunc.state(cid)["pid"]
    assert "ve-ctr" not in links(netns.name)
    inside = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-o", "addr", "show"],
                            capture_output=True, text=True, check=True).stdout
    assert "eth0" in inside and "10.200.0.2/24" in inside and "fd00:200::2/64" in inside
    pyrunc("start", cid, check=True)
    wait_status(pyrunc, cid, "stopped", timeout=30)
    text = (tmp_path / "out").read_text()
    link_line = text.splitlines()[0]
    assert ": eth0" in link_line and "mtu 1400" in link_line and ",UP" in link_line, text
    assert "inet 10.200.0.2/24" in text and "inet6 fd00:200::2/64" in text, text
    assert "10.200.9.9" not in text, "a host-scope address must not be moved"
    assert "1 packets received" in text, text  # the moved device carries traffic
    pyrunc("delete", cid, check=True)
    # Virtual devices are destroyed with the container's namespace (runtime-spec), and
    # the veth's peer with them.
    poll(lambda: "ve-host" not in links(netns.name), 10, "the veth pair to be destroyed")


def in_syscall(pid: int, name: str) -> bool:
    """Whether the process sleeps in that syscall (/proc/<pid>/syscall: its number first)."""
    numbers = {"x86_64": {"recvmsg": "47", "rt_sigtimedwait": "128"},
               "aarch64": {"recvmsg": "212", "rt_sigtimedwait": "137"}}[platform.machine()]
    return Path(f"/proc/{pid}/syscall").read_text().split()[0] == numbers[name]


def test_devices_wait_for_the_direct_inits_own_namespace(pyrunc, bundle, netns, tmp_path):
    """A direct init makes its network namespace after its fork: until then its
    /proc/<pid>/ns/net is create's own, where a move is a no-op and the rename lands on the
    host's side. Held just before its unshare, the device must stay where it is, untouched,
    for as long as create can go on without it; then end up inside."""
    veth_pair(netns)
    with_devices(bundle, {"ve-ctr": {"name": "eth0"}}, ["true"])
    cid = pyrunc.new_id()
    env = dict(os.environ, PYRUNC_TEST_PAUSE="create:init-before-unshare")
    with open(tmp_path / "err", "wb") as err:
        # The netns fixture's wrapper execs nsenter, which execs pyrunc: one process.
        create = subprocess.Popen([pyrunc.binary, "--root", str(pyrunc.root), "create",
                                   "--bundle", str(bundle.path), cid], env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        init = 0
        try:
            children = Path(f"/proc/{create.pid}/task/{create.pid}/children")
            poll(lambda: children.read_text().split(), 30, "create to fork its init")
            init = int(children.read_text().split()[0])
            # A pid namespace's init waits for SIGCONT there (state.pause_point).
            poll(lambda: in_syscall(init, "rt_sigtimedwait"), 30, "the init at its pause point")
            poll(lambda: create.poll() is not None or in_syscall(create.pid, "recvmsg"), 30,
                 "create to wait for its init")
            assert create.poll() is None, (tmp_path / "err").read_text()
            assert "ve-ctr" in links(netns.name) and "eth0" not in links(netns.name), \
                links(netns.name)
            os.kill(init, signal.SIGCONT)
            assert create.wait(timeout=30) == 0, (tmp_path / "err").read_text()
        finally:
            if create.poll() is None:
                if init:
                    os.kill(init, signal.SIGKILL)
                create.kill()
                create.wait()
    assert not {"ve-ctr", "eth0"} & set(links(netns.name)), links(netns.name)
    pid = pyrunc.state(cid)["pid"]
    inside = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-o", "link", "show"],
                            capture_output=True, text=True, check=True).stdout
    assert ": eth0@" in inside, inside
    pyrunc("delete", "--force", cid, check=True)


def test_devices_moved_into_a_namespace_joined_by_path(pyrunc, bundle, netns, tmp_path):
    """The direct init says "netns" once it is in its network namespace, joined by path as well
    as made: create waits for that before it moves anything."""
    veth_pair(netns)
    with_devices(bundle, {"ve-ctr": {"name": "eth0"}}, ["true"])
    joined = f"{netns.name}-joined"
    ip("netns", "add", joined)
    try:
        cfg = bundle.edit()
        for ns in cfg["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = f"/run/netns/{joined}"
        bundle.write()
        cid = pyrunc.new_id()
        with open(tmp_path / "out", "wb") as out:   # the init keeps create's stdio: no pipes
            pyrunc("create", "--bundle", str(bundle.path), cid, check=True,
                   capture_output=False, stdout=out, stderr=out)
        assert "eth0" in links(joined) and "ve-ctr" not in links(netns.name), links(joined)
        pyrunc("delete", "--force", cid, check=True)
    finally:
        ip("netns", "del", joined, check=False)


@pytest.mark.parametrize("kind", ["dummy", "macvlan"])
def test_second_device_kind_keeps_its_name_or_gets_a_numbered_one(pyrunc, bundle, netns, kind):
    veth_pair(netns)
    if kind == "dummy":
        if ip("-n", netns.name, "link", "add", "extra0", "type", "dummy",
              check=False).returncode != 0:
            pytest.skip("this kernel has no dummy interfaces (module missing)")
        devices = {"extra0": {}}
        name = "extra0"
    else:
        netns.sh("ip link add extra0 link ve-host type macvlan")
        devices = {"extra0": {"name": "mv%d"}}  # the kernel picks the number
        name = "mv0"
    netns.sh("ip addr add 10.201.0.5/16 dev extra0")
    with_devices(bundle, devices, ["sh", "-c", "ip -o addr show"])
    r = pyrunc("run", "--bundle", str(bundle.path), pyrunc.new_id())
    assert r.returncode == 0, r.stderr
    assert f": {name}    inet 10.201.0.5/16" in r.stdout.decode(), r.stdout
    poll(lambda: "extra0" not in links(netns.name), 10, "the device to die with the container")


def test_missing_device_fails_create_and_moves_nothing(pyrunc, bundle, netns):
    veth_pair(netns)
    with_devices(bundle, {"ve-ctr": {"name": "eth0"}, "nope0": {}}, ["true"])
    cid = pyrunc.new_id()
    r = pyrunc("run", "--bundle", str(bundle.path), cid)
    assert r.returncode == 1
    line = one_line_error(r.stderr.decode())
    assert "/linux/netDevices/nope0: no such network device" in line, line
    assert "ve-ctr" in links(netns.name)
    assert "10.200.0.2/24" in netns.addrs("ve-ctr")
    assert not (pyrunc.root / cid).exists()


def test_failure_midway_gives_the_moved_devices_back(pyrunc, bundle, netns):
    veth_pair(netns)
    netns.sh("ip link add mv-x link ve-host type macvlan")
    # ve-ctr moves first; "lo" is taken in the container's namespace, so mv-x cannot follow.
    with_devices(bundle, {"ve-ctr": {"name": "eth0"}, "mv-x": {"name": "lo"}}, ["true"])
    cid = pyrunc.new_id()
    r = pyrunc("run", "--bundle", str(bundle.path), cid)
    assert r.returncode == 1
    line = one_line_error(r.stderr.decode())
    assert "/linux/netDevices/mv-x: moving it into the container's network namespace as lo: " \
           "a device of that name is already there" in line, line
    assert {"ve-ctr", "mv-x"} <= set(links(netns.name))
    back = ip("-n", netns.name, "-o", "link", "show", "ve-ctr").stdout
    assert "mtu 1400" in back and ",UP" in back, back
    addrs = netns.addrs("ve-ctr")
    assert "10.200.0.2/24" in addrs and "fd00:200::2/64" in addrs, addrs
    assert not (pyrunc.root / cid).exists()
    assert not [ln for ln in r.stderr.decode().splitlines() if is_warning(ln)]


@pytest.mark.parametrize("devices, namespaces, message", [
    ({"eth9": {}}, False, "/linux/netDevices: needs a network namespace"),
    ({"bad/name": {}}, True, "/linux/netDevices/bad/name: invalid network device name"),
    ({"eth9": {"name": "x" * 16}}, True, "/linux/netDevices/eth9/name: invalid network device"),
    ({"eth8": {"name": "c0"}, "eth9": {"name": "c0"}}, True,
     "/linux/netDevices/eth9/name: 'c0' is also the name of /linux/netDevices/eth8"),
])
def test_config_mistakes_are_one_line(pyrunc, bundle, devices, namespaces, message):
    cfg = bundle.edit()
    cfg["linux"]["netDevices"] = devices
    if not namespaces:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"]
                                      if n["type"] != "network"]
    bundle.write()
    cid = pyrunc.new_id()
    r = pyrunc("run", "--bundle", str(bundle.path), cid)
    assert r.returncode == 1
    assert message in one_line_error(r.stderr.decode())


def test_features_lists_net_devices(pyrunc):
    feats = json.loads(pyrunc("features", check=True).stdout)
    assert feats["linux"]["netDevices"] == {"enabled": True}


def test_pyroute2_is_imported_for_net_devices(pyrunc, bundle, netns):
    """The other half of test_imports.py's check: -X importtime of a real `run` with
    netDevices lists pyroute2 (and its cost, see README)."""
    from conftest import REPO
    launcher = (f"import sys; sys.path[:0] = [{str(REPO)!r}, '/usr/local/lib/pyrunc/vendor']; "
                "from pyrunc.cli import main; sys.exit(main())")
    veth_pair(netns)
    with_devices(bundle, {"ve-ctr": {}}, ["true"])
    moved = subprocess.run(["nsenter", f"--net=/run/netns/{netns.name}", "/usr/bin/python3",
                            "-X", "importtime", "-I", "-S", "-c", launcher, "--root",
                            str(pyrunc.root), "run", "--bundle", str(bundle.path),
                            pyrunc.new_id()], capture_output=True, text=True, check=False)
    assert moved.returncode == 0, moved.stderr
    assert "| pyroute2\n" in moved.stderr


def test_netlink_error_is_one_line_naming_the_device(pyrunc, bundle, netns):
    """lo is bound to its namespace (NETIF_F_NETNS_LOCAL): the kernel refuses the move."""
    with_devices(bundle, {"lo": {"name": "lo2"}}, ["true"])
    cid = pyrunc.new_id()
    r = pyrunc("run", "--bundle", str(bundle.path), cid)
    assert r.returncode == 1
    line = one_line_error(r.stderr.decode())
    assert line.endswith("config.json: /linux/netDevices/lo: moving it into the container's "
                         "network namespace as lo2: invalid argument"), line
    assert links(netns.name) == ["lo"] and not (pyrunc.root / cid).exists()


def test_moved_into_a_container_with_its_own_user_namespace(pyrunc, bundle, netns):
    """The container's network namespace then belongs to its user namespace: pyrunc (root in
    the initial one) still moves the device in and configures it there."""
    veth_pair(netns)
    with_devices(bundle, {"ve-ctr": {"name": "eth0"}}, ["sh", "-c", "ip -o addr show eth0"])
    cfg = bundle.edit()
    cfg["linux"]["namespaces"].append({"type": "user"})
    mapping = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["uidMappings"] = cfg["linux"]["gidMappings"] = mapping
    bundle.write()
    r = pyrunc("run", "--bundle", str(bundle.path), pyrunc.new_id())
    assert r.returncode == 0, r.stderr
    assert "eth0    inet 10.200.0.2/24" in r.stdout.decode(), r.stdout
    poll(lambda: "ve-host" not in links(netns.name), 10, "the veth pair to be destroyed")
