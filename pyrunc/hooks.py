"""OCI hooks: run a hook with the container state on stdin, honour its timeout, report failure.

Runs from the CLI (prestart, createRuntime, poststart, poststop: the runtime namespace) and from
the container init (createContainer before pivot_root, startContainer after it), so it imports
nothing beyond what init.py has loaded, and uses fork/execve rather than subprocess.
"""

from __future__ import annotations

import errno
import select
import sys
import time

from pyrunc import jsonlite
from pyrunc import lightos as os  # os minus its import cost: see lightos.py

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


class HookError(Exception):
    """A hook could not run, failed, or outlived its timeout."""


def run_hooks(kind: str, hooks: list[dict], state: dict) -> None:
    payload = jsonlite.dumps(state, spaced=True).encode()
    for index, hook in enumerate(hooks):
        run_one(kind, index, hook, payload)


def run_one(kind: str, index: int, hook: dict, payload: bytes) -> None:
    path = hook["path"]
    args = hook.get("args") or [path]
    env = dict(item.split("=", 1) for item in hook.get("env") or [] if "=" in item)
    timeout = hook.get("timeout")
    where = f"{kind} hook #{index} ({path})"
    read_end, write_end = os.pipe()
    # Close-on-exec: EOF once the hook runs, or the errno of a failed execve, so that failure
    # is reported once, in the caller's one error line.
    fail_r, fail_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            # The caller's signal mask, if `run` holds signals back (only `run` loads
            # supervise.py: a plain create with hooks, docker's on every container, does not).
            held = sys.modules.get("pyrunc.supervise")
            if held is not None:
                held.in_child()
            os.close(fail_r)
            os.dup2(read_end, 0)
            os.dup2(2, 1)  # hook output belongs on our stderr, never in the container's stdout
            os.execve(path, args, env)
        except OSError as exc:
            os.write(fail_w, str(exc.errno or 0).encode())
        except BaseException:  # noqa: BLE001 - e.g. a NUL in an argument: still one line
            os.write(fail_w, b"22")
        finally:
            os._exit(127)
    os.close(read_end)
    os.close(fail_w)
    try:
        failed = os.read(fail_r, 16)
    finally:
        os.close(fail_r)
    try:
        os.write(write_end, payload)
    except BrokenPipeError:
        pass  # a hook need not read its stdin
    finally:
        os.close(write_end)
    status = _wait(pid, timeout)
    if failed:
        code = int(failed)
        raise HookError(f"{where}: {os.strerror(code)[:1].lower()}{os.strerror(code)[1:]}")
    if status is None:
        raise HookError(f"{where} timed out after {timeout}s and was killed")
    if os.WIFSIGNALED(status):
        raise HookError(f"{where} was killed by signal {os.WTERMSIG(status)}")
    if os.WEXITSTATUS(status) != 0:
        raise HookError(f"{where} failed: exit status {os.WEXITSTATUS(status)}")


_LONGEST = 1e9            # seconds: ~31 years
_POLL_MAX_MS = 2**31 - 1  # poll(2)'s timeout is a C int


def _wait(pid: int, timeout: float | None) -> int | None:
    """Exit status, or None after killing a hook that ran past `timeout` seconds."""
    if not timeout:
        return os.waitpid(pid, 0)[1]
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        # Any timeout beyond a few decades is "never"; capped, it stays a float, and each poll
        # waits at most what poll(2)'s int milliseconds can say (the loop polls again).
        deadline = time.monotonic() + min(timeout, _LONGEST)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(min(left * 1000, _POLL_MAX_MS)):
                if time.monotonic() >= deadline:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    return None
                continue
            return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        raise HookError(errno.ECHILD) from None
    finally:
        os.close(pidfd)
