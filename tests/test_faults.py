"""Crash consistency: pyrunc killed at every phase, a dying init, a full, read-only or damaged
state directory, too few fds, a vanished bundle. Each ends in one clear error line or a correct
state, never a traceback; `delete --force` always restores a clean host (the `pyrunc` fixture's
leak check runs after every test).

Phases are reached with PYRUNC_TEST_PAUSE=<command>:<point> (state.pause_point): pyrunc stops
itself there with SIGSTOP, and the test SIGKILLs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import Runtime, one_line_error, poll, wait_status

pytestmark = pytest.mark.kernel

CREATE_POINTS = ["create:after-dir", "create:after-cgroups", "create:after-fork",
                 "create:after-ready", "create:after-state"]
START_POINTS = {"start:locked": "created", "start:after-unlink": "stopped",
                "start:after-write": "running"}
DELETE_POINTS = ["delete:locked", "delete:after-kill", "delete:after-cgroups"]
EXEC_POINTS = ["exec:after-fork", "exec:waiting"]


def proc_status(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def call(rt: Runtime, *args: str, **kw) -> subprocess.CompletedProcess:
    """pyrunc with its output in files, not pipes: a container's init inherits create's stdio
    and would keep a pipe open (and the caller waiting) for as long as it lives."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = rt(*args, capture_output=False, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                  **kw)
        out.seek(0)
        err.seek(0)
        proc.stdout, proc.stderr = out.read(), err.read()
    return proc


def ok(rt: Runtime, *args: str, **kw) -> subprocess.CompletedProcess:
    proc = call(rt, *args, **kw)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}: {proc.stderr!r}"
    return proc


