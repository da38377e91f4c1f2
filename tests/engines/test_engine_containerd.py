"""containerd 1.6 (ctr → containerd-shim-runc-v2) with `ctr run --runc-binary` naming pyrunc,
each test also run with runc: the same visible results and exit codes. ctr 1.6 has no
`task update` and no pids flag (podman and docker cover those)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .enginelab import check_interactive_shell, run_in_pty, wait_for

pytestmark = [pytest.mark.kernel, pytest.mark.engines]
IMAGE = "localhost/bb:latest"
# ctr has no `--cap-drop ALL`: drop each of containerd's 14 defaults but NET_BIND_SERVICE.
DROP_ALL_BUT_BIND = [a for cap in (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "SYS_CHROOT", "KILL", "AUDIT_WRITE") for a in ("--cap-drop", "CAP_" + cap)]


def task_status(ctr, cid: str) -> str:
    for line in ctr("task", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields[0] == cid:
            return fields[2]
    return "none"


def test_exit_codes_and_missing_command(ctr, runtime):
    cid = f"codes-{runtime}"
    res = ctr("run", "--rm", IMAGE, cid, "echo", "hi", runtime=runtime)
    assert (res.returncode, res.stdout) == (0, "hi\n"), res
    assert ctr("run", "--rm", IMAGE, cid, "sh", "-c", "exit 3", runtime=runtime).returncode == 3
    # The shim kept the last error of the runtime's log.json: ctr's usual exit 1 and message.
    res = ctr("run", "--rm", IMAGE, cid, "/nonexistent", runtime=runtime)
    assert res.returncode == 1
    assert res.stderr.startswith("ctr: failed to create shim task: OCI runtime create failed: "), res
    assert res.stderr.endswith('create failed: unable to start container process: exec: '
                               '"/nonexistent": stat /nonexistent: no such file or directory: '
                               'unknown\n'), res.stderr
    assert cid not in ctr("containers", "ls", "-q").stdout.split()


def test_interactive_shell(ctr, runtime):
    check_interactive_shell(ctr, ("--rm", "-t", IMAGE, f"tty-{runtime}"), runtime)


def test_exec_ps_pause_kill_restart(ctr, runtime, lab):
    cid = f"life-{runtime}"
    log = lab["path"] / f"ctr-{runtime}.log"
    script = 'trap "echo got USR1" USR1; while :; do sleep 0.1; done'
    ctr("run", "-d", "--log-uri", f"file://{log}", IMAGE, cid, "sh", "-c", script,
        runtime=runtime, check=True)
    try:
        res = ctr("task", "exec", "--exec-id", "e1", cid, "id")
        assert (res.returncode, res.stdout) == (0, "uid=0(root) gid=0(root) groups=0(root)\n")
        assert ctr("task", "exec", "--exec-id", "e2", cid, "sh", "-c", "exit 6").returncode == 6
        rc, out = run_in_pty(ctr.argv(("task", "exec", "-t", "--exec-id", "e3", cid, "sh", "-c",
                                       "tty; exit 5"), None), env=ctr.env)
        assert rc == 5 and "/dev/pts/0\n" in out, out
        res = ctr("task", "exec", "--exec-id", "e4", cid, "nonexistent")
        assert res.returncode == 1
        assert res.stderr == ('ctr: OCI runtime exec failed: exec failed: unable to start '
                              'container process: exec: "nonexistent": executable file not '
                              'found in $PATH: unknown\n'), res.stderr

        # `ps --format json`: the shim decodes the runtime's whole output as a list of pids.
        ps = ctr("task", "ps", cid, check=True).stdout.splitlines()
        assert ps[0].split() == ["PID", "INFO"] and len(ps) >= 2, ps

        ctr("task", "pause", cid, check=True)
        assert task_status(ctr, cid) == "PAUSED"
        ctr("task", "resume", cid, check=True)
        assert task_status(ctr, cid) == "RUNNING"

        ctr("task", "kill", "--signal", "SIGUSR1", cid, check=True)
        wait_for(lambda: "got USR1" in log.read_text(), "USR1 to reach the trap")
        # The init has no TERM handler: as PID 1 it ignores TERM; KILL ends it.
        ctr("task", "kill", "--signal", "SIGTERM", cid, check=True)
        # A TERM that killed it would be pending before this USR1, which then never gets handled.
        ctr("task", "kill", "--signal", "SIGUSR1", cid, check=True)
        wait_for(lambda: log.read_text().count("got USR1") == 2, "a USR1 sent after the TERM")
        assert task_status(ctr, cid) == "RUNNING"
        ctr("task", "kill", "--all", "--signal", "SIGKILL", cid, check=True)
        wait_for(lambda: task_status(ctr, cid) == "STOPPED", "the task to stop")
        ctr("task", "delete", cid, check=True)

        # A stopped container runs again: a new task for the same container.
        ctr("task", "start", "-d", cid, check=True)
        assert task_status(ctr, cid) == "RUNNING"
        res = ctr("task", "exec", "--exec-id", "e5", cid, "echo", "alive")
        assert res.stdout == "alive\n", res
    finally:
        ctr("task", "kill", "--all", "--signal", "SIGKILL", cid)
        wait_for(lambda: task_status(ctr, cid) in ("STOPPED", "none"), "the task to stop")
        ctr("task", "delete", cid)
        ctr("containers", "delete", cid)


def test_limits_caps_read_only_mount_seccomp(ctr, runtime, lab):
    host = lab["path"] / "hostdir"
    res = ctr("run", "--rm", "--memory-limit", str(128 << 20), "--cpus", "1.5",
              *DROP_ALL_BUT_BIND, "--read-only", "--seccomp",
              "--mount", f"type=bind,src={host},dst=/x,options=rbind:rw", IMAGE, f"lim-{runtime}",
              "sh", "-c", "grep -E 'CapEff|Seccomp:' /proc/self/status; touch /a; cat /x/greeting; "
              f"echo {runtime} > /x/from-ctr-{runtime}; ip -o link | wc -l", runtime=runtime)
    assert res.returncode == 0, res
    assert res.stdout.splitlines() == ["CapEff:\t0000000000000400", "Seccomp:\t2",
                                       "hello from the host", "1"], res.stdout
    assert "touch: /a: Read-only file system" in res.stderr
    assert (host / f"from-ctr-{runtime}").read_text() == f"{runtime}\n"


def test_limits_applied_to_the_cgroup(ctr, runtime):
    cid = f"cg-{runtime}"
    ctr("run", "-d", "--null-io", "--memory-limit", str(96 << 20), "--cpus", "0.5", IMAGE, cid,
        "sleep", "100", runtime=runtime, check=True)
    try:
        cgroup = Path("/sys/fs/cgroup")  # cgroupsPath /default/<id> (ENGINES.md sec. 4)
        memory = (cgroup / "memory" / "default" / cid / "memory.limit_in_bytes").read_text()
        assert memory == f"{96 << 20}\n"
        assert (cgroup / "cpu" / "default" / cid / "cpu.cfs_quota_us").read_text() == "50000\n"
    finally:
        ctr("task", "kill", "--all", "--signal", "SIGKILL", cid)
        wait_for(lambda: task_status(ctr, cid) in ("STOPPED", "none"), "the task to stop")
        ctr("task", "delete", cid)
        ctr("containers", "delete", cid)


def test_contrib_config_declares_the_cri_runtime_handler(lab, tmp_path):
    """README's config.toml snippet (not runnable here: no CRI/Kubernetes): containerd parses
    it and keeps the handler's runc shim and BinaryName."""
    import shutil
    import subprocess

    from .enginelab import contrib_snippet
    if not shutil.which("containerd"):
        pytest.skip("containerd not installed (contrib/setup.sh)")
    conf = tmp_path / "config.toml"
    conf.write_text(contrib_snippet("containerd-config.toml", lab["launcher"]))
    res = subprocess.run(["containerd", "--config", str(conf), "config", "dump"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    section = res.stdout.split('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.pyrunc]')
    assert len(section) == 2, res.stdout
    assert 'runtime_type = "io.containerd.runc.v2"' in section[1].split("\n\n")[0]
    assert f'BinaryName = "{lab["launcher"]}"' in section[1]
