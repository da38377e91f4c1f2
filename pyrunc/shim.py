"""pyrunc-shim: the parent of a container that no engine watches (`run -d`, `create --shim`).

It is exec'd (a fresh, small interpreter: only os, sys and time are loaded) by the pyrunc process
that created the container, so it keeps being the init's parent and a child subreaper. It reaps
the init, writes how it ended to <state dir>/exit.json (atomically), and leaves. Nothing else:
the container's output already goes straight to <state dir>/output.log, opened before create.
"""

import os
import sys
import time

EXIT_FILE = "exit.json"
LOG_FILE = "output.log"
_SIGNAMES = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT",
             7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2",
             13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM", 31: "SIGSYS"}


def _now() -> str:
    ns = time.time_ns()
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
            + f".{ns % 1_000_000_000:09d}Z")


def record(state_dir: str, status: int) -> None:
    """exitStatus follows the shell (128+N for signal N), as `pyrunc run` reports it."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = _SIGNAMES.get(sig, f"SIG{sig}")
        body = f'{{"exitStatus": {128 + sig}, "exitSignal": "{name}", "finished": "{_now()}"}}'
    else:
        body = f'{{"exitStatus": {os.WEXITSTATUS(status)}, "finished": "{_now()}"}}'
    path = os.path.join(state_dir, EXIT_FILE)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, body.encode())
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except FileNotFoundError:
        pass  # the container was deleted meanwhile: nobody is left to tell


def main(argv: list[str]) -> int:
    state_dir, init_pid = argv[1], int(argv[2])
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0  # the init was not ours (or already reaped): nothing to record
        if pid == init_pid:
            record(state_dir, status)
            break
    while True:  # strays reparented to us (a container sharing the host's pid namespace)
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return 0
        except ChildProcessError:
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
