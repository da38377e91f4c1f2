"""Containers that no engine watches: started under pyrunc-shim, which stays their parent.

`pyrunc run -d` (and `create --shim`) fork a process that detaches (setsid), becomes a child
subreaper, creates (and starts) the container with its stdout and stderr going to
<state dir>/output.log, reports success or the error to the waiting CLI over a pipe, and then
execs pyrunc-shim, a small interpreter that only waits for the init and records its exit.
Engines never take this path: under conmon or containerd's shim, create and `run` behave as runc.
"""

from __future__ import annotations

import os
import sys

from pyrunc import create, jsonlite, lifecycle_start, linux, state
from pyrunc.errors import PyruncError


def shim_binary() -> str:
    """pyrunc-shim beside the pyrunc launcher that is running (make install puts both)."""
    here = os.path.dirname(os.path.abspath(sys.argv[0]))
    candidate = os.path.join(here, "pyrunc-shim")
    if os.path.exists(candidate):
        return candidate
    # A source checkout: run the module as a script with the same interpreter.
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim.py")


def launch(root: str, container_id: str, opts: create.CreateOptions, start: bool) -> int:
    shim = shim_binary()
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(report_r)
        _become_shim(root, container_id, opts, start, report_w, shim)  # never returns
    os.close(report_w)
    with os.fdopen(report_r, "rb") as report:
        message = report.read().decode()
    os.waitpid(pid, os.WNOHANG)
    if message != "ok":
        raise PyruncError(message or "pyrunc-shim died before reporting")
    return 0


def _become_shim(root: str, container_id: str, opts: create.CreateOptions, start: bool,
                 report_w: int, shim: str) -> None:
    try:
        os.setsid()
        linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.close(null)
        # The container writes its output straight into the log (no relay process): open it
        # under a temporary name before create, and move it into the state dir after.
        state.check_id(container_id)
        os.makedirs(root, 0o711, exist_ok=True)
        pending = os.path.join(root, f".{container_id}.output.log.{os.getpid()}")
        log = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        saved = os.dup(2)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        try:
            ctr = create.create(root, container_id, opts)
        except BaseException:
            os.unlink(pending)
            raise
        finally:
            os.dup2(saved, 2)  # our own errors still reach the pipe's reader via the report
            os.close(saved)
        os.rename(pending, ctr.path(state.OUTPUT_LOG))
        ctr.load(lock=True)
        ctr.data["shim"] = {"pid": os.getpid(),
                            "start": (state.proc_start_time(os.getpid()) or (0, ""))[0]}
        _rewrite_state(ctr)
        ctr.unlock()
        if start:
            lifecycle_start.start(root, container_id)
        os.write(report_w, b"ok")
        os.close(report_w)
        null = os.open("/dev/null", os.O_WRONLY)
        os.dup2(null, 2)  # the shim outlives the terminal that started it
        os.close(null)
        args = [shim, ctr.dir, str(ctr.pid)]
        if shim.endswith(".py"):
            os.execv(sys.executable, [sys.executable, "-I", "-S", *args])
        os.execv(shim, args)
    except BaseException as exc:  # noqa: BLE001 - the CLI waiting on the pipe shows it
        try:
            os.write(report_w, str(exc).encode() or type(exc).__name__.encode())
        finally:
            os._exit(1)
    os._exit(1)


def _rewrite_state(ctr: state.Container) -> None:
    """ctr.save() without its rename over state.json: that rename makes ext4 write the new
    file back at once (auto_da_alloc), and delete's unlink of it then waits for a discard of
    its block (0.3-1 ms here). An exchange and an unlink of the old one instead
    (create.replace_state)."""
    path = ctr.path(state.STATE_FILE)
    create.drop_file(create.replace_state(state.stage(path, jsonlite.dumps(ctr.data).encode()),
                                          path))
