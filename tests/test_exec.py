"""`pyrunc exec`: a new process inside a running container, with runc's flags and wording.

Every test runs real execs into a real busybox container started with `run -d` (its stdio goes
to files: the init inherits it, so a pipe would never reach EOF). The engines' exec shape
(ENGINES.md section 1) is `exec --process FILE --detach --pid-file P [--console-socket S]
[--preserve-fds N] ID`; foreground exec is what people type.

runc 1.1.5 on this host is the reference for the wording and for the meaning of each flag.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import base_config
from consoles import ConsoleSocket

pytestmark = pytest.mark.kernel

NS_KINDS = ("pid", "mnt", "net", "ipc", "uts", "cgroup")
CONFIG_PATH = "/opt/bin:/usr/bin:/bin"
CAP_NET_ADMIN = 12


# -- helpers -------------------------------------------------------------------------------------

def cgroup_lines(pid: int | str) -> dict[str, str]:
    """/proc/<pid>/cgroup as {hierarchy: path}."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, key, path = line.split(":", 2)
        out[key] = path
    return out


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for the host's (slow) PID 1 to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def poll(predicate, timeout: float = 5.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


def cap_bits(text: str) -> dict[str, int]:
    """The Cap* lines of /proc/<pid>/status: {"CapEff": 0x..., ...}."""
    caps = {}
    for line in text.splitlines():
        if line.startswith("Cap"):
            key, value = line.split(":", 1)
            caps[key] = int(value.strip(), 16)
    return caps


def one_line(err: bytes) -> str:
    text = err.decode(errors="replace").strip()
    assert text, "no error message at all"
    assert "\n" not in text, f"expected a one-line error, got:\n{text}"
    assert "Traceback" not in text, text
    return text


