"""Joining cgroups without the kernel's grace period (pyrunc/cgroup_join.py): the init and
exec'd processes are born in their cgroup2 directory (clone3 CLONE_INTO_CGROUP) and move
themselves into the v1 hierarchies through `tasks`; no process writes a cgroup.procs file,
whose first write after a quiet period waits 10-18 ms here. Where the kernel refuses the
fast way in, the slow one gives the same placement.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, base_config
from test_cgroup_placement import cgroup_file, hierarchies

pytestmark = pytest.mark.kernel


def _traced(pyrunc, *args: str) -> tuple[subprocess.CompletedProcess, str]:
    """Run pyrunc under strace (every process): the result, and the trace."""
    trace = pyrunc.root.parent / f"trace-{uuid.uuid4().hex[:6]}"
    proc = subprocess.run(["strace", "-f", "-qq", "-s", "256", "-e", "trace=openat,clone3",
                           "-o", str(trace), pyrunc.binary, "--root", str(pyrunc.root), *args],
                          capture_output=True, timeout=60)
    text = trace.read_text()
    trace.unlink()
    return proc, text


def _writes_to(trace: str, name: str) -> list[str]:
    return [line for line in trace.splitlines()
            if f'/{name}"' in line and "O_WRONLY" in line and "= -1" not in line]


def test_run_places_the_init_without_a_cgroup_procs_write(pyrunc, bundle) -> None:
    bundle.write(base_config(["sh", "-c", "cat /proc/self/cgroup"]))
    cid = pyrunc.new_id("join")
    proc, trace = _traced(pyrunc, "run", "--bundle", str(bundle.path), cid)
    assert proc.returncode == 0, proc.stderr
    assert _writes_to(trace, "cgroup.procs") == []
    v1 = [key for key in hierarchies() if key]
    assert len(_writes_to(trace, "tasks")) == len(v1)
    if "" in hierarchies():
        assert "CLONE_INTO_CGROUP" in trace
    # ... and the process is where runc's rules put it, in every hierarchy.
    seen = dict(line.split(":", 2)[1:] for line in proc.stdout.decode().splitlines())
    for key in hierarchies():
        assert seen[key].endswith("/" + cid), (key, seen)


def test_exec_places_its_process_without_a_cgroup_procs_write(pyrunc, bundle) -> None:
    bundle.write(base_config(["sleep", "60"]))
    cid = pyrunc.new_id("join")
    pyrunc("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    init = cgroup_file(pyrunc.state(cid)["pid"])
    proc, trace = _traced(pyrunc, "exec", cid, "cat", "/proc/self/cgroup")
    assert proc.returncode == 0, proc.stderr
    assert _writes_to(trace, "cgroup.procs") == []
    seen = dict(line.split(":", 2)[1:] for line in proc.stdout.decode().splitlines())
    assert seen == init


def _child_cgroups(code: str) -> tuple[str, str]:
    """Run code (with pyrunc importable, `d` the v2 test directory) in a fresh interpreter:
    its output, and the directory's name."""
    name = f"pyrunct-join-{uuid.uuid4().hex[:6]}"
    v2 = hierarchies().get("")
    if v2 is None:
        pytest.skip("no cgroup2 mount on this host")
    d = Path(v2) / name
    d.mkdir()
    try:
        prog = f"import sys; sys.path[:0] = [{str(REPO)!r}]; d = {str(d)!r}\n" + code
        return subprocess.run([sys.executable, "-I", "-S", "-c", prog], capture_output=True,
                              text=True, check=True, timeout=30).stdout, name
    finally:
        d.rmdir()


def test_fork_is_born_in_the_cgroup2_directory() -> None:
    out, name = _child_cgroups(
        "import os\nfrom pyrunc import cgroup_join\n"
        "fd = cgroup_join.open_v2({'': d})\npid, born = cgroup_join.fork(fd)\n"
        "if pid == 0:\n    print(born, open('/proc/self/cgroup').read().split('0::')[1].strip())"
        "\n    sys.stdout.flush(); os._exit(0)\n"
        "os.waitpid(pid, 0)\n")
    assert out.split() == ["True", "/" + name]