def kill_at(rt: Runtime, point: str, *args: str) -> None:
    """Run `pyrunc args` until it stops itself at `point`, then SIGKILL it there."""
    env = dict(os.environ, PYRUNC_TEST_PAUSE=point)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([rt.binary, "--root", str(rt.root), *args], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        try:
            poll(lambda: proc_status(proc.pid) == "T" or proc.poll() is not None, 30,
                 f"pyrunc {args[0]} to reach {point}")
            err.seek(0)
            assert proc.poll() is None, f"pyrunc ended before {point}: {err.read()!r}"
        finally:
            proc.kill()
            proc.wait()


def no_traceback(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.decode()
    assert "Traceback" not in err and "internal error" not in err, err
    return err


def status_or_error(rt: Runtime, cid: str) -> str:
    """`state` gives a valid state or exactly one error line; either is returned as text."""
    proc = call(rt, "state", cid)
    err = no_traceback(proc)
    if proc.returncode == 0:
        return json.loads(proc.stdout)["status"]
    return one_line_error(err)


def sane_list(rt: Runtime) -> list[dict]:
    proc = call(rt, "list", "--format", "json")
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def clean_delete(rt: Runtime, cid: str) -> None:
    proc = call(rt, "delete", "--force", cid)
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert not (rt.root / cid).exists()


def sleeper(bundle) -> str:
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sleep", "1000"]
    bundle.write()
    return str(bundle.path)


@pytest.mark.parametrize("point", CREATE_POINTS)
def test_create_killed_at_each_phase(pyrunc, bundle, point):
    cid = pyrunc.new_id()
    kill_at(pyrunc, point, "create", "--bundle", sleeper(bundle), cid)
    status = status_or_error(pyrunc, cid)
    if point == "create:after-state":
        assert status == "created"  # everything was done but the pid file: a usable container
    elif point != "create:after-dir":
        assert status == "stopped"  # the creator is dead: never "creating" forever
    assert [c["id"] for c in sane_list(pyrunc)] in ([], [cid])
    # The id stays taken until delete --force, which then frees it for a clean create.
    again = call(pyrunc, "create", "--bundle", str(bundle.path), cid)
    assert again.returncode == 1 and "exists" in one_line_error(no_traceback(again))
    clean_delete(pyrunc, cid)
    ok(pyrunc, "create", "--bundle", str(bundle.path), cid)
    clean_delete(pyrunc, cid)


@pytest.mark.parametrize("point", sorted(START_POINTS))
def test_start_killed_at_each_phase(pyrunc, bundle, point):
    cid = pyrunc.new_id()
    ok(pyrunc, "create", "--bundle", sleeper(bundle), cid)
    kill_at(pyrunc, point, "start", cid)
    want = START_POINTS[point]
    # Killed before it signalled: still created, and startable. After unlinking the fifo but
    # before writing: the init sees EOF and exits. After writing: running.
    wait_status(pyrunc, cid, want)
    if want == "created":
        ok(pyrunc, "start", cid)
        assert pyrunc.state(cid)["status"] == "running"
    elif want == "stopped":
        err = one_line_error(no_traceback(call(pyrunc, "start", cid)))
        assert "stopped" in err
    clean_delete(pyrunc, cid)


@pytest.mark.parametrize("point", EXEC_POINTS)
def test_exec_killed_at_each_phase(pyrunc, bundle, point):
    cid = pyrunc.new_id()
    ok(pyrunc, "run", "-d", "--bundle", sleeper(bundle), cid)
    kill_at(pyrunc, point, "exec", cid, "sleep", "999")
    assert pyrunc.state(cid)["status"] == "running"
    ok(pyrunc, "exec", cid, "true")  # no lock or fd of the dead exec in the way
    clean_delete(pyrunc, cid)


@pytest.mark.parametrize("point", DELETE_POINTS)
def test_delete_killed_at_each_phase(pyrunc, bundle, point):
    cid = pyrunc.new_id()
    ok(pyrunc, "run", "-d", "--bundle", sleeper(bundle), cid)
    kill_at(pyrunc, point, "delete", "--force", cid)
    status = status_or_error(pyrunc, cid)
    assert status == ("running" if point == "delete:locked" else "stopped")
    if status == "stopped":
        proc = call(pyrunc, "delete", cid)  # a plain delete finishes the job
        no_traceback(proc)
        assert proc.returncode == 0, proc.stderr
    clean_delete(pyrunc, cid)


def test_init_dying_between_create_and_start(pyrunc, bundle, tmp_path):
    cid = pyrunc.new_id()
    pidfile = tmp_path / "pid"
    ok(pyrunc, "create", "--bundle", sleeper(bundle), "--pid-file", str(pidfile), cid)
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    wait_status(pyrunc, cid, "stopped")
    err = one_line_error(no_traceback(call(pyrunc, "start", cid)))
    assert err == "pyrunc: cannot start a container that has stopped"
    ok(pyrunc, "delete", cid)  # stopped: no --force needed


@pytest.fixture
def small_root(pyrunc):
    """pyrunc's --root on a tiny tmpfs of its own (unmounted afterwards)."""
    pyrunc.root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=64", "tmpfs", str(pyrunc.root)],
                   check=True)
    try:
        yield pyrunc.root
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(pyrunc.root)], check=True)
        for cid in pyrunc.ids:  # before the state dirs vanish with the mount
            if (pyrunc.root / cid).exists():
                call(pyrunc, "delete", "--force", cid)
        subprocess.run(["umount", str(pyrunc.root)], check=True)


def fill(directory: Path) -> Path:
    filler = directory / ".filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"x" * 512)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_state_dir_on_a_full_filesystem(pyrunc, bundle, small_root):
    cid = pyrunc.new_id()
    filler = fill(small_root)
    proc = call(pyrunc, "create", "--bundle", sleeper(bundle), cid)
    assert proc.returncode == 1
    assert "no space left on device" in one_line_error(no_traceback(proc))
    assert sorted(p.name for p in small_root.iterdir()) == [".filler"]  # no half state dir
    assert sane_list(pyrunc) == []
    # A container created before the filesystem filled up keeps working to its deletion.
    filler.unlink()
    ok(pyrunc, "create", "--bundle", str(bundle.path), cid)
    fill(small_root)
    ok(pyrunc, "start", cid)
    assert pyrunc.state(cid)["status"] == "running"
    ok(pyrunc, "exec", cid, "true")
    clean_delete(pyrunc, cid)
    filler.unlink()