class Container:
    """A running container (`sleep 100000` as PID 1) and ways to look at it from the host."""

    def __init__(self, rt, cid: str, bundle) -> None:
        self.rt = rt
        self.id = cid
        self.bundle = bundle
        self.pid = int(rt.state(cid)["pid"])
        self.cgroup = cgroup_lines(self.pid)
        pids_dir = Path("/sys/fs/cgroup/pids") / self.cgroup["pids"].lstrip("/")
        self.procs_file = pids_dir / "cgroup.procs"

    def exec(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.rt("exec", *args, **kwargs)

    def run(self, *cmd: str, flags: tuple[str, ...] = (), **kwargs) -> subprocess.CompletedProcess:
        """Foreground `exec [flags] ID cmd...`."""
        return self.rt("exec", *flags, self.id, *cmd, **kwargs)

    def detach(self, *cmd: str, pid_file: Path, flags: tuple[str, ...] = (),
               stdout=subprocess.DEVNULL) -> subprocess.CompletedProcess:
        """`exec -d --pid-file P [flags] ID cmd...`. The process inherits exec's stdio, so that
        goes to DEVNULL (or a file) and stderr to a file next to the pid file, never a pipe;
        `.stderr` holds what exec wrote there."""
        errfile = pid_file.with_name(pid_file.name + ".err")
        with open(errfile, "wb") as err:
            res = self.rt("exec", "-d", "--pid-file", str(pid_file), *flags, self.id, *cmd,
                          capture_output=False, stdin=subprocess.DEVNULL, stdout=stdout,
                          stderr=err)
        res.stderr = errfile.read_bytes()
        return res

    def out(self, *cmd: str, flags: tuple[str, ...] = ()) -> str:
        res = self.run(*cmd, flags=flags)
        assert res.returncode == 0, f"exec {flags} {cmd} exited {res.returncode}: {res.stderr!r}"
        return res.stdout.decode()

    def procs(self) -> set[int]:
        """Live (non-zombie) processes in the container's pids cgroup."""
        return {int(p) for p in self.procs_file.read_text().split() if alive(int(p))}

    def status(self) -> str:
        return self.rt.state(self.id)["status"]

    def run_fails(self, *cmd: str, flags: tuple[str, ...] = ()) -> str:
        """A foreground exec that must fail: its one-line error, once nothing of it is left
        and the container still runs."""
        before = self.procs()
        res = self.run(*cmd, flags=flags)
        assert res.returncode != 0
        msg = one_line(res.stderr)
        self.assert_unharmed(before)
        return msg

    def assert_unharmed(self, before: set[int]) -> None:
        """After a failed exec: nothing of it left in the cgroup, and the container still runs."""
        ok = poll(lambda: self.procs() == before)
        assert ok, f"stray processes in the container's cgroup: {sorted(self.procs() - before)}"
        assert self.status() == "running"
        assert alive(self.pid)


def make_rootfs_extras(rootfs: Path) -> None:
    """A user with a home only the container's /etc/passwd knows, and programs to find by PATH."""
    with open(rootfs / "etc" / "passwd", "a") as f:
        f.write("tester:x:1234:1234:tester:/home/tester:/bin/sh\n")
        f.write("six:x:2345:2345::/home/six\n")   # no shell field: the home is still the 6th
    for directory, name in (("opt/bin", "hello"), ("usr/local/bin", "onlydefault")):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
        script = rootfs / directory / name
        script.write_text(f"#!/bin/sh\necho {name}-ran\n")
        script.chmod(0o755)
    (rootfs / "home" / "tester").mkdir(parents=True)


def start(pyrunc, bundle, tmp_path: Path, cfg: dict, command: str = "run") -> str:
    """`run -d` (or `create`) with the init's stdio on a file, never a pipe; the container id."""
    bundle.write(cfg)
    cid = pyrunc.new_id()
    log = tmp_path / "init.out"
    args = ("run", "-d") if command == "run" else (command,)
    with open(log, "wb") as out:
        res = pyrunc(*args, "--bundle", str(bundle.path), cid, capture_output=False,
                     stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    assert res.returncode == 0, log.read_text()
    return cid


@pytest.fixture
def ctr(pyrunc, bundle, tmp_path) -> Container:
    """A running container: `sleep 100000`, its own cgroup namespace too, FOO in the config env,
    a PATH without /usr/local/bin. The `pyrunc` fixture's teardown deletes it."""
    make_rootfs_extras(bundle.rootfs)
    cfg = base_config(["sleep", "100000"])
    cfg["linux"]["namespaces"].append({"type": "cgroup"})
    cfg["process"]["env"] = [f"PATH={CONFIG_PATH}", "TERM=xterm", "FOO=fromconfig"]
    c = Container(pyrunc, start(pyrunc, bundle, tmp_path, cfg), bundle)
    assert c.status() == "running"
    return c


# -- 1. foreground exec -------------------------------------------------------------------------

def test_output_and_exit_code_pass_through(ctr):
    res = ctr.run("echo", "hello from exec")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"hello from exec\n"
    res = ctr.run("sh", "-c", "echo to-stderr >&2; exit 7")
    assert res.returncode == 7
    assert b"to-stderr" in res.stderr
    assert ctr.status() == "running"


def test_killed_by_a_signal_gives_128_plus_n(ctr):
    assert ctr.run("sh", "-c", "kill -9 $$").returncode == 128 + 9
    assert ctr.run("sh", "-c", "kill -15 $$").returncode == 128 + 15
    assert ctr.status() == "running"


TRAP_USR1 = "trap 'exit 42' USR1; echo ready; while true; do sleep 0.1; done"


def _usr1_reaches_the_program(ctr, tmp_path, pause: str | None = None) -> None:
    """A foreground exec of a program that exits 42 on SIGUSR1: once it says "ready", SIGUSR1 to
    the CLI (stopped at the pause point, if one is given, then continued) must reach it."""
    out, err = tmp_path / "fwd.out", tmp_path / "fwd.err"
    env = dict(os.environ, PYRUNC_TEST_PAUSE=pause) if pause else None
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([ctr.rt.binary, "--root", str(ctr.rt.root), "exec", ctr.id,
                                 "sh", "-c", TRAP_USR1], stdin=subprocess.DEVNULL, stdout=o,
                                stderr=e, env=env)
    try:
        assert poll(lambda: b"ready" in out.read_bytes() or proc.poll() is not None, 30), \
            "the program never said it was ready"
        assert proc.poll() is None, err.read_bytes()
        if pause:
            with open(f"/proc/{proc.pid}/stat") as f:
                assert f.read().rsplit(")", 1)[1].split()[0] == "T"   # still stopped there
        proc.send_signal(signal.SIGUSR1)
        if pause:
            proc.send_signal(signal.SIGCONT)
        assert proc.wait(30) == 42, err.read_bytes()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert ctr.status() == "running"


def test_foreground_exec_forwards_signals(ctr, tmp_path):
    """A signal to a foreground exec reaches its process."""
    _usr1_reaches_the_program(ctr, tmp_path)


def test_signal_before_exec_knows_the_pid_is_forwarded(ctr, tmp_path):
    """exec's child does not wait for the CLI: the program can run before the CLI has its
    handlers and the pid (a loaded machine). A signal sent to the CLI in that window is held
    back and forwarded, not left to end the CLI: here the CLI stops itself right after the fork
    (exec:forked) until the program has trapped USR1 and said so."""
    _usr1_reaches_the_program(ctr, tmp_path, pause="exec:forked")


def test_stdin_reaches_the_process(ctr):
    res = ctr.run("cat", input=b"piped in\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"piped in\n"


def test_runs_in_the_containers_namespaces(ctr):
    script = "; ".join(f"readlink /proc/self/ns/{k}" for k in NS_KINDS)
    inside = ctr.out("sh", "-c", script).split()
    theirs = [os.readlink(f"/proc/{ctr.pid}/ns/{k}") for k in NS_KINDS]
    assert inside == theirs
    # And these are the container's own, not the host's (the config asks for all six).
    ours = [os.readlink(f"/proc/self/ns/{k}") for k in NS_KINDS]
    for kind, a, b in zip(NS_KINDS, theirs, ours):
        assert a != b, f"{kind} namespace is the host's: the test container is not isolated"
    assert ctr.out("hostname") == "pyrunc\n"


def test_runs_in_a_time_namespace_too(pyrunc, bundle, tmp_path):
    """A container with its own time namespace: exec's one child joins it for itself, with the
    others (execchild._join_all), and the process gets every namespace and the clock offsets."""
    cfg = base_config(["sleep", "100000"])
    cfg["linux"]["namespaces"].append({"type": "time"})
    cfg["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 10, "nanosecs": 0}}
    cid = start(pyrunc, bundle, tmp_path, cfg)
    pid = int(pyrunc.state(cid)["pid"])
    kinds = (*NS_KINDS[:-1], "time")   # the config has no cgroup namespace
    res = pyrunc("exec", cid, "sh", "-c",
                 "; ".join(f"readlink /proc/self/ns/{k}" for k in kinds) + "; cat /proc/uptime")
    assert res.returncode == 0, res.stderr
    *inside, uptime = res.stdout.decode().split("\n")[:len(kinds) + 1]
    assert inside == [os.readlink(f"/proc/{pid}/ns/{k}") for k in kinds]
    assert float(uptime.split()[0]) >= 86400 * 10


def test_runs_in_the_containers_cgroups(ctr, tmp_path):
    pidfile = tmp_path / "exec.pid"
    res = ctr.detach("sleep", "100000", pid_file=pidfile)
    assert res.returncode == 0, res.stderr
    pid = int(pidfile.read_text())
    assert alive(pid)
    assert cgroup_lines(pid) == ctr.cgroup
    assert pid in ctr.procs()
    # Inside the cgroup namespace it sees itself at the namespace's root.
    for line in ctr.out("cat", "/proc/self/cgroup").splitlines():
        assert line.split(":", 2)[2] == "/", line


def test_pid_inside_is_not_1_and_the_init_is(ctr):
    res = ctr.run("sh", "-c", "echo $$; ps")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.decode().splitlines()
    assert int(lines[0]) > 1
    rows = {int(r.split()[0]): r for r in lines[2:]}
    assert "sleep 100000" in rows[1], res.stdout
    assert int(lines[0]) in rows, res.stdout


# -- 2. flags -----------------------------------------------------------------------------------

def test_env_adds_and_overrides_config_env(ctr):
    base = ctr.out("sh", "-c", 'echo "$FOO|$TERM"')
    assert base == "fromconfig|xterm\n"
    out = ctr.out("sh", "-c", 'echo "$FOO|$NEW|$TERM"',
                  flags=("--env", "FOO=overridden", "-e", "NEW=a=b c"))
    assert out == "overridden|a=b c|xterm\n"
    env = ctr.out("env", flags=("-e", "FOO=x")).splitlines()
    assert [e for e in env if e.startswith("FOO=")] == ["FOO=x"], env


def test_cwd(ctr):
    assert ctr.out("pwd", flags=("--cwd", "/tmp")) == "/tmp\n"
    assert ctr.out("pwd") == "/\n"


def test_cwd_missing_is_an_error(ctr):
    before = ctr.procs()
    res = ctr.run("pwd", flags=("--cwd", "/does/not/exist"))
    assert res.returncode != 0
    assert b"/does/not/exist" in res.stderr
    ctr.assert_unharmed(before)


def test_user_uid_and_gid(ctr):
    assert ctr.out("id", "-u", flags=("--user", "1000:1001")) == "1000\n"
    assert ctr.out("id", "-g", flags=("-u", "1000:1001")) == "1001\n"
    # No supplementary groups leak from the caller (pytest runs as root with its own groups).
    groups = ctr.out("grep", "Groups", "/proc/self/status", flags=("-u", "1000:1001"))
    assert groups.split() == ["Groups:"]


def test_user_uid_alone_takes_the_configs_gid_0(ctr):
    out = ctr.out("sh", "-c", "id -u; id -g", flags=("-u", "65534"))
    assert out.split() == ["65534", "0"]


def test_user_uid_alone_keeps_a_nonzero_config_gid(pyrunc, bundle, tmp_path):
    """runc 1.1.5 (checked on this host): `-u 1000` only replaces the uid; gid stays the
    config's (process.user.gid=100 → `uid=1000 gid=100`)."""
    cfg = base_config(["sleep", "100000"])
    cfg["process"]["user"] = {"uid": 0, "gid": 100}
    cid = start(pyrunc, bundle, tmp_path, cfg)
    res = pyrunc("exec", "-u", "1000", cid, "sh", "-c", "id -u; id -g")
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().split() == ["1000", "100"]


def test_additional_gids_repeatable(ctr):
    out = ctr.out("sh", "-c", "grep Groups /proc/self/status; id -g",
                  flags=("-u", "1000:1000", "--additional-gids", "10", "-g", "20", "-g", "30"))
    lines = out.splitlines()
    assert sorted(int(g) for g in lines[0].split()[1:]) == [10, 20, 30]
    assert lines[1] == "1000"


def test_cap_adds_to_bounding_effective_permitted_never_inheritable(ctr):
    plain = cap_bits(ctr.out("cat", "/proc/self/status"))
    assert not plain["CapEff"] & (1 << CAP_NET_ADMIN)
    caps = cap_bits(ctr.out("cat", "/proc/self/status", flags=("--cap", "CAP_NET_ADMIN")))
    bit = 1 << CAP_NET_ADMIN
    for kind in ("CapEff", "CapPrm", "CapBnd"):
        assert caps[kind] & bit, f"{kind}={caps[kind]:#x} lacks CAP_NET_ADMIN"
    # CVE-2022-29162: --cap must not make the capability inheritable (nor ambient).
    assert not caps["CapInh"] & bit, f"CapInh={caps['CapInh']:#x}"
    assert not caps["CapAmb"] & bit, f"CapAmb={caps['CapAmb']:#x}"
    # The config's own capabilities are still there.
    assert caps["CapEff"] & plain["CapEff"] == plain["CapEff"]


def test_cap_makes_the_capability_usable(ctr):
    """CAP_NET_ADMIN is what `ip link set lo down` needs in the container's network namespace."""
    res = ctr.run("ip", "link", "set", "lo", "mtu", "1280")
    assert res.returncode != 0
    res = ctr.run("ip", "link", "set", "lo", "mtu", "1280", flags=("--cap", "CAP_NET_ADMIN"))
    assert res.returncode == 0, res.stderr


def test_no_new_privs(pyrunc, bundle, tmp_path):
    """The default config already sets noNewPrivileges; a config without it shows the flag."""
    cfg = base_config(["sleep", "100000"])
    cfg["process"]["noNewPrivileges"] = False
    cid = start(pyrunc, bundle, tmp_path, cfg)
    plain = pyrunc("exec", cid, "grep", "NoNewPrivs", "/proc/self/status")
    assert plain.stdout.split() == [b"NoNewPrivs:", b"0"], plain
    nnp = pyrunc("exec", "--no-new-privs", cid, "grep", "NoNewPrivs", "/proc/self/status")
    assert nnp.stdout.split() == [b"NoNewPrivs:", b"1"], nnp


def test_tty_with_console_socket(ctr, tmp_path):
    with ConsoleSocket(str(tmp_path / "console.sock"), read_output=True) as console:
        res = ctr.run("sh", "-c", "tty; test -t 0 && test -t 1 && echo all-tty; exit 5",
                      flags=("--tty", "--console-socket", console.path))
    assert console.finished, "the console socket never got the pty master"
    assert console.error is None, console.error
    assert console.fd is not None, "no fd arrived over the console socket"
    assert res.returncode == 5, res.stderr
    lines = console.data.decode().replace("\r", "").split("\n")
    assert lines[0].startswith("/dev/pts/"), console.data
    assert "all-tty" in lines, console.data
    assert res.stdout == b"", "the process's output belongs on the pty, not on exec's stdout"


def test_tty_detached_with_console_socket(ctr, tmp_path):
    """The engines' shape: --tty --console-socket S --detach --pid-file P."""
    pidfile = tmp_path / "exec.pid"
    with ConsoleSocket(str(tmp_path / "console.sock"), read_output=True) as console:
        res = ctr.run("sh", "-c", "tty; exit 0", flags=(
            "-t", "--console-socket", console.path, "-d", "--pid-file", str(pidfile)))
    assert res.returncode == 0, res.stderr
    assert console.fd is not None, console.error
    assert console.data.decode().startswith("/dev/pts/"), console.data
    assert pidfile.read_text().isdigit()


def test_tty_detached_without_console_socket_is_an_error(ctr):
    assert "console socket" in ctr.run_fails("true", flags=("-t", "-d"))


ENGINE_PROCESS = {
    # Shaped like what containerd's shim and conmon write for `exec --process`.
    "terminal": False,
    "user": {"uid": 1234, "gid": 1234, "additionalGids": [5, 6]},
    "args": ["sh", "-c", ('echo "$FROMFILE|$FOO|$HOME"; pwd; id -u; id -g; '
                          "grep -E 'Groups|CapEff|CapInh|CapBnd|NoNewPrivs' /proc/self/status; "
                          "ulimit -Sn; ulimit -Hn")],
    "env": ["PATH=/usr/bin:/bin", "FROMFILE=yes"],
    "cwd": "/tmp",
    "capabilities": {
        "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
        "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
    },
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}],
    "noNewPrivileges": True,
}


@pytest.mark.parametrize("uid", [1234, 0], ids=["tester", "root"])
def test_process_file(ctr, tmp_path, uid):
    procfile = tmp_path / "exec-process-123"
    proc = dict(ENGINE_PROCESS, user=dict(ENGINE_PROCESS["user"], uid=uid))
    procfile.write_text(json.dumps(proc))
    res = ctr.exec("--process", str(procfile), ctr.id)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.decode().splitlines()
    # The file is the whole process: the config's env (FOO) is not merged in.
    assert lines[0] == "yes||" + ("/home/tester" if uid else "/root")
    assert lines[1] == "/tmp"
    assert lines[2:4] == [str(uid), "1234"]
    status = {k: v.strip() for k, v in (line.split(":", 1) for line in lines[4:9])}
    assert sorted(status["Groups"].split()) == ["5", "6"]
    assert int(status["CapBnd"], 16) == (1 << 0) | (1 << 5) | (1 << 10)  # CHOWN, KILL, NET_BIND
    # runc 1.1.5 here gives the same: root keeps effective/permitted; a non-root user loses
    # them at execve, having neither ambient nor inheritable capabilities.
    assert int(status["CapEff"], 16) == (0 if uid else (1 << 5) | (1 << 10))
    assert int(status["CapInh"], 16) == 0
    assert status["NoNewPrivs"] == "1"
    assert lines[9:11] == ["256", "512"]


def test_process_file_detached_like_an_engine(ctr, tmp_path):
    proc = dict(ENGINE_PROCESS, args=["sh", "-c", "echo engine-exec $$; exec sleep 100000"])
    procfile = tmp_path / "runc-process123"
    procfile.write_text(json.dumps(proc))
    pidfile = tmp_path / "exec.pid"
    outfile = tmp_path / "exec.out"
    with open(outfile, "wb") as out:
        res = ctr.rt("exec", "--process", str(procfile), "--detach", "--pid-file", str(pidfile),
                     ctr.id, capture_output=False, stdin=subprocess.DEVNULL, stdout=out,
                     stderr=out)
    assert res.returncode == 0, outfile.read_text()
    pid = int(pidfile.read_text())
    assert alive(pid)
    assert os.stat(f"/proc/{pid}").st_uid == 1234
    assert poll(lambda: b"engine-exec" in outfile.read_bytes()), outfile.read_bytes()


@pytest.mark.parametrize("content", ["{not json", '{"args": ["sh", "-c"', '{"args": "sh"}', ""],
                         ids=["garbage", "truncated", "args-not-a-list", "empty"])
def test_malformed_process_file(ctr, tmp_path, content):
    procfile = tmp_path / "broken-process.json"
    procfile.write_text(content)
    before = ctr.procs()
    res = ctr.exec("--process", str(procfile), ctr.id)
    assert res.returncode != 0
    msg = one_line(res.stderr)
    assert str(procfile) in msg, msg
    assert "internal error" not in msg, msg
    ctr.assert_unharmed(before)


def test_missing_process_file(ctr, tmp_path):
    procfile = tmp_path / "no-such-process.json"
    res = ctr.exec("--process", str(procfile), ctr.id)
    assert res.returncode != 0
    msg = one_line(res.stderr)
    assert str(procfile) in msg, msg


def test_detach_with_pid_file(ctr, tmp_path):
    pidfile = tmp_path / "exec.pid"
    res = ctr.detach("sleep", "100000", pid_file=pidfile)
    assert res.returncode == 0, res.stderr
    raw = pidfile.read_bytes()
    assert raw.isdigit(), f"pid file must hold a bare number, no newline: {raw!r}"
    pid = int(raw)
    assert alive(pid), "exec -d returned but the process is gone"
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00100000\x00"
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{ctr.pid}/ns/pid")
    assert os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink(f"/proc/{ctr.pid}/ns/mnt")
    assert cgroup_lines(pid) == ctr.cgroup
    # Seen from inside too.
    assert "sleep 100000" in "\n".join(r for r in ctr.out("ps").splitlines()[1:]
                                        if r.split()[0] != "1")


def test_relative_pid_file(ctr, tmp_path):
    res = ctr.rt("exec", "-d", "--pid-file", "rel.pid", ctr.id, "sleep", "100000", cwd=tmp_path,
                 capture_output=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    assert alive(int((tmp_path / "rel.pid").read_text()))


def _exec_with_fd3(ctr, tmp_path, flags: tuple[str, ...],
                   cmd: list[str]) -> subprocess.CompletedProcess:
    """exec with a file of the test on fd 3 and the same file also open on a higher fd."""
    data = tmp_path / "preserved.txt"
    data.write_text("preserved-content\n")
    fd = os.open(data, os.O_RDONLY)
    try:
        # dup2 onto fd 3 in a tiny exec wrapper; fd itself stays open (inheritable) as well.
        wrapper = ("import os, sys; os.dup2(int(sys.argv[1]), 3); "
                   "os.execv(sys.argv[2], sys.argv[2:])")
        return subprocess.run([sys.executable, "-c", wrapper, str(fd), ctr.rt.binary, "--root",
                               str(ctr.rt.root), "exec", *flags, ctr.id, *cmd],
                              pass_fds=(fd,), capture_output=True, timeout=60, check=False)
    finally:
        os.close(fd)


def ls_fds(out: bytes) -> list[int]:
    return sorted(int(x) for x in out.split())


def test_preserve_fds_passes_fd_3_and_nothing_else(ctr, tmp_path):
    res = _exec_with_fd3(ctr, tmp_path, ("--preserve-fds", "1"), ["ls", "/proc/self/fd"])
    assert res.returncode == 0, res.stderr
    assert ls_fds(res.stdout) == [0, 1, 2, 3, 4], res.stdout  # 4: ls's own directory fd
    res = _exec_with_fd3(ctr, tmp_path, ("--preserve-fds", "1"), ["sh", "-c", "cat <&3"])
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"preserved-content\n"


def test_preserve_fds_beyond_what_the_caller_passed_is_refused(ctr, tmp_path):
    """runc's rule: --preserve-fds N needs fds 3..2+N open. A free number in the range would be
    filled by one of ours (the host's /proc, a socket) and handed to the container."""
    data = tmp_path / "preserved.txt"
    data.write_text("x\n")
    before = ctr.procs()
    wrapper = ("import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
               "fd == 3 or (os.dup2(fd, 3), os.close(fd)); os.set_inheritable(3, True); "
               "os.execv(sys.argv[2], sys.argv[2:])")
    res = subprocess.run([sys.executable, "-c", wrapper, str(data), ctr.rt.binary, "--root",
                          str(ctr.rt.root), "exec", "--preserve-fds", "3", ctr.id, "true"],
                         capture_output=True, timeout=60, check=False)
    assert res.returncode != 0
    line = one_line(res.stderr)
    assert "--preserve-fds 3: fd 4 is not open" in line, line
    ctr.assert_unharmed(before)


def test_without_preserve_fds_only_stdio(ctr, tmp_path):
    res = _exec_with_fd3(ctr, tmp_path, (), ["ls", "/proc/self/fd"])
    assert res.returncode == 0, res.stderr
    assert ls_fds(res.stdout) == [0, 1, 2, 3], res.stdout  # 3: ls's own directory fd
    res = _exec_with_fd3(ctr, tmp_path, (), ["sh", "-c", "cat <&3"])
    assert res.returncode != 0


def test_home_comes_from_the_containers_passwd(ctr):
    assert ctr.out("sh", "-c", 'echo "$HOME"') == "/root\n"
    assert ctr.out("sh", "-c", 'echo "$HOME"', flags=("-u", "1234:1234")) == "/home/tester\n"
    assert ctr.out("sh", "-c", 'echo "$HOME"', flags=("-u", "4321")) == "/\n"
    assert ctr.out("sh", "-c", 'echo "$HOME"', flags=("-u", "2345")) == "/home/six\n"
    # An explicit HOME wins.
    assert ctr.out("sh", "-c", 'echo "$HOME"', flags=("-u", "1234", "-e", "HOME=/x")) == "/x\n"


def test_path_lookup_uses_the_config_env_path(ctr):
    assert ctr.out("sh", "-c", 'echo "$PATH"') == CONFIG_PATH + "\n"
    assert ctr.out("hello") == "hello-ran\n"
    # /usr/local/bin is in the default PATH but not in this container's.
    msg = ctr.run_fails("onlydefault")
    assert 'exec: "onlydefault": executable file not found in $PATH' in msg, msg
    # An --env PATH is the one the lookup uses.
    assert ctr.out("onlydefault", flags=("-e", "PATH=/usr/local/bin:/bin")) == "onlydefault-ran\n"


def test_cgroup_with_a_missing_sub_cgroup(ctr):
    msg = ctr.run_fails("true", flags=("--cgroup", "no-such-sub"))
    assert "no-such-sub" in msg, msg
    assert "does not exist" in msg or "no such file or directory" in msg, msg


# -- 3. errors ----------------------------------------------------------------------------------

def test_exec_into_a_stopped_container(pyrunc, bundle, tmp_path):
    cid = start(pyrunc, bundle, tmp_path, base_config(["true"]))
    assert poll(lambda: pyrunc.state(cid)["status"] == "stopped")
    res = pyrunc("exec", cid, "echo", "should-not-run")
    assert res.returncode != 0
    assert "stopped" in one_line(res.stderr)
    assert b"should-not-run" not in res.stdout


def test_exec_into_a_missing_container(pyrunc):
    res = pyrunc("exec", pyrunc.new_id(), "true")
    assert res.returncode != 0
    assert "container does not exist" in one_line(res.stderr)


def test_exec_into_a_created_but_not_started_container(pyrunc, bundle, tmp_path):
    """runc allows it (the init is parked before execve); at least it must not hang or leak."""
    cid = start(pyrunc, bundle, tmp_path, base_config(["sleep", "100000"]), "create")
    res = pyrunc("exec", cid, "echo", "in-created", timeout=20)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"in-created\n"
    assert pyrunc.state(cid)["status"] == "created"


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detached"])
def test_missing_executable_absolute(ctr, tmp_path, detach):
    before = ctr.procs()
    if detach:
        res = ctr.detach("/nonexistent", pid_file=tmp_path / "p.pid")
    else:
        res = ctr.run("/nonexistent")
    assert res.returncode != 0
    msg = one_line(res.stderr)
    assert 'exec: "/nonexistent": stat /nonexistent: no such file or directory' in msg, msg
    ctr.assert_unharmed(before)
    if detach:
        assert not (tmp_path / "p.pid").exists(), "pid file written for a process that never ran"


def test_missing_executable_by_name(ctr):
    msg = ctr.run_fails("no-such-program", "arg")
    assert 'exec: "no-such-program": executable file not found in $PATH' in msg, msg


def test_executable_that_is_a_directory(ctr):
    assert "permission denied" in ctr.run_fails("/tmp")


def test_exec_with_no_command(ctr):
    before = ctr.procs()
    res = ctr.exec(ctr.id)
    assert res.returncode != 0
    one_line(res.stderr)
    ctr.assert_unharmed(before)


def test_unknown_capability(ctr):
    """pyrunc refuses it (runc 1.1.5 only warns "ignoring unknown or unavailable capabilities"
    and runs the process): a typo must not silently run with fewer privileges."""
    assert "CAP_NO_SUCH_THING" in ctr.run_fails("true", flags=("--cap", "CAP_NO_SUCH_THING"))


def test_bad_user(ctr):
    assert "nobody:x" in ctr.run_fails("true", flags=("-u", "nobody:x"))


def test_json_log_on_exec_failure(ctr, tmp_path):
    """The shim reads log.json as a stream and keeps the last error's msg (ENGINES.md 3)."""
    log = tmp_path / "log.json"
    res = ctr.rt("exec", "--detach", "--pid-file", str(tmp_path / "p.pid"), ctr.id, "/nonexistent",
                 global_args=("--log", str(log), "--log-format", "json"), capture_output=False,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert res.returncode != 0
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    errors = [e for e in entries if e.get("level") == "error"]
    assert errors, entries
    assert 'exec: "/nonexistent": stat /nonexistent: no such file or directory' in errors[-1]["msg"]


# -- 4. parallel --------------------------------------------------------------------------------

def test_parallel_foreground_execs(ctr):
    results: dict[int, subprocess.CompletedProcess] = {}

    def one(n: int) -> None:
        results[n] = ctr.run("sh", "-c", f"echo out-{n}; exit {n}", timeout=120)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    assert sorted(results) == list(range(20))
    for n, res in results.items():
        assert res.returncode == n, (n, res)
        assert res.stdout == f"out-{n}\n".encode(), (n, res)
    assert ctr.status() == "running"


def test_parallel_detached_execs(ctr, tmp_path):
    results: dict[int, subprocess.CompletedProcess] = {}

    def one(n: int) -> None:
        results[n] = ctr.detach("sleep", str(100000 + n), pid_file=tmp_path / f"{n}.pid")

    threads = [threading.Thread(target=one, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    assert sorted(results) == list(range(10))
    pids = []
    for n, res in results.items():
        assert res.returncode == 0, (n, res)
        raw = (tmp_path / f"{n}.pid").read_bytes()
        assert raw.isdigit(), raw
        pid = int(raw)
        assert alive(pid), n
        assert Path(f"/proc/{pid}/cmdline").read_bytes() == f"sleep\x00{100000 + n}\x00".encode()
        assert cgroup_lines(pid) == ctr.cgroup
        pids.append(pid)
    assert len(set(pids)) == 10
    assert set(pids) <= ctr.procs()


# -- 5. security --------------------------------------------------------------------------------

def test_exe_is_the_containers_binary(ctr, tmp_path):
    assert ctr.out("readlink", "/proc/self/exe") == "/bin/busybox\n"
    pidfile = tmp_path / "exec.pid"
    res = ctr.detach("sleep", "100000", pid_file=pidfile)
    assert res.returncode == 0, res.stderr
    pid = int(pidfile.read_text())
    seen = os.stat(f"/proc/{pid}/exe")
    ours = os.stat(ctr.bundle.rootfs / "bin" / "busybox")
    assert (seen.st_dev, seen.st_ino) == (ours.st_dev, ours.st_ino)
    # Dumpable again after execve: its /proc files belong to it, not to root-only.
    assert Path(f"/proc/{pid}/environ").read_bytes()


def test_no_fd_of_pyrunc_reaches_the_process(ctr):
    out = ctr.out("ls", "-l", "/proc/self/fd")
    fds = {}
    for line in out.splitlines():
        parts = line.split()
        if not line.startswith("l"):
            continue  # "total 0"
        if "->" in parts:
            fds[int(parts[parts.index("->") - 1])] = parts[parts.index("->") + 1]
        else:  # busybox cannot read the link of its own, already closed, directory fd
            fds[int(parts[-1])] = None
    assert sorted(fds) == [0, 1, 2, 3], out
    assert fds[3] is None or fds[3].endswith("/fd"), out  # ls's own directory
    assert all(fds[n].startswith("pipe:") for n in (1, 2)), out


def test_cwd_is_inside_the_container(ctr, tmp_path):
    assert ctr.out("readlink", "/proc/self/cwd") == "/\n"
    assert ctr.out("readlink", "/proc/self/cwd", flags=("--cwd", "/tmp")) == "/tmp\n"
    pidfile = tmp_path / "exec.pid"
    res = ctr.detach("sleep", "100000", pid_file=pidfile, flags=("--cwd", "/home/tester"))
    assert res.returncode == 0, res.stderr
    seen = os.stat(f"/proc/{int(pidfile.read_text())}/cwd")
    want = os.stat(ctr.bundle.rootfs / "home" / "tester")
    assert (seen.st_dev, seen.st_ino) == (want.st_dev, want.st_ino)


def test_cwd_symlink_cannot_escape_the_rootfs(ctr):
    """--cwd through a symlink pointing out of the rootfs resolves inside it (CVE-2024-21626
    class)."""
    (ctr.bundle.rootfs / "escape").symlink_to("/../../../../../etc")
    out = ctr.out("readlink", "/proc/self/cwd", flags=("--cwd", "/escape"))
    assert out == "/etc\n"
    # And it is the container's /etc: its passwd has the tester user.
    assert "tester" in ctr.out("cat", "passwd", flags=("--cwd", "/escape"))
