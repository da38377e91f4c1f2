"""The exec trampoline's machine code (exeguard.py), run for real: natively on x86_64, and the
aarch64 encoding under qemu-aarch64 (the programs it execs are the host's, run natively).

The container-level behaviour (the #!/proc/self/exe attack, errors, seccomp) is in
test_attacks.py; this checks the contract of the image itself, per architecture."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pyrunc import exeguard

QEMU = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
MACHINES = {"x86_64": (62, exeguard._X86_64), "aarch64": (183, exeguard._AARCH64)}


@pytest.fixture(params=sorted(MACHINES))
def trampoline(request, tmp_path: Path):
    """A function running the image for that machine with an argv: (status, stdout, report)."""
    machine = request.param
    if machine != os.uname().machine and (machine != "aarch64" or QEMU is None):
        pytest.skip(f"cannot run {machine} code here (qemu-aarch64: contrib/setup.sh)")
    image = tmp_path / f"trampoline-{machine}"
    image.write_bytes(exeguard._elf(*MACHINES[machine]))
    image.chmod(0o755)
    native = machine == os.uname().machine

    def run(*argv: str, fds: str = "107") -> tuple[int, bytes, bytes]:
        """argv[0] of the trampoline is `fds`; fd 107 is a pipe whose content is returned."""
        r, w = os.pipe()
        os.dup2(w, 107)
        os.close(w)
        try:
            # qemu's -0 sets the guest's argv[0], as execve's argv[0] would.
            cmd = [fds, *argv] if native else [QEMU, "-0", fds, str(image), *argv]
            proc = subprocess.run(cmd, executable=str(image) if native else QEMU,
                                  pass_fds=(107, 109) if fds == "107,109" else (107,),
                                  capture_output=True, timeout=60)
        finally:
            os.close(107)
        with os.fdopen(r, "rb") as f:
            report = f.read()
        return proc.returncode, proc.stdout, report
    return run


def test_runs_the_program_with_its_argv_env_and_without_our_fds(trampoline):
    probe = "import os, sys; print(sys.argv, os.environ.get('X'), os.path.exists('/proc/self/fd/107'))"
    status, out, report = trampoline("/usr/bin/python3", "argv0", "-c", probe)
    assert (status, report) == (0, b""), out
    assert out == b"['-c'] None False\n"


@pytest.mark.parametrize(("program", "status", "error"), [
    ("/nonexistent", 127, "/nonexistent: no such file or directory"),
    ("/etc/passwd", 126, "/etc/passwd: permission denied"),
])
def test_a_failed_execve_is_reported(trampoline, program, status, error):
    got, out, report = trampoline(program, "x")
    assert (got, out) == (status, b"")
    assert report.startswith(exeguard.MAGIC)
    assert exeguard.failure(report) == error


def test_exec_format_error(trampoline, tmp_path: Path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00junk" * 4)
    junk.chmod(0o755)
    got, _, report = trampoline(str(junk), "junk")
    assert got == 126
    assert exeguard.failure(report) == f"{junk}: exec format error"


def test_every_listed_fd_is_closed_at_the_programs_exec(trampoline):
    os.dup2(0, 109)  # a second fd, inheritable, named after the error fd
    try:
        probe = "import os; print(os.path.exists('/proc/self/fd/107'), os.path.exists('/proc/self/fd/109'))"
        status, out, _ = trampoline("/usr/bin/python3", "p", "-c", probe, fds="107,109")
    finally:
        os.close(109)
    assert (status, out) == (0, b"False False\n")


@pytest.mark.parametrize(("fds", "argv"), [
    ("107", ()), ("107", ("/usr/bin/python3",)),  # short of arguments
    ("/proc/self/exe", ("/evil",)), ("/proc/self/exe", ("/usr/bin/python3", "-c", "print(1)")),
])
def test_misuse_exits_126_touching_nothing(trampoline, fds, argv):
    """As a script's interpreter (argv[0] is then the interpreter's path), or short of arguments."""
    assert trampoline(*argv, fds=fds) == (126, b"", b"")


# -- what the program gets after the two execs: the same as after one ---------------------------

PAUSE_C = "#include <unistd.h>\nint main(void) { pause(); return 0; }\n"


def process_facts(pid: int) -> dict:
    """AT_SECURE (auxv type 23), the ids and the capability sets of a process, read from the host."""
    words = Path(f"/proc/{pid}/auxv").read_bytes()
    auxv = {int.from_bytes(words[i:i + 8], "little"): int.from_bytes(words[i + 8:i + 16], "little")
            for i in range(0, len(words), 16)}
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"AT_SECURE": auxv.get(23), "Uid": status["Uid"].split(), "comm":
            Path(f"/proc/{pid}/comm").read_text().strip(), "exe": os.readlink(f"/proc/{pid}/exe"),
            **{k: int(status[k], 16) for k in ("CapEff", "CapPrm", "CapInh", "CapAmb")}}


@pytest.fixture
def setuid_pause(bundle, tmp_path: Path) -> str:
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build a static setuid program")
    (tmp_path / "pause.c").write_text(PAUSE_C)
    target = bundle.rootfs / "bin" / "supause"
    subprocess.run(["gcc", "-static", "-Os", "-o", str(target), str(tmp_path / "pause.c")], check=True)
    target.chmod(0o4755)
    return "/bin/supause"


@pytest.mark.parametrize("nnp", [False, True])
def test_setuid_and_at_secure_through_the_trampoline(pyrunc, bundle, setuid_pause, nnp):
    """uid 1000 runs a setuid-root program: euid 0 and AT_SECURE=1 (the kernel's decision at the
    program's own execve), as the init and through exec; with no_new_privs, neither."""
    from conftest import base_config
    cfg = base_config([setuid_pause])
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    cfg["process"]["noNewPrivileges"] = nnp
    cfg["process"]["capabilities"] = {k: ["CAP_KILL"] for k in ("bounding", "permitted", "inheritable",
                                                               "effective", "ambient")}
    bundle.write(cfg)
    cid = pyrunc.new_id()
    quiet = {"capture_output": False, "stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
             "stderr": subprocess.DEVNULL}  # the detached processes keep them open
    assert pyrunc("run", "-d", "--bundle", str(bundle.path), cid, **quiet).returncode == 0
    pidfile = bundle.path / "exec.pid"
    assert pyrunc("exec", "-d", "--pid-file", str(pidfile), cid, setuid_pause, **quiet).returncode == 0
    kill = 1 << 5
    for pid in (pyrunc.state(cid)["pid"], int(pidfile.read_text())):
        facts = process_facts(pid)
        assert (facts["comm"], facts["exe"]) == ("supause", setuid_pause)
        if nnp:
            assert facts["AT_SECURE"] == 0 and facts["Uid"] == ["1000"] * 4, facts
            assert facts["CapEff"] == facts["CapPrm"] == facts["CapAmb"] == kill, facts
        else:  # the file is privileged: ambient dropped, root's sets from the bounding set
            assert facts["AT_SECURE"] == 1 and facts["Uid"] == ["1000", "0", "0", "0"], facts
            assert (facts["CapEff"], facts["CapPrm"], facts["CapAmb"]) == (kill, kill, 0), facts


# -- the wait for `start` in front of the x86_64 trampoline (create's init) ---------------------

needs_x86_64 = pytest.mark.skipif(os.uname().machine != "x86_64",
                                  reason="the waiting trampoline is x86_64 code")


@pytest.fixture
def waiting(tmp_path: Path):
    """start(program, *args) -> (pid, fifo): the waiting image, exec'd as create's init is, with
    the report fd and the exec fifo listed after its "w"; report() reads what it reported."""
    fifo = tmp_path / "exec.fifo"
    os.mkfifo(fifo)
    report_path = tmp_path / "start.err"
    children: list[int] = []

    def start(*argv: str) -> int:
        ff = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        err = os.open(report_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC)
        image = tmp_path / "waiting"
        image.write_bytes(exeguard.image(ff))
        image.chmod(0o755)
        pid = os.fork()
        if pid == 0:
            os.set_inheritable(ff, True)
            os.set_inheritable(err, True)
            os.execve(str(image), [f"w{err},{ff}", *argv], {})
        os.close(ff)
        os.close(err)
        children.append(pid)
        return pid

    def signal_start(data: bytes = b"0") -> None:
        w = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(w, data)
        os.close(w)

    start.fifo = fifo
    start.signal = signal_start
    start.report = report_path.read_bytes
    yield start
    for pid in children:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _blocked_in_poll(pid: int) -> None:
    """Until the image runs (its comm) and blocks in its poll: its handlers are in place then."""
    for _ in range(20000):
        with open(f"/proc/{pid}/comm") as f, open(f"/proc/{pid}/wchan") as w:
            if f.read().strip() == "waiting" and "poll" in w.read():
                return
        os.sched_yield()
    raise AssertionError("the waiting trampoline never blocked in poll")


def _status(pid: int) -> tuple[str, int]:
    status = os.waitpid(pid, 0)[1]
    return ("exit", os.WEXITSTATUS(status)) if os.WIFEXITED(status) else (
        "signal", os.WTERMSIG(status))


@needs_x86_64
def test_waits_for_start_then_runs_the_program(waiting, tmp_path: Path):
    out = tmp_path / "out"
    pid = waiting("/bin/sh", "sh", "-c", f"echo ran > {out}")
    _blocked_in_poll(pid)
    with open(f"/proc/{pid}/status") as f:   # waiting: the tiny image, not the program yet
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    assert rss < 256 and not out.exists()
    waiting.signal()
    assert _status(pid) == ("exit", 0)
    assert out.read_text() == "ran\n" and waiting.report() == b""


@needs_x86_64
@pytest.mark.parametrize("sig", [1, 2, 10, 15, 34, 64])
def test_a_signal_while_waiting_ends_it_with_128_plus_the_signal(waiting, sig):
    pid = waiting("/bin/true", "true")
    _blocked_in_poll(pid)
    os.kill(pid, sig)
    assert _status(pid) == ("exit", 128 + sig)


@needs_x86_64
def test_a_start_that_closes_without_a_byte_ends_it_with_1(waiting):
    pid = waiting("/bin/true", "true")
    waiting.signal(b"")
    assert _status(pid) == ("exit", 1)


@needs_x86_64
def test_a_failed_execve_after_the_wait_is_reported(waiting):
    pid = waiting("/nonexistent", "x")
    waiting.signal()
    assert _status(pid) == ("exit", 127)
    assert exeguard.failure(waiting.report()) == "/nonexistent: no such file or directory"


def test_can_wait_only_where_nothing_runs_between_start_and_the_program() -> None:
    plain = {"process": {"args": ["true"]}}
    assert exeguard.can_wait(plain) == (os.uname().machine == "x86_64")
    if os.uname().machine != "x86_64":
        return
    assert not exeguard.can_wait({**plain, "hooks": {"startContainer": [{"path": "/bin/true"}]}})
    assert not exeguard.can_wait({"process": {"args": ["true"], "apparmorProfile": "p"}})
    denies_poll = {"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["poll"], "action": "SCMP_ACT_ERRNO"}]}
    assert not exeguard.can_wait({**plain, "linux": {"seccomp": denies_poll}})
    allows_them = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["execveat", "rt_sigaction", "poll", "read"], "action": "SCMP_ACT_ALLOW"}]}
    assert exeguard.can_wait({**plain, "linux": {"seccomp": allows_them}})
