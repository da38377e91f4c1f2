"""`pyrunc features` claims only what the code accepts and the kernel does."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import pyrunc_binary
from pyrunc import capabilities
from pyrunc.mounts import parse_mount


@pytest.fixture(scope="module")
def feats() -> dict:
    out = subprocess.run([pyrunc_binary(), "features"], capture_output=True, check=True)
    assert out.stderr == b""
    return json.loads(out.stdout)


def test_layout_is_runcs(feats):
    assert {"ociVersionMin", "ociVersionMax", "hooks", "mountOptions", "linux",
            "annotations"} <= set(feats)
    assert {"namespaces", "capabilities", "cgroup", "seccomp", "apparmor",
            "selinux"} <= set(feats["linux"])


def test_every_listed_mount_option_is_accepted(feats):
    for opt in feats["mountOptions"]:
        entry = {"destination": "/x", "source": "/tmp", "type": "none", "options": ["rbind", opt]}
        if opt == "tmpcopyup":
            entry = {"destination": "/x", "source": "tmpfs", "type": "tmpfs", "options": [opt]}
        parse_mount(entry, 0, "/b")  # raises for anything we do not implement


def test_capabilities_are_exactly_the_known_ones(feats):
    listed = feats["linux"]["capabilities"]
    assert "CAP_TEST" not in listed
    assert capabilities.parse({"bounding": listed}) is not None
    with pytest.raises(Exception):
        capabilities.parse({"bounding": ["CAP_TEST"]})


def test_no_lsm_or_systemd_is_claimed_on_this_host(feats):
    assert feats["linux"]["apparmor"] == {"enabled": False}
    assert feats["linux"]["selinux"] == {"enabled": False}
    assert feats["linux"]["cgroup"]["systemd"] is False


def test_user_namespaces_and_idmap_are_claimed(feats):
    # Proven by test_userns.py, test_rootless.py and test_idmap.py.
    assert "user" in feats["linux"]["namespaces"]
    assert feats["linux"]["mountExtensions"] == {"idmap": {"enabled": True}}
    assert {"idmap", "ridmap"} <= set(feats["mountOptions"])


@pytest.mark.kernel
def test_every_listed_namespace_can_be_created(feats, pyrunc, bundle):
    cfg = bundle.edit()
    cfg["linux"]["namespaces"] = [{"type": t} for t in feats["linux"]["namespaces"]]
    if "user" in feats["linux"]["namespaces"]:
        mapping = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        cfg["linux"]["uidMappings"] = cfg["linux"]["gidMappings"] = mapping
    cfg["process"]["args"] = ["true"]
    bundle.write()
    res = pyrunc("run", "--bundle", str(bundle.path), pyrunc.new_id())
    assert res.returncode == 0, res.stderr
