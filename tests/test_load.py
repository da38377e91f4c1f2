"""Load: many containers through their whole lifecycle from concurrent callers, many alive at
once, many execs into one, and racing calls on one id. Nothing may fail, crash or leak.

CI runs a bounded version; `make load` runs the issue's full numbers (PYRUNC_LOAD=full):
500 lifecycles by 8 callers, 100 long-running containers, 50 parallel execs, 20 race rounds.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import Runtime, one_line_error, open_fds

pytestmark = pytest.mark.kernel

FULL = os.environ.get("PYRUNC_LOAD") == "full"
LIFECYCLES = int(os.environ.get("PYRUNC_LOAD_LIFECYCLES", "500" if FULL else "80"))
CALLERS = 8
LONG_RUNNING = int(os.environ.get("PYRUNC_LOAD_LONG", "100" if FULL else "30"))
EXECS = 50
RACE_ROUNDS = 20 if FULL else 4


def call(rt: Runtime, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Output into files: an init inherits create's stdio and would hold a pipe open."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = rt(*args, capture_output=False, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                  timeout=timeout)
        out.seek(0)
        err.seek(0)
        proc.stdout, proc.stderr = out.read(), err.read()
    return proc


def must(rt: Runtime, *args: str) -> subprocess.CompletedProcess:
    proc = call(rt, *args)
    if proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}: {proc.stderr!r}")
    return proc


def clean_error(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.decode()
    assert "Traceback" not in err and "internal error" not in err, err
    return one_line_error(err)


def wait_stopped(rt: Runtime, cid: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = json.loads(must(rt, "state", cid).stdout)
        if st["status"] == "stopped":
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"{cid} still {st['status']} after {timeout}s")
        time.sleep(0.05)


def write_config(bundle, args: list[str]) -> str:
    cfg = bundle.edit()
    cfg["process"]["args"] = args
    bundle.write()
    return str(bundle.path)


def report(name: str, **numbers: object) -> None:
    """One line per load test, for README's reliability table (printed with -s)."""
    print(f"\nLOAD {name}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


def test_lifecycles_from_concurrent_callers(pyrunc, bundle):
    path = write_config(bundle, ["true"])
    failures: list[str] = []

    def lifecycle(i: int) -> None:
        cid = pyrunc.new_id(f"l{i}")
        try:
            must(pyrunc, "create", "--bundle", path, cid)
            must(pyrunc, "start", cid)
            wait_stopped(pyrunc, cid)
            must(pyrunc, "delete", cid)
        except AssertionError as exc:
            failures.append(str(exc))

    started = time.monotonic()
    with ThreadPoolExecutor(CALLERS) as pool:
        list(pool.map(lifecycle, range(LIFECYCLES)))
    elapsed = time.monotonic() - started
    report("lifecycles", containers=LIFECYCLES, callers=CALLERS, failures=len(failures),
           seconds=round(elapsed, 1))
    assert failures == []
    assert list(pyrunc.root.iterdir()) == []


def test_many_long_running_then_list_and_force_delete(pyrunc, bundle):
    """Half under pyrunc-shim (run -d), half plain create/start: list sees every one running,
    each shim holds only its stdio, and delete --force of all leaves nothing."""
    path = write_config(bundle, ["sleep", "1000"])
    ids = [pyrunc.new_id(f"r{i}") for i in range(LONG_RUNNING)]

    def bring_up(item: tuple[int, str]) -> None:
        i, cid = item
        if i % 2:
            must(pyrunc, "run", "-d", "--bundle", path, cid)
        else:
            must(pyrunc, "create", "--bundle", path, cid)
            must(pyrunc, "start", cid)

    with ThreadPoolExecutor(CALLERS) as pool:
        list(pool.map(bring_up, enumerate(ids)))
    listed = json.loads(must(pyrunc, "list", "--format", "json").stdout)
    assert sorted(c["id"] for c in listed) == sorted(ids)
    assert {c["status"] for c in listed} == {"running"}
    table = must(pyrunc, "list").stdout.decode().splitlines()
    assert len(table) == LONG_RUNNING + 1
    shim_fds = {}
    for cid in ids[1::2]:
        shim = json.loads((pyrunc.root / cid / "state.json").read_text())["shim"]["pid"]
        shim_fds[cid] = sorted(open_fds(shim))
    assert all(fds == ["0", "1", "2"] for fds in shim_fds.values()), shim_fds
    with ThreadPoolExecutor(CALLERS) as pool:
        list(pool.map(lambda cid: must(pyrunc, "delete", "--force", cid), ids))
    assert json.loads(must(pyrunc, "list", "--format", "json").stdout) == []
    report("long-running", containers=LONG_RUNNING, listed=len(listed), shims=len(shim_fds),
           shim_fds=3)


def test_parallel_execs_into_one_container(pyrunc, bundle, tmp_path):
    path = write_config(bundle, ["sleep", "1000"])
    cid = pyrunc.new_id()
    must(pyrunc, "run", "-d", "--bundle", path, cid)
    procs = []
    bad = []
    with contextlib.ExitStack() as outputs:
        for i in range(EXECS):
            out = outputs.enter_context(open(tmp_path / f"exec{i}", "w+b"))
            procs.append((i, out, subprocess.Popen(
                [pyrunc.binary, "--root", str(pyrunc.root), "exec", cid, "sh", "-c",
                 f"echo {i}; exit {i % 7}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)))
        for i, out, proc in procs:
            code = proc.wait(timeout=300)
            out.seek(0)
            text = out.read().decode()
            if code != i % 7 or text != f"{i}\n":
                bad.append((i, code, text))
    assert bad == []
    assert json.loads(must(pyrunc, "state", cid).stdout)["status"] == "running"
    must(pyrunc, "delete", "--force", cid)
    report("execs", parallel=EXECS, failures=len(bad))


def test_racing_creates_of_one_id(pyrunc, bundle):
    """mkdir decides: exactly one create wins, every other one says so in one line."""
    path = write_config(bundle, ["sleep", "1000"])
    for _ in range(RACE_ROUNDS):
        cid = pyrunc.new_id("dup")
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _, cid=cid: call(pyrunc, "create", "--bundle", path, cid),
                                    range(4)))
        winners = [r for r in results if r.returncode == 0]
        assert len(winners) == 1, [r.stderr for r in results]
        for r in results:
            if r.returncode:
                assert clean_error(r) == f"pyrunc: container with id exists: {cid}"
        assert json.loads(must(pyrunc, "state", cid).stdout)["status"] == "created"
        must(pyrunc, "delete", "--force", cid)
    report("racing creates", rounds=RACE_ROUNDS, callers=4)


RACERS = [("kill", "KILL"), ("delete", "--force"), ("state",), ("kill", "TERM"), ("delete",),
          ("state",), ("pause",), ("resume",), ("kill", "--all", "KILL"), ("start",)]


def test_kill_delete_state_racing_on_one_id(pyrunc, bundle):
    """No traceback, every failure one line, the state file always whole, and no stuck lock:
    once the dust settles the id can be created, started and deleted again at once."""
    path = write_config(bundle, ["sleep", "1000"])
    outcomes: dict[str, int] = {}
    for round_ in range(RACE_ROUNDS):
        cid = pyrunc.new_id("race")
        if round_ % 2:
            must(pyrunc, "run", "-d", "--bundle", path, cid)
        else:
            must(pyrunc, "create", "--bundle", path, cid)
            must(pyrunc, "start", cid)

        def racer(args: tuple[str, ...], cid: str = cid) -> subprocess.CompletedProcess:
            cmd, *rest = args
            return call(pyrunc, cmd, *rest[:-1], cid, *rest[-1:]) if cmd == "kill" else \
                call(pyrunc, cmd, *rest, cid)

        with ThreadPoolExecutor(len(RACERS)) as pool:
            results = list(pool.map(racer, RACERS))
        for args, r in zip(RACERS, results):
            key = " ".join(args) + (" ok" if r.returncode == 0 else " failed")
            outcomes[key] = outcomes.get(key, 0) + 1
            if r.returncode:
                clean_error(r)
        state_file = pyrunc.root / cid / "state.json"
        if state_file.exists():
            json.loads(state_file.read_text())  # whole, never half-written
        must(pyrunc, "delete", "--force", cid)
        assert not (pyrunc.root / cid).exists()
        must(pyrunc, "create", "--bundle", path, cid)  # the lock is free: no stuck holder
        must(pyrunc, "delete", "--force", cid)
    report("racing kill/delete/state", rounds=RACE_ROUNDS, racers=len(RACERS),
           outcomes=json.dumps(dict(sorted(outcomes.items()))))
