"""Whose cgroups are whose: a joined cgroup and its other processes outlive the container, a frozen
one is refused at create, and a frozen container is still killed by `kill --all`."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import one_line_error, wait_status

pytestmark = pytest.mark.kernel
CGROOT = Path("/sys/fs/cgroup")


def _hierarchies() -> list[Path]:
    return [h for h in CGROOT.iterdir() if (h / "cgroup.procs").exists()]


def _rmdir(path: Path) -> None:
    deadline = time.monotonic() + 5
    while path.exists():
        try:
            path.rmdir()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _create(pyrunc, bundle, tmp_path: Path, cgroups_path: str, args: list[str],
            env: dict | None = None) -> tuple[str, subprocess.CompletedProcess]:
    cfg = bundle.edit()
    cfg["process"]["args"] = args
    cfg["linux"]["cgroupsPath"] = cgroups_path
    bundle.write()
    cid = pyrunc.new_id()
    # files, never pipes: the init inherits them and create would wait for their end
    with open(tmp_path / f"{cid}.out", "wb") as out, open(tmp_path / f"{cid}.err", "wb") as err:
        proc = pyrunc("create", "--bundle", str(bundle.path), cid, capture_output=False,
                      stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
    proc.stderr = (tmp_path / f"{cid}.err").read_bytes()
    return cid, proc


@pytest.mark.parametrize("how", ["delete", "delete-force", "failed-create"])
def test_joined_cgroup_and_its_other_processes_survive(pyrunc, bundle, tmp_path, how) -> None:
    shared = f"{pyrunc.prefix}-shared"
    dirs = [h / shared for h in _hierarchies()]
    for d in dirs:
        d.mkdir()
        for name in ("cpuset.cpus", "cpuset.mems"):   # a new v1 cpuset takes no task until set
            if (d / name).exists():
                (d / name).write_text((d.parent / name).read_text())
    neighbour = subprocess.Popen(["sleep", "1000"])
    try:
        for d in dirs:
            (d / "cgroup.procs").write_text(str(neighbour.pid))
        if how == "failed-create":
            bundle.edit()["linux"]["resources"] = {"cpu": {"cpus": "99-100"}}
        cid, proc = _create(pyrunc, bundle, tmp_path, "/" + shared, ["sleep", "1000"])
        if how == "failed-create":
            assert proc.returncode == 1 and b"cpu.cpus" in proc.stderr, proc.stderr
        else:
            assert proc.returncode == 0, proc.stderr
            pyrunc("start", cid, check=True)
            if how == "delete":
                pyrunc("kill", cid, "KILL", check=True)
                wait_status(pyrunc, cid, "stopped")
            pyrunc("delete", *(["--force"] if how == "delete-force" else []), cid, check=True)
        assert neighbour.poll() is None, "delete killed a process it did not start"
        assert all(d.is_dir() for d in dirs), "delete removed a cgroup it did not create"
        assert [int(p) for p in (dirs[0] / "cgroup.procs").read_text().split()] == [neighbour.pid]
    finally:
        neighbour.kill()
        neighbour.wait()
        for d in dirs:
            _rmdir(d)


@pytest.mark.parametrize("layout", ["hybrid", "v2"])
def test_a_frozen_cgroup_is_refused_at_create(pyrunc, bundle, tmp_path, layout) -> None:
    name = f"{pyrunc.prefix}-frozen"
    if layout == "v2":
        frozen, knob, value = CGROOT / "unified" / name, "cgroup.freeze", "1"
    else:
        frozen, knob, value = CGROOT / "freezer" / name, "freezer.state", "FROZEN"
    if not frozen.parent.is_dir():
        pytest.skip(f"no {frozen.parent}")
    frozen.mkdir()
    try:
        (frozen / knob).write_text(value)
        env = {**os.environ, "PYRUNC_CGROUP_LAYOUT": "v2"} if layout == "v2" else None
        cid, proc = _create(pyrunc, bundle, tmp_path, "/" + name, ["true"], env=env)
        assert proc.returncode == 1
        assert one_line_error(proc.stderr.decode()) .endswith(
            f"cgroup {frozen} is frozen: refusing to create a container in it")
        assert not (pyrunc.root / cid).exists()
        others = [h / name for h in _hierarchies() if h / name != frozen]
        assert not any(d.exists() for d in others), "create left the directories it made"
    finally:
        (frozen / knob).write_text("0" if layout == "v2" else "THAWED")
        _rmdir(frozen)


def test_kill_all_of_a_frozen_v1_container(pyrunc, bundle, tmp_path) -> None:
    cid, proc = _create(pyrunc, bundle, tmp_path, "", ["sh", "-c", "sleep 1000 & sleep 1000"])
    assert proc.returncode == 0, proc.stderr
    pyrunc("start", cid, check=True)
    pyrunc("pause", cid, check=True)
    state = pyrunc.state(cid)
    assert state["status"] == "paused"
    freezer = next(line.split(":", 2)[2] for line in
               Path(f"/proc/{state['pid']}/cgroup").read_text().splitlines()
               if line.split(":")[1] == "freezer")
    assert (CGROOT / "freezer" / freezer.lstrip("/") / "freezer.state").read_text().strip() == "FROZEN"
    pyrunc("kill", "--all", cid, "KILL", check=True)
    wait_status(pyrunc, cid, "stopped")
    pyrunc("delete", cid, check=True)
