"""The attacks runc and crun have suffered (DESIGN.md section 6), tried for real against pyrunc.

Each test plays the attacker: a malicious image (symlinks, `..`), a malicious container process
(reading /proc/<pid>/fd, /proc/<pid>/exe), another container sharing a volume, or a hook
swapping paths during setup. Each asserts that the attack fails *and* that the host is
untouched: the victim files and directories outside the rootfs keep their content, gain no
entries, nodes or mounts, and the host's Python interpreter is unchanged.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import base_config, one_line_error

from pyrunc import exeguard

pytestmark = pytest.mark.kernel

HOST_PYTHON = os.path.realpath("/usr/bin/python3")  # what pyrunc's launcher runs


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def snapshot(victim: Path) -> dict[str, tuple[int, bytes | None]]:
    """Everything under the victim directory: type bits and content, to compare after."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for dirpath, dirnames, filenames in os.walk(victim):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            data = p.read_bytes() if p.is_file() and not p.is_symlink() else None
            out[str(p.relative_to(victim))] = (st.st_mode, data)
    return out


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A host directory the container must never reach; checked unchanged after the test."""
    v = tmp_path / "host-victim"
    v.mkdir()
    (v / "canary").write_text("host data\n")
    (v / "dir").mkdir()
    (v / "other").mkdir()
    before = snapshot(v)
    yield v
    assert snapshot(v) == before, "the host victim directory was changed"
    with open("/proc/self/mountinfo") as f:
        assert str(v) not in f.read(), "something was mounted on the host victim"


def start(pyrunc, bundle, cfg: dict, created: bool = False) -> str:
    bundle.write(cfg)
    cid = pyrunc.new_id()
    verb = ("create",) if created else ("run", "-d")
    r = pyrunc(*verb, "--bundle", str(bundle.path), cid, capture_output=False,
               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert r.returncode == 0
    return cid


# -- CVE-2024-21626 class: an fd of the runtime reaching the container -------------------------

# A leaked directory fd would let the process walk the host from /proc/self/fd/N; a host cwd
# would show the host's / at /proc/self/cwd/../../..
FD_PROBE = r"""
i=3; while [ $i -lt 1024 ]; do [ -e /proc/$P/fd/$i ] && echo "leak $i $(readlink /proc/$P/fd/$i)"; i=$((i+1)); done
for f in 0 1 2; do [ -d /proc/$P/fd/$f/ ] && echo "dir fd $f"; done
[ "$(stat -L -c %d:%i /proc/$P/cwd)" = "$(stat -c %d:%i $W)" ] && echo cwd-ok
[ "$(stat -L -c %d:%i /proc/$P/root)" = "$(stat -c %d:%i /)" ] && echo root-ok
cd /proc/$P/cwd/../../../../.. && [ "$(stat -c %d:%i .)" = "$(stat -c %d:%i /)" ] && echo up-stays-inside
echo done
"""


@pytest.mark.parametrize("cwd", ["/", "/tmp"])
def test_only_stdio_reaches_the_init(run_container, cwd):
    def edit(cfg: dict) -> None:
        cfg["process"]["cwd"] = cwd
        cfg["process"]["env"].append(f"W={cwd}")
        cfg["process"]["env"].append("P=self")
    r = run_container(["sh", "-c", FD_PROBE], edit=edit)
    assert r.rc == 0, r
    assert r.out == "cwd-ok\nroot-ok\nup-stays-inside\ndone\n", r


def test_only_stdio_reaches_exec_and_the_running_init(pyrunc, bundle):
    cid = start(pyrunc, bundle, base_config(["sleep", "100000"]))
    # The exec'd process itself, then the init seen from it (PID 1, after its execve).
    for target, cwd in (("self", "/tmp"), ("1", "/")):
        r = pyrunc("exec", "--cwd", cwd, "--env", f"P={target}", "--env", f"W={cwd}", cid,
                   "sh", "-c", FD_PROBE)
        assert r.returncode == 0, r
        assert r.stdout.decode() == "cwd-ok\nroot-ok\nup-stays-inside\ndone\n", (target, r)


def test_preserved_fds_are_the_only_extra_ones(pyrunc, bundle, tmp_path):
    secret = tmp_path / "passed"
    secret.write_text("given on purpose\n")
    cfg = base_config(["sh", "-c", "cat <&3; " + FD_PROBE.replace("i=3;", "i=4;")])
    cfg["process"]["env"] += ["P=self", "W=/"]
    bundle.write(cfg)
    cid = pyrunc.new_id()
    # fd 3 is opened by a shell between us and pyrunc: ours stay as they are.
    r = subprocess.run(["sh", "-c", 'exec 3<"$0"; exec "$@"', str(secret), pyrunc.binary,
                        "--root", str(pyrunc.root), "run", "--preserve-fds", "1", "--bundle",
                        str(bundle.path), cid], capture_output=True, timeout=60)
    assert r.returncode == 0, r
    assert r.stdout.decode() == "given on purpose\ncwd-ok\nroot-ok\nup-stays-inside\ndone\n", r


# -- CVE-2019-5736 class: the host interpreter through /proc/<pid>/exe ---------------------------

# Every way in: readlink, a read-only handle (kept, it could be reopened for writing once the
# interpreter is no longer busy), and write opens that neither truncate nor write a byte.
# The probe's own pid is probed too, as the control: its own exe is readable (and busy).
EXE_PROBE = r"""
for p in $PIDS $$; do
  n=$p; [ $p = $$ ] && n=self
  readlink /proc/$p/exe >/dev/null 2>&1 && echo "readlink $n"
  true 3</proc/$p/exe 2>/dev/null && echo "read-open $n"
  true 3<>/proc/$p/exe 2>/dev/null && echo "rw-open $n"
  dd if=/dev/null of=/proc/$p/exe conv=notrunc 2>/dev/null && echo "write-open $n"
