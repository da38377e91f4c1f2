"""Import discipline: the modules on every command's path must not pull in the heavy stdlib.

Python's interpreter start is pyrunc's floor; each of these costs milliseconds (re, enum and
typing together ~15 ms, more than runc's whole `state`), so they are kept off the hot paths.
Structural, not timed: it checks which modules got loaded, in a fresh `-I -S` interpreter.
"""

from __future__ import annotations

import json
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


def _created_sleeper(pyrunc, bundle) -> str:
    """A created container whose process will sleep; its id."""
    bundle.edit()["process"]["args"] = ["sleep", "60"]
    bundle.write()
    cid = pyrunc.new_id()
    quiet = {"capture_output": False, "stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
             "stderr": subprocess.DEVNULL}   # the container keeps its stdio: no pipes to wait on
    pyrunc("create", "--bundle", str(bundle.path), cid, check=True, **quiet)
    return cid


def _importtime(root: str, *args: str) -> subprocess.CompletedProcess:
    """A pyrunc command under -X importtime (stderr lists every module it imported)."""
    launcher = (f"import sys; sys.path[:0] = [{str(REPO)!r}, '/usr/local/lib/pyrunc/vendor']; "
                "from pyrunc.cli import main; sys.exit(main())")
    return subprocess.run(["/usr/bin/python3", "-X", "importtime", "-I", "-S", "-c", launcher,
                           "--root", root, *args], capture_output=True, text=True, check=False)


def _imported(trace: str) -> set[str]:
    return {line.rpartition("|")[2].strip() for line in trace.splitlines() if "|" in line}


@pytest.mark.kernel
def test_short_commands_leave_cgroups_py_alone(pyrunc, bundle) -> None:
    """state and list (the paused check: cgroup_freezer.py), kill without --all, exec, and
    delete of an exited container whose cgroup2 directory is empty (lifecycle_delete.py's rmdirs
    alone, not even cgroup_cleanup.py) never load cgroups.py (~1 M instructions a call); pause
    still reports "paused" without it."""
    def traced(*args: str) -> subprocess.CompletedProcess:
        r = _importtime(str(pyrunc.root), *args)
        assert r.returncode == 0, r.stderr
        assert "pyrunc.lifecycle" in r.stderr  # the trace is there
        return r

    cid = _created_sleeper(pyrunc, bundle)
    pyrunc("start", cid, check=True)
    pyrunc("pause", cid, check=True)
    for args in (("state", cid), ("list",)):
        r = traced(*args)
        assert "paused" in r.stdout and "pyrunc.cgroups" not in r.stderr, r.stderr
    pyrunc("resume", cid, check=True)
    assert '"running"' in traced("state", cid).stdout
    # exec neither: its process joins the cgroups by cgroup_join.py alone.
    r = _importtime(str(pyrunc.root), "exec", cid, "true")
    assert r.returncode == 0 and "pyrunc.execute" in r.stderr, r.stderr
    assert "pyrunc.cgroups" not in r.stderr, r.stderr
    assert "pyrunc.terminal" not in r.stderr, r.stderr   # without -t: no pty code at all
    assert "pyrunc.cgroups" not in traced("kill", cid, "KILL").stderr
    for _ in range(500):
        if pyrunc.state(cid)["status"] == "stopped":
            break
        time.sleep(0.01)
    r = traced("delete", cid)
    assert "pyrunc.lifecycle_delete" in r.stderr, r.stderr
    assert "pyrunc.cgroups" not in r.stderr and "pyrunc.cgroup_cleanup" not in r.stderr, r.stderr
    assert pyrunc("state", cid).returncode != 0


