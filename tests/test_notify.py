"""NOTIFY_SOCKET: pyrunc proxies sd_notify from the container to the supervisor's socket.

The supervisor is played by a datagram socket the test binds; the container sends with a tiny
sd_notify client written here and compiled statically (busybox has none).
"""

from __future__ import annotations

import array
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import uuid

import pytest
from conftest import one_line_error, poll, wait_status

pytestmark = pytest.mark.kernel

SENDER = r"""
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
/* sdnotify MESSAGE: one datagram to $NOTIFY_SOCKET, as sd_notify(3) sends it. */
int main(int argc, char **argv) {
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (argc != 2 || !path || strlen(path) >= sizeof(addr.sun_path)) return 2;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0) return 3;
    return sendto(fd, argv[1], strlen(argv[1]), 0, (struct sockaddr *)&addr, sizeof(addr)) < 0;
}
"""


@pytest.fixture(scope="session")
def sdnotify(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the test's sd_notify client")
    work = tmp_path_factory.mktemp("sdnotify")
    (work / "sdnotify.c").write_text(SENDER)
    subprocess.run(["gcc", "-static", "-Os", "-o", str(work / "sdnotify"), str(work / "sdnotify.c")],
                   check=True)
    return str(work / "sdnotify")


UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid


class Supervisor:
    """The host's NOTIFY_SOCKET: receives what pyrunc forwards, answers BARRIER=1 by closing.
    Like systemd, it learns each datagram's sender pid (SO_PASSCRED): `senders`."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.senders: list[int] = []
        if abstract:
            self.address = f"@pyrunc-test-{uuid.uuid4().hex[:8]}"
            self.sock.bind("\0" + self.address[1:])
            self.dir = ""
        else:
            self.dir = tempfile.mkdtemp(prefix="pyrunc-notify-", dir="/tmp")
            self.address = os.path.join(self.dir, "host.sock")
            self.sock.bind(self.address)

    def env(self) -> dict[str, str]:
        return dict(os.environ, NOTIFY_SOCKET=self.address)

    def receive(self, count: int, timeout: float = 20,
                keep: list[int] | None = None) -> list[tuple[bytes, int]]:
        """count datagrams as (payload, number of fds passed); passed fds are closed at once
        (the barrier's answer), or put in `keep` for the caller to close later."""
        self.sock.settimeout(timeout)
        out = []
        for _ in range(count):
            data, anc, _flags, _addr = self.sock.recvmsg(
                4096, socket.CMSG_SPACE(16) + socket.CMSG_SPACE(UCRED.size))
            fds = array.array("i")
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(raw[: len(raw) - len(raw) % fds.itemsize])
                elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    self.senders.append(UCRED.unpack(raw[:UCRED.size])[0])
            if keep is None:
                for fd in fds:
                    os.close(fd)
            else:
                keep.extend(fds)
            out.append((data, len(fds)))
        return out

    def nothing_pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.sock.setblocking(True)
        return False

    def close(self) -> None:
        self.sock.close()
        if self.dir:
            shutil.rmtree(self.dir)


@pytest.fixture
def supervisor():
    sup = Supervisor()
    yield sup
    sup.close()


def _bundle_with(bundle, sdnotify: str, shared, script: str):
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sh", "-c", script]
    shutil.copy(sdnotify, bundle.rootfs / "bin" / "sdnotify")
    if shared is not None:
        cfg["mounts"].append({"destination": "/shared", "type": "bind", "source": str(shared),
                              "options": ["rbind"]})
    bundle.write()


def _cmd(rt, *args: str) -> list[str]:
    return [rt.binary, "--root", str(rt.root), *args]


def _end(proc: subprocess.Popen) -> None:
    """Kill proc if a failed assertion left it running."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _create(rt, bundle, supervisor: Supervisor) -> str:
    """A container created under the supervisor's NOTIFY_SOCKET: its id."""
    cid = rt.new_id()
    rt("create", "--bundle", str(bundle.path), cid, check=True, env=supervisor.env(),
       capture_output=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cid


def _start(rt, cid: str, env: dict[str, str]) -> subprocess.Popen:
    """`start` in the background: with NOTIFY_SOCKET it returns only once the container is ready."""
    return subprocess.Popen(_cmd(rt, "start", cid), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_start_blocks_until_ready_and_forwards_it(pyrunc, bundle, sdnotify, supervisor, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    # A datagram with READY=1 on its second line: runc would miss it, the protocol allows it.
    _bundle_with(bundle, sdnotify, shared,
                 'env > /shared/env; touch /shared/waiting; '
                 'while [ ! -e /shared/go ]; do sleep 0.02; done; '
                 'sdnotify "$(printf "STATUS=warming up\\nREADY=1")"; exec sleep 100')
    cid = _create(pyrunc, bundle, supervisor)
    start = _start(pyrunc, cid, supervisor.env())
    try:
        poll(lambda: (shared / "waiting").exists(), 10, "the container to run")
        assert wait_status(pyrunc, cid, "running")["status"] == "running"  # lock not held
        assert supervisor.nothing_pending()
        (shared / "go").touch()
        got = supervisor.receive(3)
        _out, err = start.communicate(timeout=20)
    finally:
        _end(start)
    pid = pyrunc.state(cid)["pid"]
    assert got == [(b"READY=1\n", 0), (f"MAINPID={pid}\n".encode(), 0), (b"BARRIER=1", 1)]
    # start itself forwarded READY, which the container sent only after `go`: start waited.
    assert supervisor.senders == [start.pid] * 3
    assert start.returncode == 0, err
    assert "NOTIFY_SOCKET=/run/notify/notify.sock" in (shared / "env").read_text().splitlines()
    with open(f"/proc/{pid}/mounts") as f:
        mounts = f.read().splitlines()
    notify_mount = [line.split() for line in mounts if line.split()[1] == "/run/notify"]
    assert notify_mount and {"ro", "nosuid", "nodev", "noexec"} <= set(
        notify_mount[0][3].split(","))
    pyrunc("kill", cid, "KILL", check=True)
    wait_status(pyrunc, cid, "stopped")
    pyrunc("delete", cid, check=True)
    assert not (pyrunc.root / cid).exists()


def test_ready_queued_before_the_init_exits_counts(pyrunc, bundle, sdnotify, supervisor):
    """STATUS=, READY=1, exit, all before start listens: both the socket and the init's pidfd
    are ready at start's first poll, and the queued READY=1 must win over the death. start is
    held (PYRUNC_TEST_PAUSE) after its fifo write until the init is gone."""
    _bundle_with(bundle, sdnotify, None, "sdnotify STATUS=starting && sdnotify READY=1")
    cid = _create(pyrunc, bundle, supervisor)
    pid = pyrunc.state(cid)["pid"]
    pidfd = os.pidfd_open(pid)
    start = _start(pyrunc, cid, dict(supervisor.env(), PYRUNC_TEST_PAUSE="start:after-write"))
    try:
        assert select.select([pidfd], [], [], 20)[0], "the container never exited"
        poll(lambda: _proc_state(start.pid) in ("T", None), 20, "start to stop itself")
        os.kill(start.pid, signal.SIGCONT)
        got = supervisor.receive(3)
        _out, err = start.communicate(timeout=20)
    finally:
        os.close(pidfd)
        _end(start)
    assert start.returncode == 0, err
    assert got == [(b"READY=1\n", 0), (f"MAINPID={pid}\n".encode(), 0), (b"BARRIER=1", 1)]
    wait_status(pyrunc, cid, "stopped")
    pyrunc("delete", cid, check=True)


def _proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def test_container_dying_unready_ends_the_wait_and_kill_is_not_blocked(
        pyrunc, bundle, sdnotify, supervisor, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    _bundle_with(bundle, sdnotify, shared, "touch /shared/waiting; exec sleep 100")
    cid = _create(pyrunc, bundle, supervisor)
    start = _start(pyrunc, cid, supervisor.env())
    try:
        poll(lambda: (shared / "waiting").exists(), 10, "the container to run")
        pyrunc("kill", cid, "KILL", check=True, timeout=10)
        _out, err = start.communicate(timeout=20)
    finally:
        _end(start)
    assert start.returncode == 0, err
    assert supervisor.nothing_pending()
    wait_status(pyrunc, cid, "stopped")
    pyrunc("delete", cid, check=True)


def test_foreground_run_forwards_its_own_pid_as_mainpid(pyrunc, bundle, sdnotify):
    """And `run` outlives the forwarding, however soon the container exits after READY=1: it
    exits only once the supervisor has answered BARRIER=1, never before READY and MAINPID."""
    sup = Supervisor(abstract=True)  # '@name': systemd's abstract-socket form
    barrier: list[int] = []
    try:
        _bundle_with(bundle, sdnotify, None, "sdnotify READY=1 && exit 7")
        cid = pyrunc.new_id()
        run = subprocess.Popen(_cmd(pyrunc, "run", "--bundle", str(bundle.path), cid),
                               env=sup.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            got = sup.receive(3, keep=barrier)
            # The container has exited and `run` has reaped it; `run` still waits for us.
            wait_status(pyrunc, cid, "stopped", timeout=20)
            assert run.poll() is None, "run exited before the supervisor answered BARRIER=1"
            while barrier:
                os.close(barrier.pop())
            _out, err = run.communicate(timeout=20)
        finally:
            _end(run)
        assert got == [(b"READY=1\n", 0), (f"MAINPID={run.pid}\n".encode(), 0),
                       (b"BARRIER=1", 1)]
        assert sup.senders == [run.pid] * 3  # systemd's NotifyAccess=main takes only MAINPID's
        assert run.returncode == 7, err
    finally:
        for fd in barrier:
            os.close(fd)
        sup.close()


def test_run_detached_waits_for_ready_and_names_the_init(pyrunc, bundle, sdnotify, supervisor):
    _bundle_with(bundle, sdnotify, None, "sdnotify READY=1; exec sleep 100")
    cid = pyrunc.new_id()
    run = subprocess.Popen(_cmd(pyrunc, "run", "-d", "--bundle", str(bundle.path), cid),
                           env=supervisor.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        got = supervisor.receive(3)
        _out, err = run.communicate(timeout=20)
    finally:
        _end(run)
    assert run.returncode == 0, err
    pid = pyrunc.state(cid)["pid"]
    assert got == [(b"READY=1\n", 0), (f"MAINPID={pid}\n".encode(), 0), (b"BARRIER=1", 1)]
    pyrunc("delete", "--force", cid, check=True)


def test_without_notify_socket_nothing_is_added(run_container):
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    rc, out, err = run_container(["sh", "-c", "env; test -e /run/notify && echo MOUNTED; true"],
                                 env=env)
    assert rc == 0, err
    assert "NOTIFY_SOCKET" not in out and "MOUNTED" not in out


def test_unreachable_notify_socket_fails_start_before_the_program_runs(pyrunc, bundle, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    cfg = bundle.edit()
    cfg["process"]["args"] = ["touch", "/shared/ran"]
    cfg["mounts"].append({"destination": "/shared", "type": "bind", "source": str(shared),
                          "options": ["rbind"]})
    bundle.write()
    missing = str(tmp_path / "no-such.sock")
    env = dict(os.environ, NOTIFY_SOCKET=missing)
    cid = pyrunc.new_id()
    pyrunc("create", "--bundle", str(bundle.path), cid, check=True, env=env,
           capture_output=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = pyrunc("start", cid, env=env)
    assert r.returncode == 1
    line = one_line_error(r.stderr.decode())
    assert f"NOTIFY_SOCKET={missing}: cannot connect: no such file or directory" in line
    assert pyrunc.state(cid)["status"] == "created"
    assert not (shared / "ran").exists()
    pyrunc("delete", "--force", cid, check=True)


def test_start_without_notify_socket_stays_on_the_light_path(pyrunc, bundle):
    """-X importtime of a real `start`: without NOTIFY_SOCKET neither notify.py nor os (which
    lightos.py keeps off the short commands) is imported."""
    from conftest import REPO
    bundle.write()
    cid = pyrunc.new_id()
    pyrunc("create", "--bundle", str(bundle.path), cid, check=True, capture_output=False,
           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    launcher = (f"import sys; sys.path[:0] = [{str(REPO)!r}, '/usr/local/lib/pyrunc/vendor']; "
                "from pyrunc.cli import main; sys.exit(main())")
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    r = subprocess.run(["/usr/bin/python3", "-X", "importtime", "-I", "-S", "-c", launcher,
                        "--root", str(pyrunc.root), "start", cid], capture_output=True,
                       text=True, env=env, check=False)
    assert r.returncode == 0, r.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}
    assert "pyrunc.lifecycle_start" in imported  # the trace is there
    assert "pyrunc.notify" not in imported and "os" not in imported, sorted(imported)