def test_state_dir_out_of_inodes(pyrunc, bundle, small_root):
    cid = pyrunc.new_id()
    n = 0
    try:
        while True:
            (small_root / f".i{n}").mkdir()
            n += 1
    except OSError:
        pass
    proc = call(pyrunc, "create", "--bundle", sleeper(bundle), cid)
    assert proc.returncode == 1
    assert "no space left on device" in one_line_error(no_traceback(proc))
    for i in range(n):
        (small_root / f".i{i}").rmdir()
    assert list(small_root.iterdir()) == []


def test_state_dir_on_a_read_only_filesystem(pyrunc, bundle, small_root):
    cid, other = pyrunc.new_id(), pyrunc.new_id()
    # Running, and not under pyrunc-shim, so that no file in its state dir is open for writing
    # (a remount ro is refused while one is: a created init holds its start-error file, a
    # shim's container its output.log).
    ok(pyrunc, "create", "--bundle", sleeper(bundle), other)
    ok(pyrunc, "start", other)
    subprocess.run(["mount", "-o", "remount,ro", str(small_root)], check=True)
    try:
        proc = call(pyrunc, "create", "--bundle", str(bundle.path), cid)
        assert proc.returncode == 1
        assert "read-only file system" in one_line_error(no_traceback(proc))
        # What only reads works; what must change the state dir says why it cannot, and leaves
        # the container as it was.
        assert pyrunc.state(other)["status"] == "running"
        assert [c["id"] for c in sane_list(pyrunc)] == [other]
        ok(pyrunc, "exec", other, "true")
        for args in (("delete", "--force", other), ("delete", "-f", other)):
            err = one_line_error(no_traceback(call(pyrunc, *args)))
            assert "read-only file system" in err, args
            assert pyrunc.state(other)["status"] == "running"
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_root)], check=True)
    clean_delete(pyrunc, other)


@pytest.mark.parametrize("limit", [5, 6, 7, 8, 9, 12])
def test_fd_exhaustion(pyrunc, bundle, limit):
    """With RLIMIT_NOFILE this low, each command works or fails with one line; never half."""
    cid = pyrunc.new_id()
    sleeper(bundle)

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def low() -> None:  # `ulimit -Sn`: the hard limit stays, so the config's rlimits still apply
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))

    outcomes = []
    for args in (("create", "--bundle", str(bundle.path), cid), ("start", cid), ("state", cid),
                 ("exec", cid, "true"), ("list",), ("kill", cid, "KILL"), ("delete", "--force", cid)):
        proc = call(pyrunc, *args, preexec_fn=low)
        err = no_traceback(proc)
        if proc.returncode != 0:
            line = one_line_error(err)
            assert line.startswith("pyrunc") and any(
                why in line.lower() for why in ("too many open files", "not running", "does not exist",
                                        "stopped", "created")), line
            outcomes.append((args[0], line))
        else:
            outcomes.append((args[0], "ok"))
    clean_delete(pyrunc, cid)
    print(f"\nRLIMIT_NOFILE={limit}: {outcomes}")


def test_missing_state_file(pyrunc, bundle):
    cid = pyrunc.new_id()
    ok(pyrunc, "run", "-d", "--bundle", sleeper(bundle), cid)
    (pyrunc.root / cid / "state.json").unlink()
    for args in (("state", cid), ("start", cid), ("kill", cid), ("exec", cid, "true"), ("delete", cid)):
        assert one_line_error(no_traceback(call(pyrunc, *args))) == "pyrunc: container does not exist", args
    assert sane_list(pyrunc) == []
    clean_delete(pyrunc, cid)  # kills the init in the cgroup its config.json names


@pytest.mark.parametrize("content", [b"", b"{", b"\x00\xff garbage", b"[]", b'{"pid": "12"}',
                                     b'{"pid": 1, "cgroup": {"paths": ["x"]}}', b"null"])
def test_corrupt_state_file(pyrunc, bundle, content):
    cid = pyrunc.new_id()
    ok(pyrunc, "create", "--bundle", sleeper(bundle), cid)
    (pyrunc.root / cid / "state.json").write_bytes(content)
    for args in (("state", cid), ("start", cid), ("kill", cid), ("exec", cid, "true"), ("delete", cid),
                 ("pause", cid), ("ps", cid)):
        err = one_line_error(no_traceback(call(pyrunc, *args)))
        assert "state.json is corrupt" in err, (args, err)
    assert sane_list(pyrunc) == []
    clean_delete(pyrunc, cid)


