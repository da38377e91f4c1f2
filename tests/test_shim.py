"""pyrunc-shim: detached containers keep their exit status and output, and leave no zombie."""

from __future__ import annotations

import ctypes
import os
import select
import signal
import time
from pathlib import Path

import pytest
from conftest import poll

pytestmark = pytest.mark.kernel


def _wait_stopped(pyrunc, cid: str, seconds: float = 10) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        st = pyrunc.state(cid)
        if st["status"] == "stopped" and "exitStatus" in st:
            return st
        time.sleep(0.02)
    return pyrunc.state(cid)


def _exists(pid: int) -> str | None:
    """The process state letter, or None when the pid is gone (reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def _shim_pids(root: Path | None = None) -> list[int]:
    """pyrunc-shim processes; with root, only those of containers under that state root (the
    machine is shared: other suites start shims of their own meanwhile)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if ((b"pyrunc-shim" in cmd or b"pyrunc/shim.py" in cmd)
                    and (root is None or str(root).encode() + b"/" in cmd)):
                found.append(int(pid))
    return found


def _run_detached(pyrunc, bundle, args, cid=None):
    cfg = bundle.edit()
    cfg["process"]["args"] = args
    bundle.write()
    cid = cid or pyrunc.new_id()
    res = pyrunc("run", "-d", "--bundle", str(bundle.path), cid)
    assert res.returncode == 0, res.stderr
    return cid


def test_exit_code_is_recorded_and_nothing_is_left_a_zombie(pyrunc, bundle):
    cid = _run_detached(pyrunc, bundle, ["sh", "-c", "sleep 0.3; exit 3"])
    pid = pyrunc.state(cid)["pid"]
    st = _wait_stopped(pyrunc, cid)
    assert st["status"] == "stopped"
    assert st["exitStatus"] == 3 and "exitSignal" not in st
    assert st["finished"] >= st["created"]
    deadline = time.monotonic() + 5
    while _exists(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _exists(pid) is None, "the container's init was not reaped"
    listing = pyrunc("list", check=True).stdout.decode().splitlines()
    assert listing[0].split()[-1] == "EXIT"
    assert any(line.split()[0] == cid and line.split()[-1] == "3" for line in listing[1:])
    pyrunc("delete", cid, check=True)


def test_death_by_signal_is_recorded(pyrunc, bundle):
    cid = _run_detached(pyrunc, bundle, ["sleep", "1000"])
    pyrunc("kill", cid, "KILL", check=True)
    st = _wait_stopped(pyrunc, cid)
    assert st["exitStatus"] == 137 and st["exitSignal"] == "SIGKILL"
    pyrunc("delete", cid, check=True)


def test_output_goes_to_the_log(pyrunc, bundle):
    cid = _run_detached(pyrunc, bundle, ["sh", "-c", "echo one; echo two >&2; sleep 0.5; echo three"])
    res = pyrunc("logs", "--follow", cid, timeout=20)
    assert res.returncode == 0
    assert res.stdout.decode().split() == ["one", "two", "three"]
    assert pyrunc("logs", cid, check=True).stdout == res.stdout
    pyrunc("delete", cid, check=True)


def test_errors_reach_the_caller_and_leave_nothing(pyrunc, bundle):
    cfg = bundle.edit()
    cfg["process"]["args"] = ["/nonexistent"]
    bundle.write()
    cid = pyrunc.new_id()
    res = pyrunc("run", "-d", "--bundle", str(bundle.path), cid)
    assert res.returncode == 1
    assert b'exec: "/nonexistent": stat /nonexistent: no such file or directory' in res.stderr
    assert not (pyrunc.root / cid).exists()
    if pyrunc.root.exists():  # no half-moved output log either
        assert list(pyrunc.root.iterdir()) == []


def test_killing_the_shim_leaves_the_container_running_and_deletable(pyrunc, bundle):
    before = set(_shim_pids(pyrunc.root))
    cid = _run_detached(pyrunc, bundle, ["sleep", "1000"])

    def new_shims() -> list[int]:
        return [p for p in _shim_pids(pyrunc.root)
                if p not in before and _exists(p) not in ("Z", None)]
    # `run -d` returns once its child reported success; that child execs pyrunc-shim after.
    poll(lambda: new_shims() != [], 10, "pyrunc-shim to be exec'd")
    shims = new_shims()
    assert len(shims) == 1, shims
    rss_kb = int(next(line for line in Path(f"/proc/{shims[0]}/status").read_text().splitlines()
                  if line.startswith("VmRSS:")).split()[1])
    print(f"\npyrunc-shim RSS: {rss_kb / 1024:.1f} MB")  # reported, not asserted (no timing/size gate)
    shim = os.pidfd_open(shims[0])
    try:
        os.kill(shims[0], signal.SIGKILL)
        # Looked at once the shim has exited, not merely been sent the signal.
        assert select.select([shim], [], [], 10)[0], "the shim outlived SIGKILL"
    finally:
        os.close(shim)
    st = pyrunc.state(cid)
    assert st["status"] == "running" and _exists(st["pid"]) not in (None, "Z")
    pyrunc("delete", "--force", cid, check=True)
    assert not (pyrunc.root / cid).exists()


def test_engine_style_create_starts_no_shim_and_leaves_reaping_to_the_caller(pyrunc, bundle, tmp_path):
    """conmon and containerd's shim are subreapers that call plain `create`: act like them."""
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sh", "-c", "exit 4"]
    bundle.write()
    cid = pyrunc.new_id()
    before = set(_shim_pids(pyrunc.root))
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER for this test process
    try:
        pidfile = tmp_path / "init.pid"
        with open(tmp_path / "out", "wb") as out:
            pyrunc("create", "--bundle", str(bundle.path), "--pid-file", str(pidfile), cid,
                   check=True, capture_output=False, stdout=out, stderr=out)
        pid = int(pidfile.read_text())
        assert set(_shim_pids(pyrunc.root)) - before == set()
        assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid()
        pyrunc("start", cid, check=True)
        _, status = os.waitpid(pid, 0)  # we, the "engine", take the exit code
        assert os.waitstatus_to_exitcode(status) == 4
        st = pyrunc.state(cid)
        assert st["status"] == "stopped" and "exitStatus" not in st
    finally:
        libc.prctl(36, 0, 0, 0, 0)
    pyrunc("delete", cid, check=True)


def test_create_with_shim_then_start(pyrunc, bundle):
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sh", "-c", "echo started; exit 6"]
    bundle.write()
    cid = pyrunc.new_id()
    pyrunc("create", "--shim", "--bundle", str(bundle.path), cid, check=True)
    assert pyrunc.state(cid)["status"] == "created"
    pyrunc("start", cid, check=True)
    st = _wait_stopped(pyrunc, cid)
    assert st["exitStatus"] == 6
    assert pyrunc("logs", cid, check=True).stdout == b"started\n"
    pyrunc("delete", cid, check=True)
