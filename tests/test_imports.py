"""Import discipline: the modules on every command's path must not pull in the heavy stdlib.

Python's interpreter start is pyrunc's floor; each of these costs milliseconds (re, enum and
typing together ~15 ms, more than runc's whole `state`), so they are kept off the hot paths.
Structural, not timed: it checks which modules got loaded, in a fresh `-I -S` interpreter.
"""

from __future__ import annotations

import subprocess
import sys

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
