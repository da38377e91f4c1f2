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
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
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