def test_bundle_removed_after_create(pyrunc, bundle, tmp_path):
    cid = pyrunc.new_id()
    ok(pyrunc, "create", "--bundle", sleeper(bundle), cid)
    shutil.rmtree(bundle.path)
    # The init's rootfs was a bind of the deleted tree: `start` either runs sleep (still
    # reachable) or says in one line that the program is gone, and the container is stopped.
    proc = call(pyrunc, "start", cid)
    if proc.returncode:
        assert "no such file or directory" in one_line_error(no_traceback(proc))
    st = pyrunc.state(cid)
    assert st["bundle"] == str(bundle.path)
    assert st["status"] == ("stopped" if proc.returncode else "running")
    proc = call(pyrunc, "exec", cid, "true")
    no_traceback(proc)
    if proc.returncode:
        one_line_error(proc.stderr.decode())
    clean_delete(pyrunc, cid)


def test_bundle_moved_after_create(pyrunc, bundle, tmp_path):
    cid = pyrunc.new_id()
    ok(pyrunc, "create", "--bundle", sleeper(bundle), cid)
    moved = tmp_path / "moved"
    bundle.path.rename(moved)
    try:
        ok(pyrunc, "start", cid)
        assert pyrunc.state(cid)["status"] == "running"
        assert ok(pyrunc, "exec", cid, "echo", "hi").stdout == b"hi\n"
        ok(pyrunc, "kill", cid, "KILL")
        wait_status(pyrunc, cid, "stopped")
        ok(pyrunc, "delete", cid)
    finally:
        moved.rename(bundle.path)


@contextlib.contextmanager
def run_paused_before_start(rt: Runtime, bundle):
    """`run` of a sleeper, stopped by itself at create:after-ready (the init has said "go" and
    waits for start); yields (cid, process, its stderr file); never leaves the process behind."""
    cid = rt.new_id()
    env = dict(os.environ, PYRUNC_TEST_PAUSE="create:after-ready")
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([rt.binary, "--root", str(rt.root), "run", "--bundle",
                                 sleeper(bundle), cid], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            poll(lambda: proc_status(proc.pid) == "T" or proc.poll() is not None, 30,
                 "pyrunc run to reach create:after-ready")
            yield cid, proc, err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("sig,code", [(signal.SIGUSR1, -signal.SIGUSR1), (signal.SIGINT, 130)])
def test_run_signalled_before_start_acts_as_before_forwarding(pyrunc, bundle, sig, code):
    """`run` installs its forwarding handlers while the init works (run._after_fork), but only
    forwards from start on: a signal before that still acts on pyrunc itself (the default
    action; KeyboardInterrupt for SIGINT, which undoes the create)."""
    with run_paused_before_start(pyrunc, bundle) as (cid, proc, err):
        os.kill(proc.pid, sig)
        os.kill(proc.pid, signal.SIGCONT)
        assert proc.wait(30) == code
        err.seek(0)
        assert "Traceback" not in err.read().decode()
    assert status_or_error(pyrunc, cid) == "stopped" or not (pyrunc.root / cid).exists()
    clean_delete(pyrunc, cid)


def test_run_whose_init_dies_before_start(pyrunc, bundle):
    """The init killed between "go" and start: `run` says why in one line, exits 1 and deletes
    the container (a lock still held by its failed start once made the delete wait forever)."""
    with run_paused_before_start(pyrunc, bundle) as (cid, proc, err):
        # The state there is still the "creating" one (pid 0): the init is run's only child.
        init = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
        assert init > 1
        os.kill(init, signal.SIGKILL)
        poll(lambda: proc_status(init) in (None, "Z"), 10, "the init to die")
        os.kill(proc.pid, signal.SIGCONT)
        assert proc.wait(30) == 1
        err.seek(0)
        line = one_line_error(no_traceback(subprocess.CompletedProcess([], 1, b"", err.read())))
    assert line.endswith("cannot start a container that has stopped"), line
    assert not (pyrunc.root / cid).exists()