def test_fork_falls_back_where_clone3_refuses_the_cgroup() -> None:
    """An fd that is no cgroup2 directory (EBADF from clone3): a plain fork, not an error."""
    out, _ = _child_cgroups(
        "import os\nfrom pyrunc import cgroup_join\n"
        "fd = os.open('/tmp', os.O_PATH | os.O_DIRECTORY)\npid, born = cgroup_join.fork(fd)\n"
        "if pid == 0:\n    os._exit(7)\n"
        "print(born, os.waitpid(pid, 0)[1] >> 8)\n")
    assert out.split() == ["False", "7"]


@pytest.fixture
def pids_cgroup() -> Iterator[Path]:
    """A new directory in the v1 pids hierarchy, removed (and checked gone) after the test."""
    pids = hierarchies().get("pids")
    if pids is None:
        pytest.skip("no v1 pids hierarchy")
    target = Path(pids) / f"pyrunct-join-{uuid.uuid4().hex[:6]}"
    target.mkdir()
    try:
        yield target
    finally:
        target.rmdir()
    assert not os.path.exists(target)


def _python(code: str) -> subprocess.CompletedProcess:
    """code in a fresh interpreter, with pyrunc importable."""
    return subprocess.run([sys.executable, "-I", "-S", "-c",
                           f"import sys, os; sys.path[:0] = [{str(REPO)!r}]\n" + code],
                          capture_output=True, text=True, timeout=30)


def test_join_self_moves_through_tasks_and_names_the_file_on_error(pids_cgroup) -> None:
    target = pids_cgroup
    proc = _python("from pyrunc import cgroup_join\n"
                   f"cgroup_join.join_self({{'pids': {str(target)!r}}}, False)\n"
                   "print(open('/proc/self/cgroup').read())\n"
                   f"cgroup_join.join_self({{'pids': {str(target / 'missing')!r}}}, False)\n")
    assert f":pids:/{target.name}\n" in proc.stdout
    assert proc.returncode != 0 and str(target / "missing" / "tasks") in proc.stderr


def test_files_the_parent_opened_move_the_child_that_writes_them(pids_cgroup) -> None:
    """A direct init joins through files its parent opened while it worked (open_for_join,
    join_through): "0" moves the writer, not the opener; the writer's fds are all closed after;
    a file that cannot be opened is named, and none opened before it stays open."""
    target = pids_cgroup
    proc = _python(
        "from pyrunc import cgroup_join\n"
        "def mine(): return [l for l in open('/proc/self/cgroup') if ':pids:' in l][0]\n"
        "def fds(): return sorted(os.listdir('/proc/self/fd'))\n"
        "before = fds()\n"
        f"files = cgroup_join.open_for_join({{'pids': {str(target)!r}}}, False)\n"
        "assert [f[1] for f in files] == [" + repr(str(target / "tasks")) + "]\n"
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.close(r); cgroup_join.join_through(files); os.close(w)\n"
        "    print('child', mine().strip(), fds() == before, flush=True); os._exit(0)\n"
        "os.close(w); os.read(r, 1); os.close(r); os.waitpid(pid, 0)\n"
        "cgroup_join.close_all(files)\n"
        "print('parent', mine().strip(), fds() == before, flush=True)\n"
        "try:\n"
        f"    cgroup_join.open_for_join({{'pids': {str(target)!r}, "
        f"'freezer': {str(target / 'missing')!r}}}, False)\n"
        "except FileNotFoundError as exc:\n"
        "    print('error', exc.filename, fds() == before)\n")
    assert proc.returncode == 0, proc.stderr
    child, parent, error = (line.split() for line in proc.stdout.splitlines())
    assert child[0] == "child" and child[1].endswith(f":pids:/{target.name}"), child
    assert child[2] == "True", "the writer kept an fd"
    assert parent[0] == "parent" and not parent[1].endswith(target.name), parent
    assert parent[2] == "True", "the opener kept an fd"
    assert error == ["error", str(target / "missing" / "tasks"), "True"], error
