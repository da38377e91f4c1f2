"""podman (through conmon) with pyrunc as its runtime, each test also run with runc: both must
show the user the same results and exit codes (the expected values are runc's, ENGINES.md)."""

from __future__ import annotations

import subprocess

import pytest

from . import enginelab

pytestmark = [pytest.mark.kernel, pytest.mark.engines]
IMAGE = "localhost/bb"
NONE = ("--network", "none")
NOT_FOUND = "OCI runtime attempted to invoke a command that was not found"


def test_exit_codes_and_missing_commands(podman, runtime, lab):
    res = podman("run", "--rm", *NONE, IMAGE, "echo", "hi", runtime=runtime)
    assert (res.returncode, res.stdout, res.stderr) == (0, "hi\n", ""), res
    res = podman("run", "--rm", *NONE, IMAGE, "sh", "-c", "exit 3", runtime=runtime)
    assert res.returncode == 3
    # podman read the runtime's JSON log (one object) and sorted its message: 127.
    path = lab["runtimes"][runtime]
    res = podman("run", "--rm", *NONE, IMAGE, "/nonexistent", runtime=runtime)
    assert res.returncode == 127, res.stderr
    assert res.stderr.startswith(f"Error: {path}: "), res.stderr
    assert ('create failed: unable to start container process: exec: "/nonexistent": stat '
            f'/nonexistent: no such file or directory: {NOT_FOUND}\n') in res.stderr
    res = podman("run", "--rm", *NONE, IMAGE, "nonexistent", runtime=runtime)
    assert res.returncode == 127, res.stderr
    assert (f'exec: "nonexistent": executable file not found in $PATH: {NOT_FOUND}'
            in res.stderr)


def test_interactive_shell(podman, runtime):
    enginelab.check_interactive_shell(podman, ("-it", "--rm", *NONE, IMAGE), runtime)


def test_exec_top_kill_pause_update_stop_restart(podman, runtime):
    def pm(*args, **kwargs):
        return podman(*args, runtime=runtime, **kwargs)

    name = f"life-{runtime}"
    script = enginelab.TRAP_SCRIPT
    pm("run", "-d", "--name", name, *NONE, IMAGE, "sh", "-c", script, check=True)
    try:
        enginelab.check_exec(podman, pm, name, runtime, "uid=0(root) gid=0(root)\n", 7)
        res = pm("exec", name, "nonexistent")
        assert res.returncode == 127, res.stderr
        assert (f'exec failed: unable to start container process: exec: "nonexistent": '
                f'executable file not found in $PATH: {NOT_FOUND}') in res.stderr

        top = pm("top", name, "pid", "args", check=True).stdout.splitlines()
        assert top[1].split(None, 1) == ["1", f"sh -c {script} "], top  # podman pads

        enginelab.check_signal_and_pause(pm, name)

        # podman 4.3's update has no --pids-limit (docker's test covers pids).
        pm("update", "--memory", "64m", "--cpus", "0.5", name, check=True)
        res = pm("exec", name, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                     "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        assert res.stdout.split() == ["67108864", "50000", "100000"], res

        # The init traps TERM without exiting: stop sends TERM, waits 1 s, then KILL.
        res = pm("stop", "--time", "1", name, check=True)
        assert "failed to stop container" in res.stderr and "resorting to SIGKILL" in res.stderr
        assert "got TERM" in pm("logs", name).stdout
        assert pm("inspect", "-f", "{{.State.ExitCode}}", name).stdout == "137\n"

        pm("start", name, check=True)  # a stopped container runs again
        assert pm("inspect", "-f", "{{.State.Status}}", name).stdout == "running\n"
        assert pm("exec", name, "echo", "alive").stdout == "alive\n"
    finally:
        pm("rm", "--force", "--time", "0", name)


def test_limits_caps_read_only_and_volume(podman, runtime, lab):
    host = lab["path"] / "hostdir"
    res = podman("run", "--rm", *NONE, *enginelab.LIMITS_FLAGS, "-v", f"{host}:/x", IMAGE,
                 "sh", "-c",
                 enginelab.LIMITS_SCRIPT + f"echo {runtime} > /x/from-podman-{runtime}",
                 runtime=runtime)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == enginelab.LIMITS_SEEN, res.stdout
    assert res.stderr == "touch: /a: Read-only file system\n"
    assert (host / f"from-podman-{runtime}").read_text() == f"{runtime}\n"


def test_network_none_and_default(podman, runtime):
    res = podman("run", "--rm", *NONE, IMAGE, "ip", "-o", "link", runtime=runtime)
    assert [line.split()[1] for line in res.stdout.splitlines()] == ["lo:"], res.stdout
    # The default network (netavark bridge) inside a private network namespace and /run, so
    # netavark's bridge, iptables chains, ip_forward and /run/netns never reach the host.
    inner = podman.argv(("run", "--rm", IMAGE, "sh", "-c", "ip -o -4 addr show eth0; ip route"),
                        runtime)
    res = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c",
                          'mount -t tmpfs tmpfs /run && exec "$@"', "sh", *inner],
                         capture_output=True, text=True, timeout=90, env=podman.env)
    assert res.returncode == 0, res.stderr
    assert "inet 10.88.0." in res.stdout and "default via 10.88.0.1 dev eth0" in res.stdout, res


def test_uidmap(podman, runtime):
    res = podman("run", "--rm", *NONE, "--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536",
                 IMAGE, "sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id", runtime=runtime)
    if runtime == "pyrunc" and "user namespaces are not supported yet" in res.stderr:
        pytest.xfail("user namespaces are not in pyrunc yet (the userns issue)")
    assert res.returncode == 0, res.stderr
    assert [line.split() for line in res.stdout.splitlines()] == [
        ["0", "100000", "65536"], ["0", "100000", "65536"], ["uid=0(root)", "gid=0(root)"]]


def test_default_seccomp_profile(podman, runtime):
    # swapoff is denied (EPERM) by podman's profile even with CAP_SYS_ADMIN; without the
    # profile the kernel gets to say the file does not exist.
    cmd = ("--cap-add", "SYS_ADMIN", IMAGE, "sh", "-c", "grep Seccomp: /proc/self/status; swapoff /x")
    res = podman("run", "--rm", *NONE, *cmd, runtime=runtime)
    assert (res.stdout, res.stderr) == ("Seccomp:\t2\n", "swapoff: /x: Operation not permitted\n")
    res = podman("run", "--rm", *NONE, "--security-opt", "seccomp=unconfined", *cmd, runtime=runtime)
    assert (res.stdout, res.stderr) == ("Seccomp:\t0\n", "swapoff: /x: No such file or directory\n")


def test_runtime_by_name_from_the_contrib_containers_conf(podman):
    """README's containers.conf entry: `podman --runtime pyrunc`, with JSON error logs."""
    res = subprocess.run([*podman.base(), "--runtime", "pyrunc", "run", "--rm", *NONE, IMAGE,
                          "sh", "-c", "exit 3"], capture_output=True, text=True, timeout=90,
                         env=podman.env)
    assert res.returncode == 3, res.stderr
    res = subprocess.run([*podman.base(), "--runtime", "pyrunc", "run", "--rm", *NONE, IMAGE,
                          "/nonexistent"], capture_output=True, text=True, timeout=90,
                         env=podman.env)
    assert res.returncode == 127, res.stderr
    assert res.stderr.startswith("Error: pyrunc: pyrunc create failed: "), res.stderr
    assert res.stderr.endswith(f"no such file or directory: {NOT_FOUND}\n"), res.stderr
