"""Crash consistency: pyrunc killed at every phase, a dying init, a full, read-only or damaged
state directory, too few fds, a vanished bundle. Each ends in one clear error line or a correct
state, never a traceback; `delete --force` always restores a clean host (the `pyrunc` fixture's
leak check runs after every test).

Phases are reached with PYRUNC_TEST_PAUSE=<command>:<point> (state.pause_point): pyrunc stops
itself there with SIGSTOP, and the test SIGKILLs it.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import REPO, Runtime, one_line_error, poll, wait_status

pytestmark = pytest.mark.kernel

# after-first-state: the state names cgroup directories none of which exists yet;
# after-init-fork: the init lives in its cgroup2 directory, the v1 ones are still to be made.
CREATE_POINTS = ["create:after-dir", "create:after-first-state", "create:after-init-fork",
                 "create:after-cgroups", "create:after-fork", "create:after-ready",
                 "create:after-state"]
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
def run_paused_before_start(rt: Runtime, bundle, point: str = "create:after-ready",
                            pid_ns: bool = True):
    """`run` of a sleeper, stopped by itself at `point` (create:after-ready: the init has said
    "go" and waits for start); yields (cid, process, its stderr file); never leaves the
    process behind."""
    cid = rt.new_id()
    sleeper(bundle)
    if not pid_ns:
        cfg = bundle.edit()
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "pid"]
        bundle.write()
    env = dict(os.environ, PYRUNC_TEST_PAUSE=point)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([rt.binary, "--root", str(rt.root), "run", "--bundle",
                                 str(bundle.path), cid], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            poll(lambda: proc_status(proc.pid) == "T" or proc.poll() is not None, 30,
                 f"pyrunc run to reach {point}")
            yield cid, proc, err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("point", ["create:after-dir", "create:after-ready"])
@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGINT, signal.SIGTERM])
def test_run_holds_signals_back_until_its_program_runs(pyrunc, bundle, point, sig):
    """A signal to `run` before its program runs is held back and forwarded once it runs, as
    runc buffers them; acting on pyrunc itself (as it once did) left a half-made container
    behind: its state directory, cgroups, an init waiting for a start. Without a pid namespace
    the program (sleep: no handlers, not a namespace's init) dies of it whenever it comes, and
    `run` exits 128+N with its container deleted."""
    with run_paused_before_start(pyrunc, bundle, point, pid_ns=False) as (cid, proc, err):
        os.kill(proc.pid, sig)
        os.kill(proc.pid, signal.SIGCONT)
        assert proc.wait(30) == 128 + sig
        err.seek(0)
        assert err.read() == b""
    assert not (pyrunc.root / cid).exists()
    assert glob.glob(f"/sys/fs/cgroup/**/{cid}", recursive=True) == []


def test_run_gives_its_program_and_hooks_the_callers_signal_mask(pyrunc, bundle):
    """run holds every signal back until its program runs (above), but what it forks meanwhile
    (the init, a prestart hook) starts with the mask run was started with, not with ours. (No
    shell between: dash clears its mask at start.)"""
    grep = shutil.which("grep")
    cfg = bundle.edit()
    cfg["process"]["args"] = ["grep", "SigBlk", "/proc/self/status"]
    # A hook's output goes to run's stderr.
    cfg["hooks"] = {"prestart": [{"path": grep, "args": ["grep", "SigBlk", "/proc/self/status"]}]}
    bundle.write()
    caller = "SigBlk:\t0000000000000800\n"   # USR2 (12) blocked, as a caller's own may be
    blocking = ("import signal, os, sys; "
                "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2}); "
                "os.execv(sys.argv[1], sys.argv[1:])")
    proc = subprocess.run([sys.executable, "-c", blocking, pyrunc.binary, "--root",
                           str(pyrunc.root), "run", "--bundle", str(bundle.path), pyrunc.new_id()],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == caller
    assert proc.stderr == caller


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


def test_signals_held_back_by_a_failed_run_are_dropped_and_the_mask_given_back():
    """A `run` that fails before its program runs has no program to forward to: what it held
    back is dropped (not delivered to pyrunc on its way out), and the mask it was started with
    is given back, pending signals of the caller's own mask untouched (cli.main runs
    in-process in tests/test_badinput.py)."""
    code = (f"import sys, os, signal; sys.path[:0] = [{str(REPO)!r}]\n"
            "from pyrunc import supervise\n"
            "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})\n"
            "os.kill(os.getpid(), signal.SIGUSR2)\n"
            "supervise.hold_back()\n"
            "os.kill(os.getpid(), signal.SIGUSR1)\n"
            "os.kill(os.getpid(), signal.SIGTERM)\n"
            "supervise.drop_held()\n"
            "print(sorted(map(int, signal.pthread_sigmask(signal.SIG_BLOCK, set()))), "
            "sorted(map(int, signal.sigpending())))\n")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    usr2 = f"[{int(signal.SIGUSR2)}]"
    assert proc.stdout.split() == [usr2, usr2]   # blocked, and still pending