done
echo probed
"""
PROBED = "readlink self\nread-open self\nprobed\n"


@pytest.mark.parametrize("trampoline_waits", [True, False])
def test_created_init_exe_is_unreachable(pyrunc, bundle, trampoline_waits):
    """Until `start`, PID 1 of the container is the waiting trampoline (a sealed memfd) where
    exeguard.can_wait says so, else the host's interpreter (a startContainer hook must run
    after start, in the init): either way the container cannot reach its executable."""
    before = digest(HOST_PYTHON)
    cfg = base_config(["true"])
    if not trampoline_waits:
        cfg["hooks"] = {"startContainer": [{"path": "/bin/true"}]}
    cid = start(pyrunc, bundle, cfg, created=True)
    host_pid = pyrunc.state(cid)["pid"]
    exe = os.readlink(f"/proc/{host_pid}/exe")
    if trampoline_waits and exeguard.can_wait(cfg):
        assert exe.startswith("/memfd:pyrunc-exe"), exe
    else:
        assert "python" in exe, exe
    r = pyrunc("exec", "--env", "PIDS=1", cid, "sh", "-c", EXE_PROBE)
    assert r.returncode == 0, r
    assert r.stdout.decode() == PROBED, r
    assert digest(HOST_PYTHON) == before


F_GET_SEALS = 1034
ALL_SEALS = 0x1 | 0x2 | 0x4 | 0x8  # F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE


def assert_sealed_fd(fd: int) -> None:
    """fd is pyrunc's exec trampoline (exeguard.py): a memfd sealed against every change."""
    assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:pyrunc-exe"), fd
    assert fcntl.fcntl(fd, F_GET_SEALS) == ALL_SEALS
    try:
        wfd = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)
    except OSError as exc:
        assert exc.errno == errno.ETXTBSY, exc  # while it runs
        return
    try:
        with pytest.raises(PermissionError):
            os.write(wfd, b"\xcc")
        with pytest.raises(PermissionError):
            os.ftruncate(wfd, 0)
    finally:
        os.close(wfd)


def assert_sealed_trampoline(pid: int) -> None:
    """What /proc/<pid>/exe reaches, seen with our privileges (CAP_SYS_PTRACE and
    CAP_DAC_OVERRIDE): the sealed trampoline, mode 0111, never the host's interpreter."""
    assert os.stat(f"/proc/{pid}/exe").st_mode & 0o7777 == 0o111
    fd = os.open(f"/proc/{pid}/exe", os.O_RDONLY)
    try:
        assert_sealed_fd(fd)
    finally:
        os.close(fd)


NOTIF_SIZE, RESP_SIZE = 80, 24
IOCTL_RECV = (3 << 30) | (NOTIF_SIZE << 16) | (ord("!") << 8) | 0
IOCTL_SEND = (3 << 30) | (RESP_SIZE << 16) | (ord("!") << 8) | 1
NOTIF_FLAG_CONTINUE = 1


