"""The container lifecycle against the real kernel: config errors, create/start/kill/delete state by
state, `run`, and runc 1.1.5 as an oracle on the same bundle.

Every `create`/`run` is called with stdout/stderr going to files, never pipes: the container's init
inherits pyrunc's stdio, so a pipe would stay open (and `communicate` block) for as long as the
container lives.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from checks import alive, one_line
from conftest import Bundle, Runtime, leaks, poll, wait_status

pytestmark = pytest.mark.kernel

RUNC = "/usr/sbin/runc"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
# A PID 1 that stays up and reacts to TERM: in its own pid namespace, PID 1 only gets the
# signals it has a handler for, so a bare `sleep` would ignore TERM.
LOOP = "trap 'exit 0' TERM; echo ready; while :; do sleep 0.1; done"
_seq = itertools.count()


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"Result(rc={self.returncode}, stdout={self.stdout!r}, stderr={self.stderr!r})"


def call(rt: Runtime, *args: str, io_dir: Path, timeout: float = 20,
         global_args: tuple[str, ...] = (), cwd: str | Path | None = None,
         out: Path | None = None) -> Result:
    """pyrunc with stdio on files (safe for create/run: the container may keep them open)."""
    io_dir.mkdir(exist_ok=True)
    n = next(_seq)
    out = out or io_dir / f"{n}.out"
    err = io_dir / f"{n}.err"
    with open(out, "ab") as fo, open(err, "wb") as fe:
        proc = rt(*args, capture_output=False, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe,
                  timeout=timeout, global_args=global_args, cwd=cwd)
    return Result(proc.returncode, out.read_text(), err.read_text())










def wait_file(path: Path, content: str | None = None, timeout: float = 5.0) -> None:
    poll(lambda: path.exists() and (content is None or content in path.read_text()), timeout,
         f"{path} ({content!r})")


def assert_missing(rt: Runtime, cid: str) -> None:
    res = rt("state", cid)
    assert res.returncode == 1, res
    assert "container does not exist" in res.stderr.decode()


def listed(rt: Runtime) -> list[str]:
    res = rt("list", "-q", check=True)
    return res.stdout.decode().split()


def config_with(bundle: Bundle, args: list[str], writable: bool = False) -> Bundle:
    cfg = bundle.edit()
    cfg["process"]["args"] = args
    if writable:
        cfg["root"]["readonly"] = False
    return bundle.write()


@pytest.fixture
def io_dir(tmp_path: Path) -> Path:
    d = tmp_path / "io"
    d.mkdir(exist_ok=True)
    return d


def create(rt: Runtime, bundle: Bundle, cid: str, io_dir: Path, *extra: str, **kw) -> Result:
    return call(rt, "create", "--bundle", str(bundle.path), *extra, cid, io_dir=io_dir, **kw)


def created_running(rt: Runtime, bundle: Bundle, io_dir: Path, args: list[str] | None = None,
                    start: bool = True, writable: bool = False) -> tuple[str, Path]:
    """A container running `args` (default: LOOP, ready once it printed "ready")."""
    config_with(bundle, args or ["sh", "-c", LOOP], writable)
    cid = rt.new_id()
    out = io_dir / f"{cid}.out"
    res = create(rt, bundle, cid, io_dir, out=out)
    assert res.returncode == 0, res
    if start:
        rt("start", cid, check=True)
        if args is None:
            wait_file(out, "ready")
    return cid, out


# --------------------------------------------------------------------------------------------
# 2. config errors: exit 1, one line naming the problem, nothing left behind


def assert_create_fails(rt: Runtime, bundle: Bundle, io_dir: Path, *needles: str,
                        cwd: Path | None = None) -> str:
    cid = rt.new_id("bad")
    res = create(rt, bundle, cid, io_dir, cwd=cwd)
    assert res.returncode == 1, res
    line = one_line(res.stderr)
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    assert res.stdout == ""
    assert listed(rt) == []
    assert not (rt.root / cid).exists()
    return line


def test_missing_config_json(pyrunc, bundle, io_dir):
    line = assert_create_fails(pyrunc, bundle, io_dir, "config.json")
    assert "no such file or directory" in line.lower()


def test_invalid_json(pyrunc, bundle, io_dir):
    (bundle.path / "config.json").write_text('{"ociVersion": "1.0.2", "process": ')
    line = assert_create_fails(pyrunc, bundle, io_dir, "config.json")
    assert "json" in line.lower()


def test_wrong_type_names_json_path(pyrunc, bundle, io_dir):
    bundle.edit()["process"]["args"] = "sh"
    bundle.write()
    assert_create_fails(pyrunc, bundle, io_dir, "/process/args")


def test_wrong_type_deeper_path(pyrunc, bundle, io_dir):
    bundle.edit()["process"]["user"]["uid"] = "0"
    bundle.write()
    assert_create_fails(pyrunc, bundle, io_dir, "/process/user/uid")


def test_oci_version_2_refused(pyrunc, bundle, io_dir):
    bundle.edit()["ociVersion"] = "2.0.0"
    bundle.write()
    line = assert_create_fails(pyrunc, bundle, io_dir, "2.0.0")
    assert "ociversion" in line.lower()


@pytest.mark.parametrize("version", ["1.0.2-dev", "1.1.0-rc.1", "1.2.0", "1.3.0"])
def test_oci_versions_accepted(pyrunc, bundle, io_dir, version):
    cfg = bundle.edit()
    cfg["ociVersion"] = version
    cfg["process"]["args"] = ["sh", "-c", "exit 5"]
    bundle.write()
    cid = pyrunc.new_id()
    res = call(pyrunc, "run", "--bundle", str(bundle.path), cid, io_dir=io_dir)
    assert res.returncode == 5, res  # 5: the container's own program ran
    assert listed(pyrunc) == []


def test_relative_root_path_resolves_against_bundle(pyrunc, bundle, io_dir, tmp_path):
    # pyrunc runs from a directory that has its own (empty, unusable) "rootfs": resolving
    # root.path against the cwd would pick it and fail to find sh.
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "rootfs").mkdir(parents=True)
    cfg = bundle.edit()
    cfg["root"]["path"] = "rootfs"
    cfg["process"]["args"] = ["sh", "-c", "sleep 100"]
    bundle.write()
    cid = pyrunc.new_id()
    res = create(pyrunc, bundle, cid, io_dir, cwd=elsewhere)
    assert res.returncode == 0, res
    st = pyrunc.state(cid)
    assert st["rootfs"] == str(bundle.rootfs.resolve())
    assert st["status"] == "created"
    pyrunc("delete", "--force", cid, check=True)


def test_relative_bundle_resolves_against_cwd(pyrunc, bundle, io_dir, tmp_path):
    config_with(bundle, ["true"])
    cid = pyrunc.new_id()
    res = call(pyrunc, "create", "--bundle", "bundle", cid, io_dir=io_dir, cwd=tmp_path)
    assert res.returncode == 0, res
    st = pyrunc.state(cid)
    assert st["bundle"] == str(bundle.path)
    assert st["rootfs"] == str(bundle.rootfs.resolve())
    pyrunc("delete", "--force", cid, check=True)


def test_missing_rootfs_dir(pyrunc, bundle, io_dir):
    bundle.edit()["root"]["path"] = "no-such-rootfs"
    bundle.write()
    assert_create_fails(pyrunc, bundle, io_dir, "no-such-rootfs")


def test_missing_executable_absolute(pyrunc, bundle, io_dir):
    config_with(bundle, ["/nonexistent"])
    assert_create_fails(pyrunc, bundle, io_dir,
                        'exec: "/nonexistent": stat /nonexistent: no such file or directory')


def test_missing_executable_wins_over_the_cgroup_join_race(pyrunc, bundle, io_dir):
    """The init may fail and exit before the parent has moved it into its cgroups (it does that
    in parallel): the user must still see the init's reason, never the parent's ESRCH on
    cgroup.procs (seen through containerd: "…/cgroup.procs: no such process")."""
    config_with(bundle, ["/nonexistent"])
    for _ in range(8):
        assert_create_fails(pyrunc, bundle, io_dir,
                            'exec: "/nonexistent": stat /nonexistent: no such file or directory')


def test_missing_executable_keeps_case(pyrunc, bundle, io_dir):
    # engines show this message to people: the path must come back exactly as configured
    config_with(bundle, ["/NoSuch/Program"])
    assert_create_fails(pyrunc, bundle, io_dir,
                        'exec: "/NoSuch/Program": stat /NoSuch/Program: no such file or directory')


def test_missing_executable_bare_name(pyrunc, bundle, io_dir):
    config_with(bundle, ["no-such-program"])
    assert_create_fails(pyrunc, bundle, io_dir, "no-such-program",
                        "executable file not found in $PATH")


def test_non_executable_file(pyrunc, bundle, io_dir):
    target = bundle.rootfs / "bin" / "notexec"
    target.write_text("#!/bin/sh\necho hi\n")
    target.chmod(0o644)
    config_with(bundle, ["/bin/notexec"])
    assert_create_fails(pyrunc, bundle, io_dir, "/bin/notexec", "permission denied")


def test_failed_create_writes_no_pid_file(pyrunc, bundle, io_dir, tmp_path):
    config_with(bundle, ["/nonexistent"])
    pid_file = tmp_path / "init.pid"
    cid = pyrunc.new_id()
    res = create(pyrunc, bundle, cid, io_dir, "--pid-file", str(pid_file))
    assert res.returncode == 1, res
    assert not pid_file.exists()
    assert listed(pyrunc) == []


def test_unwritable_pid_file_undoes_create(pyrunc, bundle, io_dir, tmp_path):
    # the failure comes after the init exists: it must be killed and everything removed
    config_with(bundle, ["sh", "-c", "sleep 100"])
    cid = pyrunc.new_id()
    res = create(pyrunc, bundle, cid, io_dir, "--pid-file", str(tmp_path / "no-dir" / "x.pid"))
    assert res.returncode == 1, res
    assert "no-dir" in one_line(res.stderr)
    assert listed(pyrunc) == []
    assert_missing(pyrunc, cid)
    # the init is gone (the fixture's leak check also looks for its cgroup and processes)
    poll(lambda: not leaks(pyrunc.prefix, [str(tmp_path)], pyrunc.root), what="no leftovers")


def test_failed_create_text_log(pyrunc, bundle, io_dir, tmp_path):
    config_with(bundle, ["/nonexistent"])
    log = tmp_path / "log.txt"
    res = call(pyrunc, "create", "--bundle", str(bundle.path), pyrunc.new_id(), io_dir=io_dir,
               global_args=("--log", str(log)))
    assert res.returncode == 1, res
    lines = log.read_text().splitlines()
    assert len(lines) == 1, lines
    assert "level=error" in lines[0]
    assert "/nonexistent" in lines[0]
    assert "/nonexistent" in one_line(res.stderr)


def test_failed_create_json_log(pyrunc, bundle, io_dir, tmp_path):
    config_with(bundle, ["/nonexistent"])
    log = tmp_path / "log.json"
    cid = pyrunc.new_id()
    res = call(pyrunc, "create", "--bundle", str(bundle.path), cid, io_dir=io_dir,
               global_args=("--log", str(log), "--log-format", "json"))
    assert res.returncode == 1, res
    text = log.read_text()
    assert text.count("\n") == 1 and text.endswith("\n"), text
    entry = json.loads(text)  # podman: one json.Unmarshal of the whole file
    assert set(entry) == {"level", "msg", "time"}, entry
    assert entry["level"] == "error"
    needle = 'exec: "/nonexistent": stat /nonexistent: no such file or directory'
    assert needle in entry["msg"]
    assert RFC3339.match(entry["time"]), entry["time"]
    assert needle in one_line(res.stderr)
    assert listed(pyrunc) == []


# --------------------------------------------------------------------------------------------
# 3. lifecycle, state by state


def test_create_state_and_pid_file(pyrunc, bundle, io_dir, tmp_path):
    config_with(bundle, ["sh", "-c", "sleep 100"])
    cid = pyrunc.new_id()
    pid_file = tmp_path / "init.pid"
    res = create(pyrunc, bundle, cid, io_dir, "--pid-file", str(pid_file))
    assert res.returncode == 0, res
    assert res.stderr == ""
    st = pyrunc.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid
    assert isinstance(st["pid"], int) and st["pid"] > 0
    assert alive(st["pid"])
    assert st["bundle"] == str(bundle.path)
    assert st["rootfs"] == str(bundle.rootfs.resolve())
    assert RFC3339.match(st["created"]), st["created"]
    assert st["ociVersion"] == bundle.config["ociVersion"]
    assert st["owner"] == ""
    assert pid_file.read_bytes() == str(st["pid"]).encode()  # bare number, no newline
    pyrunc("delete", "--force", cid, check=True)
    poll(lambda: not alive(st["pid"]), what="init to die")


def test_relative_pid_file_resolves_against_cwd(pyrunc, bundle, io_dir, tmp_path):
    config_with(bundle, ["sh", "-c", "sleep 100"])
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    cid = pyrunc.new_id()
    res = create(pyrunc, bundle, cid, io_dir, "--pid-file", "rel.pid", cwd=cwd)
    assert res.returncode == 0, res
    st = pyrunc.state(cid)
    assert (cwd / "rel.pid").read_bytes() == str(st["pid"]).encode()
    assert not (bundle.path / "rel.pid").exists()
    pyrunc("delete", "--force", cid, check=True)


def test_program_runs_only_after_start(pyrunc, bundle, io_dir):
    marker = bundle.rootfs / "tmp" / "ran"
    cid, _ = created_running(pyrunc, bundle, io_dir, ["sh", "-c", "touch /tmp/ran"], start=False,
                             writable=True)
    assert pyrunc.state(cid)["status"] == "created"
    assert not marker.exists(), "the user program ran before start"
    pyrunc("start", cid, check=True)
    wait_file(marker)
    wait_status(pyrunc, cid, "stopped")
    pyrunc("delete", cid, check=True)
    assert_missing(pyrunc, cid)


def test_start_running_kill_stopped_delete(pyrunc, bundle, io_dir):
    cid, _ = created_running(pyrunc, bundle, io_dir, start=False)
    pid = pyrunc.state(cid)["pid"]
    res = pyrunc("start", cid)
    assert res.returncode == 0, res
    assert res.stdout == b"" and res.stderr == b""  # podman's start shares the user's terminal
    st = wait_status(pyrunc, cid, "running")
    assert st["pid"] == pid

    again = pyrunc("start", cid)
    assert again.returncode == 1
    assert "cannot start an already running container" in one_line(again.stderr.decode())
    assert pyrunc.state(cid)["status"] == "running"

    res = pyrunc("kill", cid, "KILL")
    assert res.returncode == 0, res
    wait_status(pyrunc, cid, "stopped")

    res = pyrunc("kill", cid, "KILL")
    assert res.returncode == 1
    assert "container not running" in one_line(res.stderr.decode())

    res = pyrunc("delete", cid)
    assert res.returncode == 0, res
    assert_missing(pyrunc, cid)
    assert listed(pyrunc) == []


def test_start_returns_once_the_program_is_exec_d(pyrunc, bundle, io_dir):
    # `start` then an immediate `kill USR1` (runtime-tools' killsig) must reach the user's
    # program, not the init still on its way to execve: when start returns, the container's
    # pid already runs the program from the rootfs, not our interpreter.
    cid, _ = created_running(pyrunc, bundle, io_dir, ["sleep", "30"], start=False)
    pid = pyrunc.state(cid)["pid"]
    exe = os.readlink(f"/proc/{pid}/exe")   # our interpreter, or the waiting trampoline
    assert "python" in exe or exe.startswith("/memfd:pyrunc-exe"), exe
    pyrunc("start", cid, check=True)
    exe = os.readlink(f"/proc/{pid}/exe")
    assert "python" not in exe and exe.endswith("busybox"), exe
    pyrunc("delete", "--force", cid, check=True)
    assert_missing(pyrunc, cid)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the waiting trampoline is x86_64 code")
def test_created_init_is_the_small_waiting_trampoline(pyrunc, bundle, io_dir):
    """Between create and start the init is the ~600-byte trampoline waiting on the exec fifo
    (exeguard.can_wait), not our interpreter: a few KB resident instead of ~9.5 MB."""
    cid, _ = created_running(pyrunc, bundle, io_dir, ["sh", "-c", "echo started; sleep 30"],
                             start=False)
    pid = pyrunc.state(cid)["pid"]
    assert os.readlink(f"/proc/{pid}/exe").startswith("/memfd:pyrunc-exe")
    with open(f"/proc/{pid}/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    assert rss_kb < 1024
    assert pyrunc.state(cid)["status"] == "created"
    pyrunc("start", cid, check=True)
    assert pyrunc.state(cid)["status"] == "running"
    assert os.readlink(f"/proc/{pid}/exe").endswith("busybox")
    pyrunc("delete", "--force", cid, check=True)
    assert_missing(pyrunc, cid)


def test_start_stopped_container_fails(pyrunc, bundle, io_dir):
    cid, _ = created_running(pyrunc, bundle, io_dir, ["true"])
    wait_status(pyrunc, cid, "stopped")
    res = pyrunc("start", cid)
    assert res.returncode == 1
    assert "stopped" in one_line(res.stderr.decode())
    pyrunc("delete", cid, check=True)


def test_delete_running_without_force_refused(pyrunc, bundle, io_dir):
    cid, _ = created_running(pyrunc, bundle, io_dir)
    pid = pyrunc.state(cid)["pid"]
    res = pyrunc("delete", cid)
    assert res.returncode == 1
    assert "not stopped" in one_line(res.stderr.decode())
    st = pyrunc.state(cid)
    assert st["status"] == "running" and st["pid"] == pid and alive(pid)
    res = pyrunc("delete", "--force", cid)
    assert res.returncode == 0, res
    assert_missing(pyrunc, cid)
    poll(lambda: not alive(pid), what="init to die")


def test_delete_created_without_force_refused(pyrunc, bundle, io_dir):
    # runtime-spec, "delete": "Attempting to delete a container that is not stopped MUST
    # generate an error". runc 1.1.5 kills and deletes a created container here: runc is wrong.
    cid, _ = created_running(pyrunc, bundle, io_dir, start=False)
    pid = pyrunc.state(cid)["pid"]
    res = pyrunc("delete", cid)
    assert res.returncode != 0, res
    one_line(res.stderr.decode())
    st = pyrunc.state(cid)
    assert st["status"] == "created" and alive(pid)
    res = pyrunc("delete", "--force", cid)
    assert res.returncode == 0, res
    assert_missing(pyrunc, cid)
    poll(lambda: not alive(pid), what="init to die")


def test_delete_force_missing_is_ok(pyrunc):
    res = pyrunc("delete", "--force", pyrunc.new_id())
    assert res.returncode == 0, res
    assert res.stderr == b""


@pytest.mark.parametrize("args", [("state",), ("kill",), ("kill", "KILL"), ("delete",),
                                  ("start",)])
def test_missing_container(pyrunc, args):
    cmd, *rest = args
    res = pyrunc(cmd, pyrunc.new_id(), *rest)
    assert res.returncode == 1, res
    assert "container does not exist" in one_line(res.stderr.decode())
    assert res.stdout == b""


def test_duplicate_id(pyrunc, bundle, io_dir):
    cid, _ = created_running(pyrunc, bundle, io_dir, start=False)
    before = pyrunc.state(cid)
    res = create(pyrunc, bundle, cid, io_dir)
    assert res.returncode == 1, res
    assert "exists" in one_line(res.stderr)
    after = pyrunc.state(cid)
    assert after == before
    assert alive(before["pid"])
    pyrunc("start", cid, check=True)  # still a working container
    wait_status(pyrunc, cid, "running")
    pyrunc("delete", "--force", cid, check=True)


@pytest.mark.parametrize("make_id", [
    lambda p: f"{p}/b", lambda p: "..", lambda p: ".", lambda p: "", lambda p: f"{p} x",
    lambda p: f"../{p}",
], ids=["slash", "dotdot", "dot", "empty", "space", "escape"])
def test_invalid_ids_refused(pyrunc, bundle, io_dir, tmp_path, make_id):
    config_with(bundle, ["true"])
    cid = make_id(pyrunc.prefix)
    res = create(pyrunc, bundle, cid, io_dir)
    assert res.returncode == 1, res
    one_line(res.stderr)
    assert listed(pyrunc) == []
    assert not (tmp_path / pyrunc.prefix).exists()


def test_list_formats(pyrunc, bundle, io_dir):
    c1, _ = created_running(pyrunc, bundle, io_dir, start=False)
    c2, _ = created_running(pyrunc, bundle, io_dir)
    s1, s2 = pyrunc.state(c1), pyrunc.state(c2)

    table = pyrunc("list", check=True).stdout.decode().splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER", "EXIT"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert set(rows) == {c1, c2}
    assert rows[c1][1:5] == [str(s1["pid"]), "created", str(bundle.path), s1["created"]]
    assert rows[c2][1:5] == [str(s2["pid"]), "running", str(bundle.path), s2["created"]]

    items = json.loads(pyrunc("list", "--format", "json", check=True).stdout)
    assert isinstance(items, list)
    by_id = {item["id"]: item for item in items}
    assert set(by_id) == {c1, c2}
    for cid, st in ((c1, s1), (c2, s2)):
        for key in ("ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"):
            assert by_id[cid][key] == st[key], key
    items_eq = json.loads(pyrunc("list", "--format=json", check=True).stdout)
    assert {i["id"] for i in items_eq} == {c1, c2}

    quiet = pyrunc("list", "-q", check=True).stdout.decode()
    assert sorted(quiet.split("\n")[:-1]) == sorted([c1, c2])
    assert quiet.endswith("\n")

    for cid in (c1, c2):
        pyrunc("delete", "--force", cid, check=True)
    assert pyrunc("list", "-q", check=True).stdout == b""
    table = pyrunc("list", check=True).stdout.decode().splitlines()
    assert len(table) == 1 and table[0].split()[0] == "ID"


def test_term_kills_created_container(pyrunc, bundle, io_dir):
    # PID 1 of a pid namespace ignores signals it has no handler for: pyrunc's init waiting for
    # `start` must handle TERM itself, or engines cannot stop a created container gracefully.
    config_with(bundle, ["sh", "-c", "sleep 100"])
    cid = pyrunc.new_id()
    assert create(pyrunc, bundle, cid, io_dir).returncode == 0
    pid = pyrunc.state(cid)["pid"]
    res = pyrunc("kill", cid, "TERM")
    assert res.returncode == 0, res
    wait_status(pyrunc, cid, "stopped")
    assert not alive(pid)
    pyrunc("delete", cid, check=True)


def test_stdio_passes_through(pyrunc, bundle, io_dir):
    config_with(bundle, ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 0"])
    cid = pyrunc.new_id()
    out, err = io_dir / "c.out", io_dir / "c.err"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        res = pyrunc("create", "--bundle", str(bundle.path), cid, capture_output=False,
                     stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, timeout=20)
    assert res.returncode == 0, err.read_text()
    assert out.read_text() == ""
    pyrunc("start", cid, check=True)
    wait_status(pyrunc, cid, "stopped")
    assert out.read_text() == "to-stdout\n"
    assert err.read_text() == "to-stderr\n"
    pyrunc("delete", cid, check=True)


# --------------------------------------------------------------------------------------------
# 4. run


def test_run_exit_status(pyrunc, bundle, io_dir, tmp_path):
    config_with(bundle, ["sh", "-c", "echo out; exit 3"])
    cid = pyrunc.new_id()
    res = call(pyrunc, "run", "--bundle", str(bundle.path), cid, io_dir=io_dir)
    assert res.returncode == 3, res
    assert res.stdout == "out\n"
    assert res.stderr == ""
    # nothing left: no state dir, no cgroup, no process, no mount
    assert listed(pyrunc) == []
    assert not (pyrunc.root / cid).exists()
    assert leaks(pyrunc.prefix, [str(tmp_path)], pyrunc.root) == []


def start_run(rt: Runtime, bundle: Bundle, cid: str, io_dir: Path, *extra: str):
    out, err = io_dir / f"{cid}.run.out", io_dir / f"{cid}.run.err"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen([rt.binary, "--root", str(rt.root), "run", "--bundle",
                                 str(bundle.path), *extra, cid],
                                stdin=subprocess.DEVNULL, stdout=fo, stderr=fe)
    return proc, out, err


def finish(proc: subprocess.Popen, timeout: float = 10) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("pyrunc run did not exit") from None


def test_run_killed_by_signal_is_128_plus_n(pyrunc, bundle, io_dir, tmp_path):
    config_with(bundle, ["sh", "-c", "echo ready; sleep 100"])
    cid = pyrunc.new_id()
    pid_file = tmp_path / "run.pid"
    proc, out, err = start_run(pyrunc, bundle, cid, io_dir, "--pid-file", str(pid_file))
    try:
        wait_file(out, "ready")
        pid = int(pid_file.read_text())
        assert pyrunc.state(cid)["status"] == "running"
        os.kill(pid, signal.SIGKILL)
    finally:
        code = finish(proc)
    assert code == 128 + signal.SIGKILL, err.read_text()
    assert listed(pyrunc) == []


def test_run_forwards_signals(pyrunc, bundle, io_dir):
    config_with(bundle, ["sh", "-c",
                         "trap 'exit 42' USR1; echo ready; while true; do sleep 0.1; done"])
    cid = pyrunc.new_id()
    proc, out, err = start_run(pyrunc, bundle, cid, io_dir)
    try:
        wait_file(out, "ready")
        proc.send_signal(signal.SIGUSR1)
    finally:
        code = finish(proc)
    assert code == 42, err.read_text()
    assert listed(pyrunc) == []


def test_run_detach(pyrunc, bundle, io_dir):
    config_with(bundle, ["sh", "-c", LOOP])
    cid = pyrunc.new_id()
    out = io_dir / "d.out"
    res = call(pyrunc, "run", "-d", "--bundle", str(bundle.path), cid, io_dir=io_dir, out=out)
    assert res.returncode == 0, res
    # Detached, the output goes to pyrunc-shim's log, not to the caller's stdout (runc's).
    deadline = time.monotonic() + 5
    while b"ready" not in pyrunc("logs", cid).stdout and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b"ready" in pyrunc("logs", cid).stdout
    assert b"ready" not in out.read_bytes()
    st = pyrunc.state(cid)
    assert st["status"] == "running" and alive(st["pid"])
    pyrunc("kill", cid, "KILL", check=True)
    wait_status(pyrunc, cid, "stopped")
    pyrunc("delete", cid, check=True)
    assert_missing(pyrunc, cid)


def test_run_detach_long_flag(pyrunc, bundle, io_dir):
    config_with(bundle, ["sh", "-c", "sleep 100"])
    cid = pyrunc.new_id()
    res = call(pyrunc, "run", f"--bundle={bundle.path}", "--detach", cid, io_dir=io_dir)
    assert res.returncode == 0, res
    assert wait_status(pyrunc, cid, "running")["pid"] > 0
    pyrunc("delete", "--force", cid, check=True)
    assert_missing(pyrunc, cid)


def test_run_keep(pyrunc, bundle, io_dir):
    config_with(bundle, ["sh", "-c", "exit 0"])
    cid = pyrunc.new_id()
    res = call(pyrunc, "run", "--keep", "--bundle", str(bundle.path), cid, io_dir=io_dir)
    assert res.returncode == 0, res
    st = pyrunc.state(cid)
    assert st["status"] == "stopped"
    assert listed(pyrunc) == [cid]
    res = pyrunc("delete", cid)
    assert res.returncode == 0, res
    assert_missing(pyrunc, cid)


def test_run_failure_leaves_nothing(pyrunc, bundle, io_dir, tmp_path):
    config_with(bundle, ["/nonexistent"])
    cid = pyrunc.new_id()
    res = call(pyrunc, "run", "--bundle", str(bundle.path), cid, io_dir=io_dir)
    assert res.returncode != 0, res
    assert 'exec: "/nonexistent": stat /nonexistent: no such file or directory' in \
        one_line(res.stderr)
    assert listed(pyrunc) == []
    assert leaks(pyrunc.prefix, [str(tmp_path)], pyrunc.root) == []


# --------------------------------------------------------------------------------------------
# 5. runc as an oracle on the same bundle


def need_runc() -> None:
    if not os.access(RUNC, os.X_OK):
        pytest.skip(f"{RUNC} is missing: no oracle to compare with")


def lifecycle_trace(binary: str, root: Path, cid: str, bundle: Bundle, io_dir: Path) -> list:
    """(step, exit code, status) for create/state/start/state/kill KILL/state/kill/delete/state."""
    trace: list = []

    def run(*args: str) -> subprocess.CompletedProcess:
        n = next(_seq)
        with open(io_dir / f"o{n}", "wb") as fo, open(io_dir / f"e{n}", "wb") as fe:
            proc = subprocess.run([binary, "--root", str(root), *args], stdin=subprocess.DEVNULL,
                                  stdout=fo, stderr=fe, timeout=20, check=False)
        return subprocess.CompletedProcess(args, proc.returncode, (io_dir / f"o{n}").read_text(),
                                           (io_dir / f"e{n}").read_text())

    def state(expect: str | None = None) -> str:
        deadline = time.monotonic() + 5
        while True:
            res = run("state", cid)
            status = json.loads(res.stdout)["status"] if res.returncode == 0 else "-"
            if expect is None or status == expect or time.monotonic() > deadline:
                pid_zero = json.loads(res.stdout)["pid"] == 0 if res.returncode == 0 else None
                missing = "container does not exist" in res.stderr
                trace.append(("state", res.returncode, status, pid_zero, missing))
                return status
            time.sleep(0.01)

    def step(*args: str) -> None:
        res = run(*args)
        err = res.stderr.lower()
        marks = [m for m in ("does not exist", "not running", "not stopped") if m in err]
        trace.append((args[0], res.returncode, marks))

    step("create", "--bundle", str(bundle.path), cid)
    state()
    step("start", cid)
    state("running")
    step("kill", cid, "KILL")
    state("stopped")
    step("kill", cid, "KILL")
    step("delete", cid)
    state()
    step("delete", "--force", cid)
    return trace


@pytest.mark.oracle
def test_oracle_lifecycle_sequence(pyrunc, bundle, io_dir, tmp_path):
    need_runc()
    config_with(bundle, ["sh", "-c", "sleep 100"])
    mine = lifecycle_trace(pyrunc.binary, pyrunc.root, pyrunc.new_id("py"), bundle, io_dir)
    runc_root = tmp_path / "runc-state"
    rcid = pyrunc.new_id("runc")
    try:
        theirs = lifecycle_trace(RUNC, runc_root, rcid, bundle, io_dir)
    finally:
        subprocess.run([RUNC, "--root", str(runc_root), "delete", "--force", rcid],
                       capture_output=True, timeout=20, check=False)
    assert mine == theirs
    assert [s[:3] for s in mine if s[0] == "state"] == [
        ("state", 0, "created"), ("state", 0, "running"), ("state", 0, "stopped"),
        ("state", 1, "-")]


@pytest.mark.oracle
def test_oracle_delete_created(pyrunc, bundle, io_dir, tmp_path):
    """Where runc is wrong: it deletes a created container without --force (it kills the init).
    The runtime-spec says deleting a container that is not stopped MUST be an error."""
    need_runc()
    config_with(bundle, ["sh", "-c", "sleep 100"])
    runc_root = tmp_path / "runc-state"
    rcid = pyrunc.new_id("runc")
    cid = pyrunc.new_id("py")
    try:
        with open(io_dir / "runc.out", "wb") as fo:
            subprocess.run([RUNC, "--root", str(runc_root), "create", "--bundle",
                            str(bundle.path), rcid], stdin=subprocess.DEVNULL, stdout=fo,
                           stderr=fo, timeout=20, check=True)
        runc_delete = subprocess.run([RUNC, "--root", str(runc_root), "delete", rcid],
                                     capture_output=True, timeout=20, check=False)
    finally:
        subprocess.run([RUNC, "--root", str(runc_root), "delete", "--force", rcid],
                       capture_output=True, timeout=20, check=False)
    assert runc_delete.returncode == 0  # runc 1.1.5's (non-conforming) behaviour
    assert create(pyrunc, bundle, cid, io_dir).returncode == 0
    res = pyrunc("delete", cid)
    assert res.returncode != 0  # deliberately different from runc
    assert pyrunc.state(cid)["status"] == "created"
    pyrunc("delete", "--force", cid, check=True)


@pytest.mark.oracle
@pytest.mark.parametrize("args", [("state",), ("kill",), ("delete",), ("delete", "--force")])
def test_oracle_missing_container(pyrunc, tmp_path, args):
    need_runc()
    cid = pyrunc.new_id()
    cmd = [args[0], *args[1:], cid]
    mine = pyrunc(*cmd)
    theirs = subprocess.run([RUNC, "--root", str(tmp_path / "runc-state"), *cmd],
                            capture_output=True, timeout=20, check=False)
    assert mine.returncode == theirs.returncode
    assert (b"container does not exist" in mine.stderr) == \
        (b"container does not exist" in theirs.stderr)
