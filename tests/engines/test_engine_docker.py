"""docker 20.10 (dockerd → its containerd → containerd-shim-runc-v2) with pyrunc added by
`--add-runtime pyrunc=…` and chosen by `docker run --runtime pyrunc`; each test also run with
docker's built-in runc: the same visible results and exit codes."""

from __future__ import annotations

import pytest

from . import enginelab

pytestmark = [pytest.mark.kernel, pytest.mark.engines]
IMAGE = "bb:latest"
NONE = ("--network", "none")


def test_exit_codes_and_missing_commands(docker, runtime):
    res = docker("run", "--rm", *NONE, IMAGE, "echo", "hi", runtime=runtime)
    assert (res.returncode, res.stdout) == (0, "hi\n"), res
    assert docker("run", "--rm", *NONE, IMAGE, "sh", "-c", "exit 3", runtime=runtime).returncode == 3
    res = docker("run", "--rm", *NONE, IMAGE, "/nonexistent", runtime=runtime)
    assert res.returncode == 127, res
    assert res.stderr.startswith("docker: Error response from daemon: failed to create shim task: "
                                 "OCI runtime create failed: "), res.stderr
    assert ('create failed: unable to start container process: exec: "/nonexistent": stat '
            '/nonexistent: no such file or directory: unknown.') in res.stderr
    res = docker("run", "--rm", *NONE, IMAGE, "nonexistent", runtime=runtime)
    assert res.returncode == 127, res
    assert 'exec: "nonexistent": executable file not found in $PATH: unknown.' in res.stderr


def test_interactive_shell(docker, runtime):
    enginelab.check_interactive_shell(docker, ("-it", "--rm", *NONE, IMAGE), runtime)


def test_exec_top_kill_pause_update_stop_restart(docker, runtime):
    name = f"life-{runtime}"
    script = enginelab.TRAP_SCRIPT
    docker("run", "-d", "--name", name, *NONE, IMAGE, "sh", "-c", script, runtime=runtime,
           check=True)
    try:
        enginelab.check_exec(docker, docker, name, None,
                             "uid=0(root) gid=0(root) groups=0(root)\n", 6)
        res = docker("exec", name, "nonexistent")
        assert res.returncode == 126, res
        assert res.stdout == ('OCI runtime exec failed: exec failed: unable to start container '
                              'process: exec: "nonexistent": executable file not found in $PATH: '
                              'unknown\n'), res

        # `docker top` runs the runtime's `ps --format json` (a bare pid list, nothing on stderr).
        top = docker("top", name, check=True).stdout.splitlines()
        assert top[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], top
        assert any(line.endswith(f"sh -c {script}") for line in top[1:]), top

        enginelab.check_signal_and_pause(docker, name)

        # The resources arrive on the runtime's stdin (`update --resources -`).
        docker("update", "--memory", "64m", "--memory-swap", "128m", "--cpus", "0.5",
               "--pids-limit", "77", name, check=True)
        res = docker("exec", name, "sh", "-c", "cd /sys/fs/cgroup; cat pids/pids.max "
                     "memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes "
                     "cpu/cpu.cfs_quota_us")
        assert res.stdout.split() == ["77", "67108864", "134217728", "50000"], res

        # The init traps TERM without exiting: stop sends TERM, waits 1 s, then KILL.
        docker("stop", "--time", "1", name, check=True)
        assert "got TERM" in docker("logs", name).stdout
        assert docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout == "137\n"

        docker("start", name, check=True)  # a stopped container runs again
        assert docker("exec", name, "echo", "alive").stdout == "alive\n"
        docker("restart", "--time", "1", name, check=True)
        assert docker("inspect", "-f", "{{.State.Status}} {{.RestartCount}}",
                      name).stdout == "running 0\n"
        assert docker("exec", name, "echo", "alive").stdout == "alive\n"
    finally:
        docker("rm", "--force", name)


def test_limits_caps_read_only_and_volume(docker, runtime, lab):
    host = lab["path"] / "hostdir"
    res = docker("run", "--rm", *NONE, *enginelab.LIMITS_FLAGS, "-v", f"{host}:/x", IMAGE,
                 "sh", "-c",
                 enginelab.LIMITS_SCRIPT
                 + f"echo {runtime} > /x/from-docker-{runtime}; ip -o link | wc -l",
                 runtime=runtime)
    assert res.returncode == 0, res
    assert res.stdout.splitlines() == [*enginelab.LIMITS_SEEN, "1"], res.stdout
    assert res.stderr == "touch: /a: Read-only file system\n"
    assert (host / f"from-docker-{runtime}").read_text() == f"{runtime}\n"


def test_default_seccomp_profile(docker, runtime):
    cmd = ("--cap-add", "SYS_ADMIN", IMAGE, "sh", "-c",
           "grep Seccomp: /proc/self/status; busybox swapoff /x")
    res = docker("run", "--rm", *NONE, *cmd, runtime=runtime)
    assert (res.stdout, res.stderr) == ("Seccomp:\t2\n", "swapoff: /x: Operation not permitted\n")
    res = docker("run", "--rm", *NONE, "--security-opt", "seccomp=unconfined", *cmd, runtime=runtime)
    assert (res.stdout, res.stderr) == ("Seccomp:\t0\n", "swapoff: /x: No such file or directory\n")


def test_runtime_added_on_the_command_line(docker):
    """dockerd's `--add-runtime NAME=PATH` (the fixture names it pyrunc-cli), besides the
    daemon.json `runtimes` entry every other test uses."""
    res = docker("run", "--rm", "--runtime", "pyrunc-cli", *NONE, IMAGE, "sh", "-c",
                 "echo hi; exit 3")
    assert (res.returncode, res.stdout) == (3, "hi\n"), res
    info = docker("info", "-f", "{{json .Runtimes}}", check=True).stdout
    assert '"pyrunc"' in info and '"pyrunc-cli"' in info, info
