"""Standalone networking: contrib/cni-hook puts containers on a bridge with Debian's CNI plugins.

All inside a network namespace the test creates (the `netns` fixture): the bridge, the veths and
the routes live there, with no gateway and no masquerading, so the host's routes and iptables
are never touched. The IPAM state lives in the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from conftest import REPO, ip, links, wait_status

pytestmark = pytest.mark.kernel

HOOK = str(REPO / "contrib" / "cni-hook")
PLUGINS = "/usr/lib/cni"


@pytest.fixture
def network(tmp_path, netns):
    if not os.access(os.path.join(PLUGINS, "bridge"), os.X_OK):
        pytest.skip("containernetworking-plugins is not installed (contrib/setup.sh)")
    bridge = f"pyrbr{uuid.uuid4().hex[:6]}"
    conf = {"cniVersion": "1.0.0", "name": f"pyrunc-test-{bridge}", "plugins": [
        {"type": "loopback"},
        {"type": "bridge", "bridge": bridge, "isGateway": False, "ipMasq": False,
         "ipam": {"type": "host-local", "subnet": "10.88.7.0/24",
                  "dataDir": str(tmp_path / "ipam")}}]}
    path = tmp_path / "net.conflist"
    path.write_text(json.dumps(conf))
    yield path, bridge
    ip("-n", netns.name, "link", "del", bridge, check=False)  # CNI never removes a bridge


def on_network(bundle, conflist, args: list[str]) -> None:
    cfg = bundle.edit()
    cfg["process"]["args"] = args
    caps = cfg["process"]["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        caps[kind] = caps[kind] + ["CAP_NET_RAW"]  # busybox ping opens a raw socket
    if not (bundle.rootfs / "bin" / "ping").exists():
        (bundle.rootfs / "bin" / "ping").symlink_to("busybox")
    cfg["hooks"] = {
        "createRuntime": [{"path": HOOK, "args": ["cni-hook", "add", str(conflist)]}],
        "poststop": [{"path": HOOK, "args": ["cni-hook", "del", str(conflist)]}],
    }
    bundle.write()


def address_of(pyrunc, cid: str) -> str:
    out = pyrunc("exec", cid, "ip", "-4", "-o", "addr", "show", "dev", "eth0", check=True)
    return out.stdout.decode().split(" inet ")[1].split("/")[0]


def test_two_containers_on_a_bridge_ping_each_other(pyrunc, bundle, netns, network, tmp_path):
    conflist, bridge = network
    on_network(bundle, conflist, ["sleep", "100"])
    ids = [pyrunc.new_id("a"), pyrunc.new_id("b")]
    for cid in ids:
        pyrunc("create", "--bundle", str(bundle.path), cid, check=True, capture_output=False,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pyrunc("start", cid, check=True)
    first, second = (address_of(pyrunc, cid) for cid in ids)
    assert first != second and first.startswith("10.88.7.") and second.startswith("10.88.7.")
    for cid, peer in ((ids[0], second), (ids[1], first)):
        r = pyrunc("exec", cid, "ping", "-c", "1", "-W", "10", peer)
        assert r.returncode == 0 and b"1 packets received" in r.stdout, (r.stdout, r.stderr)
    ipam = tmp_path / "ipam" / json.loads(conflist.read_text())["name"]
    assert {first, second} <= set(os.listdir(ipam))
    for cid in ids:
        pyrunc("kill", cid, "KILL", check=True)
        wait_status(pyrunc, cid, "stopped")
        r = pyrunc("delete", cid, check=True)
        assert r.stderr == b"", r.stderr  # poststop's DEL went through
    # Addresses released, and no veth left on the bridge: only the bridge itself remains.
    assert not [f for f in os.listdir(ipam) if f.startswith("10.")]
    assert links(netns.name) == sorted(["lo", bridge])


def test_a_failing_plugin_fails_create_and_the_hook_undoes_the_others(pyrunc, bundle, netns,
                                                                      network, tmp_path):
    conflist, bridge = network
    conf = json.loads(conflist.read_text())
    # bridge succeeds (veth, address), then tuning fails: the hook must DEL the bridge's work.
    conf["plugins"].append({"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_key": "1"}})
    conflist.write_text(json.dumps(conf))
    on_network(bundle, conflist, ["true"])
    cid = pyrunc.new_id()
    r = pyrunc("run", "--bundle", str(bundle.path), cid)
    assert r.returncode == 1
    # The hook's own line (hook output goes to pyrunc's stderr), then pyrunc's error naming it.
    hook_line, error = r.stderr.decode().splitlines()
    assert hook_line.startswith(f"cni-hook: ADD on network {conf['name']}: plugin tuning: "), \
        hook_line
    assert "createRuntime hook #0" in error and "cni-hook" in error, error
    assert not (pyrunc.root / cid).exists()
    ipam = tmp_path / "ipam" / conf["name"]
    assert not [f for f in os.listdir(ipam) if f.startswith("10.")]  # the address was released
    assert links(netns.name) == sorted(["lo", bridge])                # and no veth is left


def test_missing_plugin_is_named_before_anything_runs(pyrunc, bundle, netns, network, tmp_path):
    conflist, _bridge = network
    conf = json.loads(conflist.read_text())
    conf["plugins"].append({"type": "pyrunc-no-such-plugin"})
    conflist.write_text(json.dumps(conf))
    on_network(bundle, conflist, ["true"])
    r = pyrunc("run", "--bundle", str(bundle.path), pyrunc.new_id())
    assert r.returncode == 1
    assert r.stderr.decode().splitlines()[0] == (
        f"cni-hook: plugin 'pyrunc-no-such-plugin' not found in CNI_PATH ({PLUGINS})")
    assert links(netns.name) == ["lo"]  # not even the bridge was made
