"""LSM fields on a host without AppArmor or SELinux (this one): the process labels are refused, as
runc 1.1.5 fails them (see pyrunc/lsm.py), never a silent run without confinement; a mountLabel,
which confines nothing without SELinux, is a warning (as crun)."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import base_config, one_line_error

from pyrunc import lsm

pytestmark = pytest.mark.kernel

if lsm.apparmor_enabled() or lsm.selinux_enabled():  # pragma: no cover - not this host
    pytest.skip("this host runs AppArmor or SELinux", allow_module_level=True)

CASES = [
    (("process", "apparmorProfile"), "docker-default", "/process/apparmorProfile", "AppArmor"),
    (("process", "selinuxLabel"), "system_u:system_r:container_t:s0", "/process/selinuxLabel",
     "SELinux"),

]


@pytest.mark.parametrize("field,value,path,lsm_name", CASES, ids=[c[2] for c in CASES])
def test_label_refused_without_the_lsm(pyrunc, run_container, field, value, path, lsm_name):
    r = run_container(["true"], edit=lambda cfg: cfg[field[0]].__setitem__(field[1], value))
    assert r.rc == 1, r
    line = one_line_error(r.err)
    assert path in line and lsm_name in line and "not" in line, line
    assert not (pyrunc.root / r.cid).exists()


def test_mount_label_is_a_warning_without_selinux(run_container):
    label = "system_u:object_r:container_file_t:s0"
    r = run_container(["echo", "ran"], edit=lambda cfg: cfg["linux"].__setitem__("mountLabel", label))
    assert r.rc == 0 and r.out == "ran\n", r
    warnings = [line for line in r.err.splitlines() if line]
    assert len(warnings) == 1 and "/linux/mountLabel" in warnings[0], r.err
    assert "SELinux" in warnings[0] and "ignored" in warnings[0], r.err


@pytest.mark.parametrize("field", [("process", "apparmorProfile"), ("process", "selinuxLabel"),
                                   ("linux", "mountLabel")])
def test_empty_label_asks_for_nothing(run_container, field):
    r = run_container(["echo", "ran"], edit=lambda cfg: cfg[field[0]].__setitem__(field[1], ""))
    assert r.rc == 0 and r.out == "ran\n", r


@pytest.mark.parametrize("flag,field", [("--apparmor", "apparmorProfile"),
                                        ("--process-label", "selinuxLabel")])
def test_exec_label_flags_refused(pyrunc, bundle, flag, field):
    bundle.write(base_config(["sleep", "100000"]))
    cid = pyrunc.new_id()
    r = pyrunc("run", "-d", "--bundle", str(bundle.path), cid, capture_output=False,
               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert r.returncode == 0
    r = pyrunc("exec", flag, "some-label", cid, "echo", "ran")
    assert r.returncode == 1 and r.stdout == b"", r
    line = one_line_error(r.stderr.decode())
    assert field in line and "not" in line, line
    # Nothing ran: the container still has only its init.
    ps = pyrunc("ps", "--format", "json", cid, check=True)
    assert len(json.loads(ps.stdout)) == 1
    pyrunc("kill", cid, "KILL", check=True)