@pytest.mark.kernel
def test_short_commands_load_only_their_own_code(pyrunc, bundle) -> None:
    """A successful state, list or kill makes no exception class (exceptions.py; each class
    costs ~70 K instructions) and loads neither log.py nor start's or delete's code; start and
    delete load only their own module."""
    cid = _created_sleeper(pyrunc, bundle)
    root = str(pyrunc.root)
    r = _importtime(root, "start", cid)
    assert r.returncode == 0, r.stderr
    mods = _imported(r.stderr)
    assert "pyrunc.lifecycle_start" in mods and "pyrunc.lifecycle_delete" not in mods, mods
    # lifecycle.py (run_late_hooks) only for a config that may have poststart hooks
    assert {"pyrunc.exceptions", "pyrunc.log", "pyrunc.listing", "pyrunc.cli_help",
            "pyrunc.lifecycle"}.isdisjoint(mods), mods
    never = {"pyrunc.exceptions", "pyrunc.log", "pyrunc.lifecycle_start",
             "pyrunc.lifecycle_delete", "pyrunc.init", "pyrunc.create", "pyrunc.create_cmd",
             "pyrunc.cli_help"}
    for args in (("state", cid), ("list",), ("kill", cid, "0")):
        r = _importtime(root, *args)
        assert r.returncode == 0, r.stderr
        mods = _imported(r.stderr)
        assert "pyrunc.lifecycle" in mods  # the trace is there
        assert never.isdisjoint(mods), sorted(never & mods)
        assert ("pyrunc.listing" in mods) == (args[0] == "list"), args
        # kill asks no status (fifo, freezer) without --all: the pidfd check alone decides
        assert ("pyrunc.cgroup_freezer" in mods) == (args[0] != "kill"), args
    assert '"running"' in _importtime(root, "state", cid).stdout
    assert _importtime(root, "kill", cid, "KILL").returncode == 0
    for _ in range(500):
        if pyrunc.state(cid)["status"] == "stopped":
            break
        time.sleep(0.01)
    r = _importtime(root, "delete", cid)
    assert r.returncode == 0, r.stderr
    mods = _imported(r.stderr)
    assert "pyrunc.lifecycle_delete" in mods and "pyrunc.lifecycle_start" not in mods, mods
    assert {"pyrunc.exceptions", "pyrunc.log", "pyrunc.listing", "pyrunc.create_cmd"}.isdisjoint(mods), mods
    # A stopped container without a shim or poststop hooks: no kill code (delete_live.py) and
    # no lifecycle.py (run_late_hooks) either.
    assert {"pyrunc.lifecycle", "pyrunc.delete_live"}.isdisjoint(mods), mods
    assert pyrunc("state", cid).returncode != 0


@pytest.mark.kernel
def test_delete_after_the_shim_left_loads_no_kill_code(pyrunc, bundle) -> None:
    """Once pyrunc-shim has recorded the exit and exited (gone, or a zombie this host's PID 1
    has not reaped yet), delete neither signals it nor loads delete_live.py or lifecycle.py;
    the shim's exit.json and output.log go with the state dir."""
    bundle.edit()["process"]["args"] = ["true"]
    bundle.write()
    cid = pyrunc.new_id()
    pyrunc("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    shim = json.loads((pyrunc.root / cid / "state.json").read_text())["shim"]["pid"]
    for _ in range(500):
        try:
            with open(f"/proc/{shim}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    break
        except FileNotFoundError:
            break
        time.sleep(0.01)
    assert (pyrunc.root / cid / "exit.json").exists()
    r = _importtime(str(pyrunc.root), "delete", cid)
    assert r.returncode == 0, r.stderr
    mods = _imported(r.stderr)
    assert "pyrunc.lifecycle_delete" in mods, mods
    assert {"pyrunc.delete_live", "pyrunc.lifecycle"}.isdisjoint(mods), mods
    assert not (pyrunc.root / cid).exists()


def test_an_os_error_is_one_line_without_the_create_path(tmp_path) -> None:
    """An OSError reaching the CLI (here `list` of a --root that is a file) is one line naming
    the file, exit 1; errors.describe phrases it, no longer init.py's copy, which loaded the
    whole create path (~10 M instructions: what a `kill` under valgrind, which lacks pidfd_open,
    paid for its ENOSYS)."""
    root = tmp_path / "file"
    root.write_text("")
    r = _importtime(str(root), "list")
    assert r.returncode == 1
    out = [line for line in r.stderr.splitlines() if not line.startswith("import time:")]
    assert out == [f"pyrunc: {root}: not a directory"], out
    mods = _imported(r.stderr)
    assert "pyrunc.cli" in mods and "pyrunc.log" in mods  # the trace is there
    assert {"pyrunc.init", "pyrunc.create", "pyrunc.process"}.isdisjoint(mods), mods
