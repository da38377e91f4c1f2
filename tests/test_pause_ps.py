"""pause, resume and ps on real containers (the freezer of this host's v1 hierarchy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import wait_status

pytestmark = pytest.mark.kernel


@pytest.fixture
def running(pyrunc, bundle, tmp_path):
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sleep", "100000"]
    bundle.write()
    cid = pyrunc.new_id()
    with open(tmp_path / "ctr.out", "wb") as out:
        pyrunc("run", "-d", "--bundle", str(bundle.path), cid, check=True, capture_output=False,
               stdout=out, stderr=out)
    return cid


def _freezer_state(pid: int) -> str:
    path = next(line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
            if line.split(":")[1] == "freezer")
    return Path(f"/sys/fs/cgroup/freezer{path}/freezer.state").read_text().strip()


def _proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _exited(pid: int) -> bool:
    """A zombie, or reaped and gone."""
    try:
        return _proc_state(pid) in ("Z", "X")
    except FileNotFoundError:
        return True


def _exec_sleeper(rt, cid: str, tmp_path: Path) -> int:
    """The host pid of a second process (`exec -d sleep`) in the container."""
    pidfile = tmp_path / "exec.pid"
    with open(tmp_path / "exec.out", "wb") as out:
        rt("exec", "-d", "--pid-file", str(pidfile), cid, "sleep", "100000", check=True,
           capture_output=False, stdout=out, stderr=out)
    return int(pidfile.read_text())


def test_pause_freezes_and_resume_thaws(pyrunc, running):
    pid = pyrunc.state(running)["pid"]
    pyrunc("pause", running, check=True)
    assert pyrunc.state(running)["status"] == "paused"
    assert _freezer_state(pid) == "FROZEN"
    pyrunc("resume", running, check=True)
    assert pyrunc.state(running)["status"] == "running"
    assert _freezer_state(pid) == "THAWED"


def test_pause_and_resume_in_the_wrong_state_fail(pyrunc, running):
    res = pyrunc("resume", running)
    assert res.returncode == 1 and b"not paused" in res.stderr
    pyrunc("pause", running, check=True)
    res = pyrunc("pause", running)
    assert res.returncode == 1 and b"paused" in res.stderr
    assert pyrunc.state(running)["status"] == "paused"


def test_exec_into_a_paused_container_is_refused(pyrunc, running):
    pyrunc("pause", running, check=True)
    res = pyrunc("exec", running, "true")
    assert res.returncode == 1
    assert b"paused" in res.stderr


def test_delete_force_of_a_paused_container(pyrunc, running):
    pid = pyrunc.state(running)["pid"]
    pyrunc("pause", running, check=True)
    pyrunc("delete", "--force", running, check=True, timeout=15)
    assert not (pyrunc.root / running).exists()
    assert _exited(pid)


def test_kill_all_reaches_every_process(pyrunc, running, tmp_path):
    second = _exec_sleeper(pyrunc, running, tmp_path)
    pyrunc("kill", "--all", running, "KILL", check=True)
    wait_status(pyrunc, running, "stopped", timeout=20)
    assert _exited(second)


def test_ps_json_is_a_bare_array_of_host_pids(pyrunc, running, tmp_path):
    second = _exec_sleeper(pyrunc, running, tmp_path)
    res = pyrunc("ps", "--format", "json", running)
    assert res.returncode == 0 and res.stderr == b""  # go-runc reads stdout+stderr as one
    pids = json.loads(res.stdout)
    assert sorted(pids) == sorted([pyrunc.state(running)["pid"], second])


def test_ps_table_passes_options_to_ps(pyrunc, running):
    res = pyrunc("ps", running, "-o", "pid,args")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.decode().splitlines()
    assert lines[0].split() == ["PID", "COMMAND"]
    assert [line.split()[1:] for line in lines[1:]] == [["sleep", "100000"]]
    assert int(lines[1].split()[0]) == pyrunc.state(running)["pid"]


def test_ps_of_a_missing_container(pyrunc):
    res = pyrunc("ps", "--format", "json", "nosuchcontainer")
    assert res.returncode == 1 and b"container does not exist" in res.stderr


@pytest.mark.parametrize("attempt", range(3))
def test_kill_all_succeeds_when_the_cgroup_kill_already_ended_the_init(pyrunc, running, attempt):
    """containerd's `task kill --all` and `task delete -f` run `kill --all ID 9`: once the
    cgroup-wide kill has ended (and the shim reaped) the init, the call still succeeds (the
    shim would otherwise report "process already finished")."""
    res = pyrunc("kill", "--all", running, "9")
    assert (res.returncode, res.stderr) == (0, b"")
