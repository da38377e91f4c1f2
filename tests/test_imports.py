"""Import discipline: the modules on every command's path must not pull in the heavy stdlib.

Python's interpreter start is pyrunc's floor; each of these costs milliseconds (re, enum and
typing together ~15 ms, more than runc's whole `state`), so they are kept off the hot paths.
Structural, not timed: it checks which modules got loaded, in a fresh `-I -S` interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import REPO

HEAVY = {"re", "enum", "typing", "collections", "json", "inspect", "dataclasses", "socket",
         "signal", "argparse", "subprocess", "jsonschema", "pyroute2", "pyseccomp", "logging"}


@pytest.mark.parametrize("modules", [
    "pyrunc.cli, pyrunc.commands, pyrunc.lifecycle, pyrunc.state",         # state, kill, delete
    "pyrunc.cli, pyrunc.commands, pyrunc.create, pyrunc.run, pyrunc.config, pyrunc.schema",
    "pyrunc.cli, pyrunc.commands, pyrunc.execute",
])
def test_hot_paths_import_nothing_heavy(modules: str) -> None:
    code = (f"import sys; sys.path[:0] = [{str(REPO)!r}, '/usr/local/lib/pyrunc/vendor']; "
            f"import {modules}; "
            "print(' '.join(sorted(sys.modules)))")
    out = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True).stdout.split()
    assert HEAVY.isdisjoint(out), sorted(HEAVY.intersection(out))


def test_validating_a_config_with_devices_needs_no_re() -> None:
    code = (f"import sys; sys.path[:0] = [{str(REPO)!r}]; from pyrunc import schema; "
            "schema.validate({'ociVersion': '1.0.2', 'root': {'path': 'r'}, 'linux': "
            "{'resources': {'devices': [{'allow': False, 'access': 'rwm'}]}}}); "
            "print('re' in sys.modules)")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


@pytest.mark.kernel
def test_a_real_run_without_net_devices_never_imports_pyroute2(pyrunc, bundle) -> None:
    """-X importtime lists every import of a real `run`, children included: no pyroute2 unless
    the config has linux.netDevices (test_netdev.py checks the other half)."""
    launcher = (f"import sys; sys.path[:0] = [{str(REPO)!r}, '/usr/local/lib/pyrunc/vendor']; "
                "from pyrunc.cli import main; sys.exit(main())")
    bundle.write()
    r = subprocess.run(["/usr/bin/python3", "-X", "importtime", "-I", "-S", "-c", launcher,
                        "--root", str(pyrunc.root), "run", "--bundle", str(bundle.path),
                        pyrunc.new_id()], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert "| pyrunc.create" in r.stderr  # the trace is there
    assert "pyroute2" not in r.stderr and "pyrunc.netdev" not in r.stderr


@pytest.mark.kernel
def test_short_commands_leave_cgroups_py_alone(pyrunc, bundle) -> None:
    """state and list (the paused check: cgroup_freezer.py), kill without --all, exec, and
    delete of an exited container whose cgroup2 directory is empty (cgroup_cleanup.py) never load
    cgroups.py (~1 M instructions a call); pause still reports "paused" without it."""
    launcher = (f"import sys; sys.path[:0] = [{str(REPO)!r}, '/usr/local/lib/pyrunc/vendor']; "
                "from pyrunc.cli import main; sys.exit(main())")

    def traced(*args: str) -> subprocess.CompletedProcess:
        r = subprocess.run(["/usr/bin/python3", "-X", "importtime", "-I", "-S", "-c", launcher,
                            "--root", str(pyrunc.root), *args], capture_output=True, text=True,
                           check=False)
        assert r.returncode == 0, r.stderr
        assert "pyrunc.lifecycle" in r.stderr  # the trace is there
        return r

    bundle.edit()["process"]["args"] = ["sleep", "60"]
    bundle.write()
    cid = pyrunc.new_id()
    quiet = {"capture_output": False, "stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
             "stderr": subprocess.DEVNULL}   # the container keeps its stdio: no pipes to wait on
    pyrunc("create", "--bundle", str(bundle.path), cid, check=True, **quiet)
    pyrunc("start", cid, check=True)
    pyrunc("pause", cid, check=True)
    for args in (("state", cid), ("list",)):
        r = traced(*args)
        assert "paused" in r.stdout and "pyrunc.cgroups" not in r.stderr, r.stderr
    pyrunc("resume", cid, check=True)
    assert '"running"' in traced("state", cid).stdout
    # exec neither: its process joins the cgroups by cgroup_join.py alone.
    r = subprocess.run(["/usr/bin/python3", "-X", "importtime", "-I", "-S", "-c", launcher,
                        "--root", str(pyrunc.root), "exec", cid, "true"], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0 and "pyrunc.execute" in r.stderr, r.stderr
    assert "pyrunc.cgroups" not in r.stderr, r.stderr
    assert "pyrunc.cgroups" not in traced("kill", cid, "KILL").stderr
    for _ in range(500):
        if pyrunc.state(cid)["status"] == "stopped":
            break
        time.sleep(0.01)
    r = traced("delete", cid)
    assert "pyrunc.cgroup_cleanup" in r.stderr and "pyrunc.cgroups" not in r.stderr, r.stderr
    assert pyrunc("state", cid).returncode != 0