class ExecveGate(threading.Thread):
    """A seccomp agent that lets every execve run (SECCOMP_USER_NOTIF_FLAG_CONTINUE) except the
    ones arriving through the connection numbered `hold`: those wait until release(). The held
    process is then frozen right before its execve, still the runtime's interpreter."""

    def __init__(self, path: str, hold: int) -> None:
        super().__init__(daemon=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(4)
        self.hold = hold
        self.fds: list[int] = []
        self.held: list[tuple[int, int, int]] = []  # (fd, notification id, host pid)
        self.holding = threading.Event()
        self.stop = threading.Event()

    def take(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            while True:
                msg, fds, _, _ = socket.recv_fds(conn, 65536, 4)
                self.fds += fds
                if not msg:
                    break

    def answer(self, fd: int, notif_id: int) -> None:
        try:
            fcntl.ioctl(fd, IOCTL_SEND, struct.pack("QqiI", notif_id, 0, 0, NOTIF_FLAG_CONTINUE))
        except OSError:
            pass

    def run(self) -> None:
        while not self.stop.is_set():
            for fd in select.select([self.server, *self.fds], [], [], 0.05)[0]:
                if fd is self.server:
                    self.take()
                    continue
                buf = bytearray(NOTIF_SIZE)
                try:
                    fcntl.ioctl(fd, IOCTL_RECV, buf)
                except OSError:
                    continue
                notif_id, pid = struct.unpack_from("QI", buf)
                if self.fds.index(fd) == self.hold and not self.holding.is_set():
                    self.held.append((fd, notif_id, pid))
                    self.holding.set()
                else:
                    self.answer(fd, notif_id)

    def release(self) -> None:
        for fd, notif_id, _ in self.held:
            self.answer(fd, notif_id)

    def close(self) -> None:
        self.release()
        self.stop.set()
        self.join(5)
        self.server.close()
        for fd in self.fds:
            os.close(fd)


def test_exec_process_exe_is_unreachable_while_it_starts(pyrunc, bundle, tmp_path):
    """A second exec attacks the first one while it is between setup and execve."""
    before = digest(HOST_PYTHON)
    gate = ExecveGate(str(tmp_path / "gate.sock"), hold=1)  # 0: the init, 1: the first exec
    gate.start()
    cfg = base_config(["sleep", "100000"])
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": gate.server.getsockname(),
                               "syscalls": [{"names": ["execve"], "action": "SCMP_ACT_NOTIFY"}]}
    first = None
    try:
        cid = start(pyrunc, bundle, cfg)
        # Both with CAP_DAC_OVERRIDE: the trampoline (mode 0111) would be readable to them, and
        # only the kernel's non-dumpable marking at its exec keeps the prober out.
        first = subprocess.Popen([pyrunc.binary, "--root", str(pyrunc.root), "exec", "--cap",
                                  "CAP_DAC_OVERRIDE", cid, "true"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert gate.holding.wait(30), "the first exec never reached its execve"
        held_pid = gate.held[0][2]
        assert_sealed_trampoline(held_pid)  # no longer our interpreter: the exec trampoline
        status = Path(f"/proc/{held_pid}/status").read_text()
        inner = [line.split()[-1] for line in status.splitlines() if line.startswith("NSpid:")]
        r = pyrunc("exec", "--cap", "CAP_DAC_OVERRIDE", "--env", f"PIDS={inner[0]}", cid, "sh", "-c",
                   f"test -d /proc/{inner[0]} && echo visible; " + EXE_PROBE)
        assert r.returncode == 0, r
        assert r.stdout.decode() == "visible\n" + PROBED, r
        assert_sealed_trampoline(held_pid)  # still there, still unreachable from inside
        gate.release()
        _out, err = first.communicate(timeout=30)
        assert first.returncode == 0, err
    finally:
        if first is not None and first.poll() is None:
            first.kill()
            first.wait()
        gate.close()
    assert digest(HOST_PYTHON) == before


# The lead's reproduction of the hole the exec trampoline (exeguard.py) closes: a script whose
# interpreter is /proc/self/exe, resolved by the kernel in the process doing the execve. Before,
# that process was our Python: the container ran the host's python3.11 (its stdlib comes from
# the read-only binds below) and kept a handle to it, writable once no Python runs.
EVIL = """#!/proc/self/exe
import os
fd = os.open("/proc/self/exe", os.O_RDONLY); st = os.fstat(fd)
print("got fd to", os.readlink("/proc/self/exe"), st.st_dev, st.st_ino)
try: os.close(os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)); print("WRITABLE")
except OSError as e: print("write open:", e)
"""
PY_BIN = os.path.realpath("/usr/bin/python3.11")


def python_rootfs(bundle, cfg: dict) -> dict:
    """The busybox rootfs plus the host's libraries and stdlib, read-only, /evil, and (for the
    control and the probes) python3.11 itself, bound read-only at /py."""
    evil = bundle.rootfs / "evil"
    evil.write_text(EVIL)
    evil.chmod(0o755)
    (bundle.rootfs / "py").write_bytes(b"")
    for path in ("/lib", "/lib64", "/usr/lib"):
        cfg["mounts"].append({"destination": path, "type": "bind", "source": path,
                              "options": ["rbind", "ro"]})
    cfg["mounts"].append({"destination": "/py", "type": "bind", "source": PY_BIN,
                          "options": ["bind", "ro"]})
    return cfg


def test_shebang_to_proc_self_exe_through_the_init(pyrunc, bundle):
    before = digest(HOST_PYTHON)
    bundle.write(python_rootfs(bundle, base_config(["/evil"])))
    r = pyrunc("run", "--bundle", str(bundle.path), pyrunc.new_id())
    # /evil's interpreter is the trampoline, which refuses to be one: nothing of ours ran it.
    assert r.returncode == 126, r
    assert b"got fd" not in r.stdout and not r.stderr, r
    assert digest(HOST_PYTHON) == before


def test_shebang_to_proc_self_exe_through_exec(pyrunc, bundle):
    before = digest(HOST_PYTHON)
    cid = start(pyrunc, bundle, python_rootfs(bundle, base_config(["sleep", "100000"])))
    # The control: this rootfs does run python3.11 (what /evil got before the trampoline).
    r = pyrunc("exec", cid, "/py", "-c", "import os; print(os.readlink('/proc/self/exe'))")
    assert (r.returncode, r.stdout) == (0, b"/py\n"), r
    r = pyrunc("exec", cid, "/evil")
    assert r.returncode == 126, r
    assert b"got fd" not in r.stdout and not r.stderr, r
    assert digest(HOST_PYTHON) == before


def failing_programs(rootfs: Path) -> None:
    """Programs whose start fails, before execve (our lookup) or in it (the trampoline's)."""
    (rootfs / "plain").write_text("not executable\n")
    shutil.copy2("/usr/bin/true", rootfs / "hosttrue")  # its ELF interpreter is not in there
    (rootfs / "garbage").write_bytes(b"\x00junk" * 8)
    (rootfs / "badinterp").write_text("#!/etc/passwd\n")  # an interpreter it may not run
    for name in ("garbage", "badinterp"):
        (rootfs / name).chmod(0o755)


# program -> the error, exactly as before the trampoline (runc's wording for the lookup).
START_ERRORS = {
    "/nothere": 'exec: "/nothere": stat /nothere: no such file or directory',
    "/plain": 'exec: "/plain": permission denied',
    "/hosttrue": "/hosttrue: no such file or directory",
    "/garbage": "/garbage: exec format error",
    "/badinterp": "/badinterp: permission denied",
}


@pytest.mark.parametrize("program", sorted(START_ERRORS))
def test_execve_errors_stay_precise_for_the_init(pyrunc, bundle, program):
    failing_programs(bundle.rootfs)
    bundle.write(base_config([program]))
    cid = pyrunc.new_id()
    r = pyrunc("run", "--bundle", str(bundle.path), cid)
    assert r.returncode != 0, r
    line = one_line_error(r.stderr.decode())
    assert line.endswith(START_ERRORS[program]), line
    assert not (pyrunc.root / cid).exists()


def test_execve_errors_stay_precise_for_exec(pyrunc, bundle):
    failing_programs(bundle.rootfs)
    cid = start(pyrunc, bundle, base_config(["sleep", "100000"]))
    for program, error in START_ERRORS.items():
        r = pyrunc("exec", cid, program)
        line = one_line_error(r.stderr.decode())
        assert line.endswith(error), (program, line)
        if "exec:" not in error:  # failed in execve: the process' status, as a shell's
            assert r.returncode == (127 if "no such file" in error else 126), (program, r)
        else:
            assert r.returncode == 1, (program, r)


def test_profiles_restricting_execveat_or_execve(run_container):
    """The trampoline is entered by execve(/proc/self/fd/N), the syscall the program's exec
    uses, when a profile does not surely allow execveat: a container that ran before still runs.
    A profile denying execve fails the start with the same error as before."""
    def deny(name: str, action: str):
        def edit(cfg: dict) -> None:
            cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": [name], "action": action}]}
        return edit
    r = run_container(["sh", "-c", "echo ran"], edit=deny("execveat", "SCMP_ACT_KILL"))
    assert (r.rc, r.out) == (0, "ran\n"), r
    r = run_container(["sh", "-c", "echo ran"], edit=deny("execve", "SCMP_ACT_ERRNO"))
    assert r.rc != 0 and r.out == "", r
    assert one_line_error(r.err).endswith("container process: /bin/sh: operation not permitted"), r


# A probe with CAP_SYS_PTRACE (what makes a non-dumpable process reachable): it takes a handle
# on the held process' exe, then tries to write through it once nothing executes it any more.
PTRACE_PROBE = r"""
import errno, fcntl, os, sys
pid = sys.argv[1]
fd = os.open(f"/proc/{pid}/exe", os.O_RDONLY)
print(os.readlink(f"/proc/self/fd/{fd}").split(" ")[0], fcntl.fcntl(fd, 1034), flush=True)
try:
    os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)
except OSError as e:
    print("while it runs:", errno.errorcode[e.errno], flush=True)
sys.stdin.read()  # the test releases the held execve, then closes our stdin
w = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)
for what, call in (("write", lambda: os.write(w, b"\xcc")), ("truncate", lambda: os.ftruncate(w, 0))):
    try:
        call()
        print(what, "WORKED")
    except OSError as e:
        print(what + ":", errno.errorcode[e.errno])
"""


def test_ptrace_capable_process_gets_only_the_sealed_trampoline(pyrunc, bundle, tmp_path):
    """The window the trampoline leaves: between its exec and the program's, a process of the
    container holding CAP_SYS_PTRACE (in the host's user namespace) can open /proc/<pid>/exe.
    It gets the memfd, sealed: no write, no truncation, ever."""
    before = digest(HOST_PYTHON)
    gate = ExecveGate(str(tmp_path / "gate.sock"), hold=1)  # 1: the first exec's execve
    gate.start()
    cfg = python_rootfs(bundle, base_config(["sleep", "100000"]))
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": gate.server.getsockname(),
                               "syscalls": [{"names": ["execve"], "action": "SCMP_ACT_NOTIFY"}]}
    (bundle.rootfs / "probe.py").write_text(PTRACE_PROBE)
    first = probe = None
    try:
        cid = start(pyrunc, bundle, cfg)
        first = subprocess.Popen([pyrunc.binary, "--root", str(pyrunc.root), "exec", cid, "true"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert gate.holding.wait(30), "the first exec never reached its execve"
        held_pid = gate.held[0][2]
        assert_sealed_trampoline(held_pid)
        status = Path(f"/proc/{held_pid}/status").read_text().splitlines()
        inner = next(line.split()[-1] for line in status if line.startswith("NSpid:"))
        # CAP_DAC_OVERRIDE too: the trampoline is mode 0111, unreadable without it.
        probe = subprocess.Popen([pyrunc.binary, "--root", str(pyrunc.root), "exec", "--cap",
                                  "CAP_SYS_PTRACE", "--cap", "CAP_DAC_OVERRIDE", cid, "/py",
                                  "/probe.py", inner],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = probe.stdout.readline()
        assert line == b"/memfd:pyrunc-exe %d\n" % ALL_SEALS, line or probe.stderr.read()
        assert probe.stdout.readline() == b"while it runs: ETXTBSY\n"
        gate.release()
        out, err = first.communicate(timeout=30)
        assert first.returncode == 0, err
        out, err = probe.communicate(b"", timeout=30)
        assert (probe.returncode, out) == (0, b"write: EPERM\ntruncate: EPERM\n"), err
    finally:
        for p in (first, probe):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        gate.close()
    assert digest(HOST_PYTHON) == before


# -- CVE-2021-30465 / 2024-45310 / 2025-31133 class: paths leaving the rootfs ----------------------

def escape_cases(victim: Path) -> dict[str, object]:
    """name -> (what to put in the rootfs, how to change the config). `rel` climbs from the
    rootfs to the victim with `..`; `abs` is the victim's host path (a symlink target)."""
    climb = "../" * 12 + str(victim).lstrip("/")
    return {
        "mount-dest-symlink": ({"mnt/evil": str(victim)},
                               lambda c: c["mounts"].append({"destination": "/mnt/evil/new",
                                                             "type": "tmpfs", "source": "tmpfs"})),
        "mount-dest-dotdot": ({}, lambda c: c["mounts"].append(
            {"destination": "/" + climb + "/new", "type": "tmpfs", "source": "tmpfs"})),
        "mount-file-symlink": ({"etc/evil": str(victim / "canary")},
                               lambda c: c["mounts"].append({"destination": "/etc/evil",
                                                             "type": "bind", "options": ["bind"],
                                                             "source": "/etc/hostname"})),
        "tmpcopyup-symlink": ({"mnt/evil": str(victim)}, lambda c: c["mounts"].append(
            {"destination": "/mnt/evil", "type": "tmpfs", "source": "tmpfs",
             "options": ["tmpcopyup"]})),
        "masked-symlink": ({"etc/evil": str(victim)},
                           lambda c: c["linux"]["maskedPaths"].append("/etc/evil")),
        "masked-dotdot": ({}, lambda c: c["linux"]["maskedPaths"].append("/" + climb + "/canary")),
        "readonly-symlink": ({"etc/evil": str(victim)},
                             lambda c: c["linux"]["readonlyPaths"].append("/etc/evil")),
        "device-symlink": ({"dev/evil": str(victim)}, lambda c: c["linux"].setdefault(
            "devices", []).append({"path": "/dev/evil/null", "type": "c", "major": 1,
                                   "minor": 3})),
        "device-dotdot": ({}, lambda c: c["linux"].setdefault("devices", []).append(
            {"path": "/dev/" + climb + "/null", "type": "c", "major": 1, "minor": 3})),
        "cwd-symlink": ({"evil": str(victim)}, lambda c: c["process"].__setitem__("cwd",
                                                                                 "/evil/dir")),
        "cwd-dotdot": ({}, lambda c: c["process"].__setitem__("cwd", "/" + climb + "/dir")),
    }


CASES = ["mount-dest-symlink", "mount-dest-dotdot", "mount-file-symlink", "tmpcopyup-symlink",
         "masked-symlink", "masked-dotdot", "readonly-symlink", "device-symlink", "device-dotdot",
         "cwd-symlink", "cwd-dotdot"]


@pytest.mark.parametrize("case", CASES)
def test_paths_cannot_leave_the_rootfs(pyrunc, bundle, victim, case):
    links, edit = escape_cases(victim)[case]
    for rel, target in links.items():
        (bundle.rootfs / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle.rootfs / rel).symlink_to(target)
    cfg = base_config(["sh", "-c", "pwd; touch x 2>/dev/null; ls /dev >/dev/null; echo ran"])
    cfg["root"]["readonly"] = False
    edit(cfg)
    bundle.write(cfg)
    cid = pyrunc.new_id()
    r = pyrunc("run", "--bundle", str(bundle.path), cid)
    # Either the container ran with everything inside its rootfs, or it was refused in one
    # line; the victim fixture checks the host side.
    if r.returncode == 0:
        assert r.stdout.decode().endswith("ran\n"), r
        if case.startswith("cwd"):
            inside = bundle.rootfs / str(victim).lstrip("/") / "dir"
            assert (inside / "x").exists(), "the cwd was not the rootfs' copy of the path"
    else:
        one_line_error(r.stderr.decode())


def test_symlinks_planted_by_another_container_through_a_shared_volume(pyrunc, bundle, victim,
                                                                       tmp_path):
    """CVE-2021-30465's shape, made deterministic: container A plants symlinks in a volume it
    shares with B; B's mounts then go through them (`..` climbs and absolute host paths)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    volume = {"destination": "/shared", "type": "bind", "source": str(shared),
              "options": ["rbind"]}
    cfg_a = base_config(["sh", "-c", (f"ln -s {'../' * 12}{str(victim).lstrip('/')} /shared/up && "
                                      f"ln -s {victim} /shared/abs && ln -s {victim}/canary /shared/file")])
    cfg_a["mounts"].append(volume)
    bundle.write(cfg_a)
    cid = pyrunc.new_id()
    assert pyrunc("run", "--bundle", str(bundle.path), cid).returncode == 0
    assert os.readlink(shared / "abs") == str(victim)
    cfg_b = base_config(["sh", "-c", "ls /shared/up/new /shared/abs/new && cat /shared/file"])
    cfg_b["mounts"] += [volume,
                        {"destination": "/shared/up/new", "type": "tmpfs", "source": "tmpfs"},
                        {"destination": "/shared/abs/new", "type": "tmpfs", "source": "tmpfs"},
                        {"destination": "/shared/file", "type": "bind", "source": "/etc/hostname",
                         "options": ["bind", "ro"]}]
    bundle.write(cfg_b)
    cid = pyrunc.new_id()
    r = pyrunc("run", "--bundle", str(bundle.path), cid)
    assert r.returncode == 0, r
    assert r.stdout.decode().strip().endswith(Path("/etc/hostname").read_text().strip()), r
    # Everything landed in B's rootfs, under the victim's path re-rooted there.
    assert (bundle.rootfs / str(victim).lstrip("/") / "new").is_dir()


def test_paths_swapped_for_symlinks_by_a_hook_during_setup(pyrunc, bundle, victim):
    """A createRuntime hook (host side, after the mounts and before the pivot) swaps the cwd,
    a masked path and a readonly path for symlinks to the host victim: every later step
    resolves them inside the rootfs."""
    rootfs = bundle.rootfs
    for d in ("work", "masked", "ro"):
        (rootfs / d).mkdir()
    decoy = rootfs / str(victim).lstrip("/")  # the victim's path, re-rooted in the rootfs
    for d in ("dir", "other"):
        (decoy / d).mkdir(parents=True)
    (decoy / "canary").write_text("rootfs copy\n")
    (decoy / "dir" / "f").write_text("")
    targets = {"work": victim, "masked": victim / "dir", "ro": victim / "other"}
    swap = "; ".join(f"rm -rf {rootfs}/{d} && ln -s {t} {rootfs}/{d}" for d, t in targets.items())
    cfg = base_config(["sh", "-c", ("cat canary; touch made && echo made; ls /masked | wc -l; "
                                    "touch /ro/x 2>/dev/null || echo ro-refused")])
    cfg["root"]["readonly"] = False
    cfg["process"]["cwd"] = "/work"
    cfg["linux"]["maskedPaths"].append("/masked")
    cfg["linux"]["readonlyPaths"].append("/ro")
    cfg["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", swap]}]}
    bundle.write(cfg)
    cid = pyrunc.new_id()
    r = pyrunc("run", "--bundle", str(bundle.path), cid)
    assert r.returncode == 0, r
    # The cwd was the decoy (the rootfs' copy), masked (0 entries) and read-only inside.
    assert r.stdout.decode() == "rootfs copy\nmade\n0\nro-refused\n", r
    assert (rootfs / "work").is_symlink() and (decoy / "made").exists()


# -- CVE-2019-16884 / 2025-52881 class: a fake /proc ---------------------------------------------

def test_tmpfs_over_proc_refused(pyrunc, run_container, victim):
    def edit(cfg: dict) -> None:
        cfg["process"]["oomScoreAdj"] = 500
        cfg["mounts"].append({"destination": "/proc", "type": "tmpfs", "source": "tmpfs"})
    r = run_container(["true"], edit=edit)
    assert r.rc == 1, r
    assert "only a procfs may be mounted on /proc" in one_line_error(r.err)


def test_host_dir_bound_over_proc_refused(pyrunc, run_container, victim):
    r = run_container(["true"], edit=lambda cfg: cfg["mounts"].append(
        {"destination": "/proc", "type": "bind", "source": str(victim), "options": ["rbind"]}))
    assert r.rc == 1, r
    assert "only a procfs may be mounted on /proc" in one_line_error(r.err)


@pytest.mark.parametrize("dest", ["/proc/self/oom_score_adj", "/proc/1/oom_score_adj",
                                  "/proc/sys/kernel/shmmni", "/procl/self/oom_score_adj"])
def test_procfs_file_redirected_over_another_refused(pyrunc, bundle, dest):
    """CVE-2025-52881: a procfs file the runtime writes, covered by another writable procfs
    file. The stand-in for core_pattern is a host process' oom_score_adj: harmless, and any
    value the runtime wrote would show there."""
    sleeper = subprocess.Popen(["sleep", "1000"])
    try:
        victim = Path(f"/proc/{sleeper.pid}/oom_score_adj")
        if dest.startswith("/procl"):
            (bundle.rootfs / "procl").symlink_to("proc")  # the same, through a symlink
        cfg = base_config(["true"])
        cfg["process"]["oomScoreAdj"] = 432
        cfg["linux"]["sysctl"] = {"kernel.shmmni": "321"}
        cfg["mounts"].append({"destination": dest, "type": "bind", "source": str(victim),
                              "options": ["bind"]})
        bundle.write(cfg)
        cid = pyrunc.new_id()
        r = pyrunc("run", "--bundle", str(bundle.path), cid)
        assert r.returncode == 1, r
        assert "mounts inside /proc are refused" in one_line_error(r.stderr.decode())
        assert victim.read_text() == "0\n"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_proc_covered_during_setup_refused(pyrunc, bundle):
    """A createContainer hook (in the container's mount namespace, after the mounts and the
    checks on them) covers /proc with a forged tree: the container is refused."""
    rootfs = bundle.rootfs
    forged = (f"mount -t tmpfs forged {rootfs}/proc && mkdir -p {rootfs}/proc/self && "
              f"echo 0 > {rootfs}/proc/self/oom_score_adj")
    cfg = base_config(["true"])
    cfg["process"]["oomScoreAdj"] = 500
    cfg["hooks"] = {"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", forged]}]}
    bundle.write(cfg)
    cid = pyrunc.new_id()
    r = pyrunc("run", "--bundle", str(bundle.path), cid)
    assert r.returncode == 1, r
    assert "/proc is not the procfs mounted by config.json" in one_line_error(r.stderr.decode())


def test_procfs_files_redirected_during_setup_are_not_written(pyrunc, bundle):
    """CVE-2025-52881 with the race won: a createContainer hook binds a host process' file
    over the files of the container's (real) procfs the runtime writes next, oom_score_adj
    and a sysctl. /proc passes every check, yet the writes must reach the real files."""
    sleeper = subprocess.Popen(["sleep", "1000"])
    try:
        comm = f"/proc/{sleeper.pid}/oom_score_adj"  # the stand-in for core_pattern
        r_ = bundle.rootfs
        redirect = (f"mount --bind {comm} {r_}/proc/1/oom_score_adj && "
                    f"mount --bind {comm} {r_}/proc/sys/kernel/shmmni")
        cfg = base_config(["sleep", "100000"])
        cfg["process"]["oomScoreAdj"] = 432
        cfg["linux"]["sysctl"] = {"kernel.shmmni": "321"}
        cfg["hooks"] = {"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", redirect]}]}
        cid = start(pyrunc, bundle, cfg)
        pid = pyrunc.state(cid)["pid"]
        assert Path(comm).read_text() == "0\n", "the runtime wrote into the host's process"
        assert Path(f"/proc/{pid}/oom_score_adj").read_text() == "432\n"
        # The container's /proc shows the bind (the hook's doing); its ipc namespace has the
        # value, read through the host's procfs from a process in it.
        shm = subprocess.run(["nsenter", "-t", str(pid), "-i", "cat", "/proc/sys/kernel/shmmni"],
                             capture_output=True, text=True, check=True)
        assert shm.stdout == "321\n"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_proc_writes_go_to_the_real_procfs(pyrunc, bundle):
    """The oom_score_adj and sysctl values land in the container's real /proc, read from the
    host through the init's pid, whatever the container's /proc shows."""
    cfg = base_config(["sleep", "100000"])
    cfg["process"]["oomScoreAdj"] = 432
    cfg["linux"]["sysctl"] = {"kernel.shmmni": "1234"}
    cid = start(pyrunc, bundle, cfg)
    pid = pyrunc.state(cid)["pid"]
    assert Path(f"/proc/{pid}/oom_score_adj").read_text() == "432\n"
    r = pyrunc("exec", cid, "cat", "/proc/sys/kernel/shmmni", check=True)
    assert r.stdout == b"1234\n"
    assert Path("/proc/sys/kernel/shmmni").read_text() != "1234\n"  # the host's is its own


# -- CVE-2022-29162 class: exec --cap and inheritable capabilities -------------------------------

CAP_NET_ADMIN = 12
VFS_CAP_REVISION_2 = 0x02000000


def cap_status(text: str) -> dict[str, int]:
    return {k: int(v, 16) for k, v in (line.split(":\t") for line in text.splitlines()
                                       if line.startswith("Cap"))}


def test_exec_cap_gives_nothing_through_an_inheritable_file_capability(pyrunc, bundle):
    """The image ships a binary with CAP_NET_ADMIN in its *inheritable* file set: a non-root
    process gains the capability at execve only if it is in the process' inheritable set."""
    (bundle.rootfs / "opt").mkdir()
    capped = bundle.rootfs / "opt" / "cat"  # busybox, run as its cat applet
    capped.write_bytes((bundle.rootfs / "bin" / "busybox").read_bytes())
    capped.chmod(0o755)
    try:
        os.setxattr(capped, "security.capability",
                    struct.pack("<IIIII", VFS_CAP_REVISION_2 | 1, 0, 1 << CAP_NET_ADMIN, 0, 0))
    except OSError as exc:
        pytest.skip(f"no file capabilities on this filesystem: {exc}")
    cfg = base_config(["sleep", "100000"])
    cfg["process"]["noNewPrivileges"] = False
    cid = start(pyrunc, bundle, cfg)
    probe = ["/opt/cat", "/proc/self/status"]
    r = pyrunc("exec", "--user", "1000:1000", "--cap", "CAP_NET_ADMIN", cid, *probe, check=True)
    caps = cap_status(r.stdout.decode())
    assert caps["CapInh"] == 0 and caps["CapAmb"] == 0, caps
    assert caps["CapPrm"] == 0 and caps["CapEff"] == 0, caps  # nothing gained at execve
    # The control: the same exec with CAP_NET_ADMIN inheritable (a --process file asking for
    # it) does gain it, so the probe above could have failed.
    proc = dict(cfg["process"], args=probe, user={"uid": 1000, "gid": 1000})
    proc["capabilities"] = {k: ["CAP_NET_ADMIN"] for k in ("bounding", "effective", "permitted",
                                                            "inheritable")}
    pfile = bundle.path / "proc.json"
    pfile.write_text(json.dumps(proc))
    r = pyrunc("exec", "--process", str(pfile), cid, check=True)
    assert cap_status(r.stdout.decode())["CapEff"] == 1 << CAP_NET_ADMIN
