#!/usr/bin/python3
"""Side-by-side benchmark of pyrunc, runc and crun on the same busybox bundles.

Run as root: `/usr/bin/python3 bench/bench.py [--pyrunc P] [--runc P] [--crun P] [--rounds N]
[--seconds S] [--json OUT] [--only op1,op2]`.  See bench/README.md for what is measured and how.
Targets are reported as PASS/FAIL, never asserted: the exit status is 0 unless the bench itself broke.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import datetime
import itertools
import json
import math
import os
import platform
import select
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
TIMEOUT = 10.0            # seconds before a hung runtime call is SIGKILLed and counted as an error
TIMED_OUT = -1000         # the exit code timed() reports for a call it had to kill
MAX_STRIKES = 3           # consecutive failures after which a runtime sits out the rest of a group
CGROUP_CONTROLLERS = "/sys/fs/cgroup/unified/cgroup.controllers"
BUSYBOX_APPLETS = ["sh", "true", "false", "sleep", "cat", "ls", "echo", "ps", "env", "id"]

# op -> (label, unit, better): the table rows, in print order.
OPS: dict[str, tuple[str, str, str]] = {
    "run": ("run /bin/true", "ms", "low"),
    "cycle": ("create+start+wait+delete", "ms", "low"),
    "cycle.create": ("  create", "ms", "low"),
    "cycle.start": ("  start", "ms", "low"),
    "cycle.wait": ("  wait for exit", "ms", "low"),
    "cycle.delete": ("  delete (exited)", "ms", "low"),
    "exec": ("exec /bin/true", "ms", "low"),
    "state": ("state", "ms", "low"),
    "floor": ("  interpreter alone (floor)", "ms", "low"),
    "list": ("list (1 container)", "ms", "low"),
    "kill": ("kill KILL (running)", "ms", "low"),
    "delete": ("delete (killed, reaped)", "ms", "low"),
    "delete-force": ("delete --force (running)", "ms", "low"),
    "rss.run": ("peak RSS of run (MB)", "MB", "low"),
    "rss.created": ("init RSS after create (MB)", "MB", "low"),
    "shim.rss": ("pyrunc-shim RSS (MB)", "MB", "low"),
    "cps.1": ("containers/s, 1 loop", "/s", "high"),
    "cps.2": ("containers/s, 2 loops", "/s", "high"),
}
# --only name -> ops produced by that group (kill and delete share one group).
GROUPS: dict[str, list[str]] = {
    "run": ["run"], "cycle": ["cycle", "cycle.create", "cycle.start", "cycle.wait", "cycle.delete"],
    "exec": ["exec"], "state": ["state", "floor"], "list": ["list"], "kill": ["kill", "delete"],
    "delete": ["kill", "delete"], "delete-force": ["delete-force"], "rss": ["rss.run", "rss.created"],
    "shim": ["shim.rss"], "throughput": ["cps.1", "cps.2"],
}
# Rows measured for pyrunc only, whose ratios are taken against another row's runc and crun.
RATIO_BASE = {"floor": "state"}
FLOOR_CODE = "import posix; posix._exit(0)"   # what pyrunc's boot does last, with nothing before
# (description, op, limit as a multiple of runc's median)
TARGETS = [("run <= 1.0x runc", "run", 1.0), ("create+start+wait+delete <= 1.0x runc", "cycle", 1.0),
           ("exec <= 1.0x runc", "exec", 1.0), ("state <= 2.0x runc", "state", 2.0),
           ("kill <= 2.0x runc", "kill", 2.0), ("delete <= 2.0x runc", "delete", 2.0),
           ("init RSS between create and start <= runc", "rss.created", 1.0),
           ("containers/s, 1 loop >= runc", "cps.1", 1.0), ("containers/s, 2 loops >= runc", "cps.2", 1.0)]

libc = ctypes.CDLL(None, use_errno=True)
DEVNULL = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
IN_FLIGHT: set[int] = set()   # runtime processes spawned and not yet waited for (for Ctrl-C cleanup)


class BenchError(Exception):
    """A runtime call failed; the message is one line meant for the report."""


@dataclass
class Runtime:
    name: str
    path: str
    root: str = ""
    version: str = ""
    error: str | None = None                       # set when the runtime is unavailable
    ids: set[str] = field(default_factory=set)     # containers that may still exist

    def argv(self, *args: str) -> list[str]:
        return [self.path, "--root", self.root, *args]


@dataclass
class Series:
    values: list[float] = field(default_factory=list)
    errors: int = 0
    strikes: int = 0
    first_error: str | None = None
    count: int = 0          # throughput only: containers run
    elapsed: float = 0.0    # throughput only: seconds spent


# ---------------------------------------------------------------- processes

def read(path: str, errors: str | None = None) -> str:
    """A whole small file (/proc, a result), closed at once rather than whenever GC runs."""
    with open(path, errors=errors) as f:
        return f.read()


def libc_call(name: str, *args: object) -> None:
    """Call a libc function returning -1/errno, turning failures into OSError."""
    if getattr(libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


def spawn(argv: list[str], out: int = DEVNULL, err: int = DEVNULL, timeout: float = TIMEOUT) -> int:
    """posix_spawn argv with stdin from /dev/null and wait for it; returns the exit code.

    Children get their own process group so a Ctrl-C reaches only the bench, which then
    cleans up in order instead of leaving runtimes killed half-way through an operation."""
    actions = [(os.POSIX_SPAWN_DUP2, DEVNULL, 0), (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, err, 2)]
    pid = os.posix_spawn(argv[0], argv, ENV, file_actions=actions, setpgroup=0)
    IN_FLIGHT.add(pid)
    if not wait_pidfd(os.pidfd_open(pid), timeout):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)   # the whole group: a wrapper script's children too
        os.waitpid(pid, 0)
        IN_FLIGHT.discard(pid)
        raise BenchError(f"timed out after {timeout:.0f}s: {' '.join(argv)}")
    _, status = os.waitpid(pid, 0)
    IN_FLIGHT.discard(pid)
    return os.waitstatus_to_exitcode(status)


def timed(argv: list[str]) -> tuple[float, int]:
    """Wall time in ms of one runtime call, process start included (that is the point)."""
    t0 = time.perf_counter_ns()
    try:
        rc = spawn(argv)
    except BenchError:
        rc = TIMED_OUT
    return (time.perf_counter_ns() - t0) / 1e6, rc


def describe_rc(rc: int) -> str:
    return f"timed out after {TIMEOUT:.0f}s" if rc == TIMED_OUT else f"exit status {rc}"


def wait_pidfd(pidfd: int, timeout: float) -> bool:
    """Poll a pidfd until its process exits; works for children and non-children alike."""
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    finally:
        os.close(pidfd)


def close_fd(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def reap_orphans() -> None:
    """Reap reparented container inits (we are a subreaper; this host's PID 1 reaps late)."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def vm_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------- host setup

def enter_private_mount_namespace(empty_file: str) -> str:
    """Give crun a host it accepts without changing anything outside this process.

    On a hybrid host (v1 controllers + cgroup2 at /sys/fs/cgroup/unified) crun refuses to run;
    an empty file bound over unified/cgroup.controllers in a private mount namespace hides the
    hybrid from all three runtimes alike.  Returns a line for the report."""
    libc_call("unshare", 0x00020000)                                         # CLONE_NEWNS
    libc_call("mount", None, b"/", None, ctypes.c_ulong(16384 | 262144), None)  # MS_REC|MS_PRIVATE
    fstypes = {line.split()[4]: line.split(" - ")[1].split()[0] for line in read("/proc/self/mountinfo").splitlines()}
    if fstypes.get("/sys/fs/cgroup") == "cgroup2" or fstypes.get("/sys/fs/cgroup/unified") != "cgroup2":
        return "cgroups: not hybrid, nothing masked"
    if not read(CGROUP_CONTROLLERS).strip():
        return "cgroups: hybrid, unified/cgroup.controllers already empty"
    with open(empty_file, "w"):
        pass
    libc_call("mount", empty_file.encode(), CGROUP_CONTROLLERS.encode(), None, ctypes.c_ulong(4096), None)
    return "cgroups: hybrid; empty file bound over unified/cgroup.controllers (private mount ns)"


def build_bundles(tmp: str, spec_tool: str) -> dict[str, str]:
    """One busybox rootfs and one bundle per process.args, configs derived from `runc spec`."""
    rootfs = os.path.join(tmp, "rootfs")
    for d in ("bin", "proc", "dev", "sys", "tmp", "etc", "run"):
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy2("/bin/busybox", os.path.join(rootfs, "bin/busybox"))
    for applet in BUSYBOX_APPLETS:
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    specdir = os.path.join(tmp, "spec")
    os.makedirs(specdir)
    import subprocess  # only here: the timed paths use posix_spawn
    subprocess.run([spec_tool, "spec"], cwd=specdir, check=True, env=ENV, capture_output=True)
    with open(os.path.join(specdir, "config.json")) as f:
        base = json.load(f)
    bundles = {}
    for name, args in (("true", ["/bin/true"]), ("sleep", ["/bin/sleep", "1000000"])):
        config = copy.deepcopy(base)
        config["process"]["terminal"] = False
        config["process"]["args"] = args
        config["root"]["path"] = rootfs   # root.readonly stays whatever `runc spec` gave
        bundles[name] = os.path.join(tmp, f"bundle-{name}")
        os.makedirs(bundles[name])
        with open(os.path.join(bundles[name], "config.json"), "w") as f:
            json.dump(config, f, indent=1)
    return bundles


def interpreter_floor_argv(launcher: str) -> list[str] | None:
    """The launcher's `#!` line (interpreter and flags) running FLOOR_CODE; None if the
    runtime is not a script (e.g. `--pyrunc /usr/sbin/runc` for calibration)."""
    try:
        with open(launcher, "rb") as f:
            first = f.readline(256).decode()
    except (OSError, UnicodeDecodeError):
        return None
    if not first.startswith("#!"):
        return None
    return [*first[2:].split(), "-c", FLOOR_CODE]


def bench_cgroup_dirs() -> set[str]:
    """Cgroup directories with 'bench' in their name, a few levels under each hierarchy."""
    found = set()
    for top in os.listdir("/sys/fs/cgroup"):
        base = os.path.join("/sys/fs/cgroup", top)
        for dirpath, dirnames, _ in os.walk(base):
            found.update(os.path.join(dirpath, d) for d in dirnames if "bench" in d)
            if dirpath.count("/") - base.count("/") >= 3:
                dirnames.clear()
    return found


def find_rss_launcher() -> list[str]:
    """A small fork+exec+wait4 helper.  Measuring from Python itself (even in a fresh fork) is
    wrong: execve() charges the old mm's RSS to the new program's maxrss, so a /bin/true spawned
    from this interpreter "peaks" at 10-60 MB.  GNU time forks from a ~1 MB process; busybox
    time (the fallback) vforks from its own ~5 MB, a floor below which nothing reads."""
    if os.path.exists("/usr/bin/time"):
        return ["/usr/bin/time"]
    return ["/bin/busybox", "time"]


# ---------------------------------------------------------------- the bench

@dataclass
class Container:
    """A container made by the bench: its init's pid (from --pid-file) and a pidfd to wait on it."""
    rt: Runtime
    cid: str
    pid: int | None = None
    pidfd: int | None = None
    gone: bool = False      # deleted by the runtime: nothing left to clean


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: str, runtimes: list[Runtime], bundles: dict[str, str]):
        self.args, self.tmp, self.runtimes, self.bundles = args, tmp, runtimes, bundles
        self.results: dict[str, dict[str, Series]] = {op: {rt.name: Series() for rt in runtimes} for op in OPS}
        self.prefix = f"bench{os.getpid()}"
        self.counter = 0
        self.lock = threading.Lock()
        self.rss_launcher = find_rss_launcher()

    # ---- helpers

    def new_id(self, rt: Runtime, op: str) -> str:
        with self.lock:
            self.counter += 1
            cid = f"{self.prefix}-{rt.name[:2]}-{op}-{self.counter}"
        rt.ids.add(cid)
        return cid

    def call(self, rt: Runtime, *args: str, timeout: float = TIMEOUT) -> str:
        """An untimed runtime call whose failure is worth a message: returns stdout or raises
        BenchError with stderr's first line.  Output goes to files, not pipes: a container's
        init inherits them and would keep a pipe open for ever."""
        out_path, err_path = os.path.join(self.tmp, "out"), os.path.join(self.tmp, "err")
        out = os.open(out_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        err = os.open(err_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            rc = spawn(rt.argv(*args), out, err, timeout)
        finally:
            os.close(out), os.close(err)
        if rc != 0:
            lines = [ln.strip() for ln in read(err_path, errors="replace").splitlines() if ln.strip()]
            raise BenchError(f"`{rt.name} {args[0]}` exit {rc}: {lines[0] if lines else '(no stderr)'}")
        return read(out_path, errors="replace")

    def record(self, op: str, rt: Runtime, value: float, rc: int, keep: bool) -> bool:
        """Keep a sample (unless warming up) or count the failure; True when the call worked."""
        s = self.results[op][rt.name]
        if rc == 0:
            s.strikes = 0
            if keep:
                s.values.append(value)
            return True
        self.fail(op, rt, BenchError(f"{describe_rc(rc)} ({op})"))
        return False

    def fail(self, op: str, rt: Runtime, error: Exception) -> None:
        s = self.results[op][rt.name]
        s.errors, s.strikes = s.errors + 1, s.strikes + 1
        s.first_error = s.first_error or str(error)

    def orders(self) -> list[list[Runtime]]:
        """Every order of the working runtimes, used in turn: each runtime runs first, and right
        after each other one, equally often.  (A plain rotation is not enough: a runtime's
        teardown, e.g. the kernel's asynchronous netns cleanup, slows whichever call comes next.)"""
        return [list(p) for p in itertools.permutations(rt for rt in self.runtimes if not rt.error)]

    def each_round(self, ops: list[str], body) -> None:
        """Call body(runtime, keep) for every runtime in each of one warm-up round and --rounds
        rounds, interleaved so drift hits all runtimes alike.  A runtime failing MAX_STRIKES
        times in a row sits out the rest of the group."""
        orders = self.orders()
        for i in range(self.args.rounds + 1):
            for rt in orders[i % len(orders)]:
                if all(self.results[op][rt.name].strikes < MAX_STRIKES for op in ops):
                    try:
                        body(rt, i > 0)
                    except BenchError as e:
                        self.fail(ops[0], rt, e)

    def wait_exit(self, c: Container, timeout: float = 10) -> None:
        """Wait for the container's init to exit and reap it if it is ours (it reparents to
        us, the subreaper); without a pid, poll `state` until it says stopped (or is deleted)."""
        if c.pidfd is not None:
            pidfd, c.pidfd = c.pidfd, None
            if not wait_pidfd(pidfd, timeout):
                raise BenchError(f"{c.rt.name}: init {c.pid} of {c.cid} did not exit")
            try:
                os.waitpid(c.pid, 0)
            except ChildProcessError:
                pass
            return
        deadline = time.monotonic() + timeout
        while not c.gone and json.loads(self.call(c.rt, "state", c.cid)).get("status") != "stopped":
            if time.monotonic() > deadline:
                raise BenchError(f"{c.rt.name}: {c.cid} never stopped")
            time.sleep(0.001)

    def dispose(self, c: Container) -> None:
        """Untimed `delete --force` unless already deleted, then wait for the init to go."""
        if not c.gone:
            try:
                spawn(c.rt.argv("delete", "--force", c.cid))
            except BenchError:
                pass
            c.gone = not os.path.exists(os.path.join(c.rt.root, c.cid))
        if c.gone:
            c.rt.ids.discard(c.cid)
        if c.pidfd is not None:
            try:
                self.wait_exit(c, timeout=5)
            except BenchError:
                close_fd(c.pidfd)

    def deleted(self, c: Container) -> None:
        c.gone = True
        c.rt.ids.discard(c.cid)

    def pid_file(self, cid: str) -> str:
        return os.path.join(self.tmp, f"{cid}.pid")

    def adopt(self, c: Container) -> None:
        """Read the init pid create wrote and open a pidfd on it (None when there is none)."""
        try:
            with open(self.pid_file(c.cid)) as f:
                c.pid = int(f.read().strip())
            c.pidfd = os.pidfd_open(c.pid)
        except (OSError, ValueError):
            pass

    @contextlib.contextmanager
    def container(self, rt: Runtime, op: str, start: bool = True):
        """An untimed create (+ start) of a `sleep` container, always disposed of afterwards."""
        c = Container(rt, self.new_id(rt, op))
        try:
            self.call(rt, "create", "--bundle", self.bundles["sleep"], "--pid-file", self.pid_file(c.cid), c.cid)
            self.adopt(c)
            if start:
                self.call(rt, "start", c.cid)
            yield c
        finally:
            self.dispose(c)

    # ---- operation groups

    def bench_run(self) -> None:
        def one(rt: Runtime, keep: bool) -> None:
            c = Container(rt, self.new_id(rt, "run"))
            ms, rc = timed(rt.argv("run", "--bundle", self.bundles["true"], c.cid))
            if self.record("run", rt, ms, rc, keep):
                self.deleted(c)
            self.dispose(c)
        self.each_round(["run"], one)

    def bench_cycle(self) -> None:
        def one(rt: Runtime, keep: bool) -> None:
            c = Container(rt, self.new_id(rt, "cycle"))
            try:
                t0 = time.perf_counter_ns()
                ms, rc = timed(rt.argv("create", "--bundle", self.bundles["true"], "--pid-file",
                                       self.pid_file(c.cid), c.cid))
                self.adopt(c)
                if not self.record("cycle.create", rt, ms, rc, keep):
                    return
                ms, rc = timed(rt.argv("start", c.cid))
                if not self.record("cycle.start", rt, ms, rc, keep):
                    return
                t1 = time.perf_counter_ns()
                self.wait_exit(c)
                self.record("cycle.wait", rt, (time.perf_counter_ns() - t1) / 1e6, 0, keep)
                ms, rc = timed(rt.argv("delete", c.cid))
                if self.record("cycle.delete", rt, ms, rc, keep):
                    self.deleted(c)
                    self.record("cycle", rt, (time.perf_counter_ns() - t0) / 1e6, 0, keep)
            finally:
                if not c.gone:
                    self.results["cycle"][rt.name].strikes += 1
                self.dispose(c)
        self.each_round(GROUPS["cycle"], one)

    def bench_on_running(self, op: str, args: list[str], after=None) -> None:
        """Time `RT <args>` (ID replaced) against one running `sleep` container per runtime;
        after(rt, keep), if given, follows each call in the same interleaved round."""
        with contextlib.ExitStack() as stack:
            running = {}
            for rt in (rt for rt in self.runtimes if not rt.error):
                try:
                    running[rt.name] = stack.enter_context(self.container(rt, op)).cid
                except BenchError as e:
                    self.fail(op, rt, e)
                    self.results[op][rt.name].strikes = MAX_STRIKES

            def one(rt: Runtime, keep: bool) -> None:
                argv = rt.argv(*[running[rt.name] if a == "ID" else a for a in args])
                ms, rc = timed(argv)
                if not self.record(op, rt, ms, rc, keep) and self.results[op][rt.name].errors == 1:
                    try:   # these calls are repeatable: rerun the first failure untimed for its message
                        self.call(rt, *argv[3:])
                    except BenchError as e:
                        self.results[op][rt.name].first_error = str(e)
                if after is not None:
                    after(rt, keep)
            self.each_round([op], one)

    def bench_exec(self) -> None:
        self.bench_on_running("exec", ["exec", "ID", "/bin/true"])

    def bench_state(self) -> None:
        """`state`, and right after pyrunc's, its interpreter alone: started as pyrunc's launcher
        starts it, running one statement that exits the way pyrunc exits (no teardown).  That is
        the least any `pyrunc` command can cost here, in the same round as runc's `state`."""
        floor = interpreter_floor_argv(self.args.pyrunc)

        def after(rt: Runtime, keep: bool) -> None:
            if rt.name == "pyrunc" and floor:
                ms, rc = timed(floor)
                self.record("floor", rt, ms, rc, keep)
        self.bench_on_running("state", ["state", "ID"], after)

    def bench_list(self) -> None:
        self.bench_on_running("list", ["list"])

    def bench_kill(self) -> None:
        """kill KILL of a running container (the wait is not timed), then delete it once reaped."""
        def one(rt: Runtime, keep: bool) -> None:
            with self.container(rt, "kill") as c:
                ms, rc = timed(rt.argv("kill", c.cid, "KILL"))
                if self.record("kill", rt, ms, rc, keep):
                    self.wait_exit(c)
                    ms, rc = timed(rt.argv("delete", c.cid))
                    if self.record("delete", rt, ms, rc, keep):
                        self.deleted(c)
        self.each_round(["kill", "delete"], one)

    def bench_delete_force(self) -> None:
        def one(rt: Runtime, keep: bool) -> None:
            with self.container(rt, "delf") as c:
                ms, rc = timed(rt.argv("delete", "--force", c.cid))
                if self.record("delete-force", rt, ms, rc, keep):
                    self.deleted(c)
                    self.wait_exit(c)
        self.each_round(["delete-force"], one)

    def bench_rss(self) -> None:
        """Peak RSS of a whole `run` (wait4 maxrss through a small launcher) and the VmRSS of
        the init blocked between create and start."""
        result = os.path.join(self.tmp, "maxrss")

        def one(rt: Runtime, keep: bool) -> None:
            c = Container(rt, self.new_id(rt, "rss"))
            rc = spawn([*self.rss_launcher, "-f", "%M", "-o", result,
                        *rt.argv("run", "--bundle", self.bundles["true"], c.cid)])
            words = read(result).split() if os.path.exists(result) else []
            kb = float(words[-1]) if words and words[-1].isdigit() else 0.0
            if self.record("rss.run", rt, kb / 1024, rc, keep):
                self.deleted(c)
            self.dispose(c)
            with self.container(rt, "rssc", start=False) as c:
                mb = vm_rss_mb(c.pid) if c.pid else None
                if mb is None:
                    self.fail("rss.created", rt, BenchError("no live init pid in the --pid-file after create"))
                else:
                    self.record("rss.created", rt, mb, 0, keep)
        self.each_round(["rss.run", "rss.created"], one)

    def bench_shim(self) -> None:
        """VmRSS of a process named pyrunc-shim that appears after `pyrunc run -d` (future work)."""
        rt = self.runtimes[0]
        for _ in range(0 if rt.error else min(3, self.args.rounds)):
            before = set(shim_pids())
            c = Container(rt, self.new_id(rt, "shim"))
            try:
                self.call(rt, "run", "-d", "--bundle", self.bundles["sleep"], "--pid-file", self.pid_file(c.cid), c.cid)
                self.adopt(c)
                for pid in set(shim_pids()) - before:
                    if (mb := vm_rss_mb(pid)) is not None:
                        self.results["shim.rss"][rt.name].values.append(mb)
            except BenchError as e:
                self.fail("shim.rss", rt, e)
                return
            finally:
                self.dispose(c)

    def bench_throughput(self) -> None:
        """Containers per second with `run /bin/true` in 1 and 2 loops, in 2 s slices that
        alternate between runtimes so load drift hits all of them alike."""
        slices = max(1, round(self.args.seconds / 2))
        for loops in (1, 2):
            op = f"cps.{loops}"
            orders = self.orders()
            for i in range(slices):
                for rt in orders[i % len(orders)]:
                    if self.results[op][rt.name].strikes < MAX_STRIKES:
                        self.run_loops(rt, op, loops, self.args.seconds / slices)
            reap_orphans()

    def run_loops(self, rt: Runtime, op: str, loops: int, seconds: float) -> None:
        """`loops` threads each running `run /bin/true` back to back for `seconds`."""
        s = self.results[op][rt.name]
        errors_before = s.errors
        stop = threading.Event()
        counts = [0] * loops

        def loop(n: int) -> None:
            while not stop.is_set():
                cid = self.new_id(rt, "cps")
                try:
                    rc = spawn(rt.argv("run", "--bundle", self.bundles["true"], cid))
                except BenchError:
                    rc = TIMED_OUT
                if rc == 0:
                    rt.ids.discard(cid)
                    counts[n] += 1
                else:
                    with self.lock:
                        s.errors += 1
                        s.first_error = s.first_error or f"{describe_rc(rc)} (run, {op})"
                    stop.set()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(loops)]
        for t in threads:
            t.start()
        try:
            stop.wait(seconds)
        finally:
            stop.set()
            for t in threads:
                t.join()
        elapsed = time.perf_counter() - t0
        s.strikes = s.strikes + 1 if s.errors > errors_before else 0
        s.count += sum(counts)
        s.elapsed += elapsed
        s.values.append(sum(counts) / elapsed)

    # ---- cleanup

    def cleanup(self) -> None:
        """Stop everything we started: in-flight runtime calls, then every container any
        runtime may still hold (delete --force), then reap whatever reparented to us."""
        for pid in list(IN_FLIGHT):
            try:
                if not wait_pidfd(os.pidfd_open(pid), 5):
                    os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        for rt in self.runtimes:
            if rt.error or not os.path.isdir(rt.root):
                continue
            for cid in rt.ids | {d for d in os.listdir(rt.root) if d.startswith(self.prefix)}:
                try:
                    spawn(rt.argv("delete", "--force", cid), timeout=10)
                except BenchError:
                    pass
        time.sleep(0.2)
        reap_orphans()


def shim_pids() -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                comm = read(f"/proc/{d}/comm")
                cmdline = read(f"/proc/{d}/cmdline", errors="replace")
            except OSError:
                continue
            if "pyrunc-shim" in comm or "pyrunc-shim" in cmdline:
                pids.append(int(d))
    return pids


def leftovers(tmp: str, prefix: str, cgroups_before: set[str]) -> list[str]:
    """What the bench left behind: cgroups, mounts, processes, files, a chowned /dev/null."""
    found = [f"cgroup {d}" for d in sorted(bench_cgroup_dirs() - cgroups_before)]
    for ns in ("self", "1"):
        found += [f"mount ({ns}) {ln.split()[4]}" for ln in read(f"/proc/{ns}/mountinfo").splitlines()
                  if tmp in ln.split()[4] or prefix in ln]
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            if (prefix in read(f"/proc/{d}/cgroup")
                    or tmp in read(f"/proc/{d}/cmdline", errors="replace")):
                found.append(f"process {d}: {read(f'/proc/{d}/comm').strip()}")
        except OSError:
            pass
    if os.path.exists(tmp):
        found.append(f"temp dir {tmp}")
    st = os.stat("/dev/null")
    if (st.st_uid, st.st_gid) != (0, 0):
        found.append(f"/dev/null owned by {st.st_uid}:{st.st_gid} (crun exec quirk?)")
    return found


# ---------------------------------------------------------------- report

def summary(op: str, s: Series) -> tuple[float, float | None] | None:
    if op.startswith("cps."):
        return (s.count / s.elapsed, None) if s.elapsed and s.count else None
    if not s.values:
        return None
    v = sorted(s.values)
    return statistics.median(v), v[max(0, math.ceil(0.9 * len(v)) - 1)]


def ratio(bench: Bench, op: str, other: str) -> float | None:
    base = RATIO_BASE.get(op, op)
    py, ot = summary(op, bench.results[op]["pyrunc"]), summary(base, bench.results[base][other])
    return py[0] / ot[0] if py and ot and ot[0] else None


def print_table(bench: Bench, ops: list[str]) -> None:
    names = [rt.name for rt in bench.runtimes]
    print(f"\n{'op':<28}" + "".join(f"{n + ' med/p90':>18}" for n in names) + f"{'py/runc':>9}{'py/crun':>9}")
    for op in ops:
        cells = []
        for rt in bench.runtimes:
            s = bench.results[op][rt.name]
            sm = summary(op, s)
            if rt.error:
                cells.append("unavailable")
            elif op in RATIO_BASE and rt.name != "pyrunc":
                cells.append("-")
            elif sm is None:
                cells.append(f"n/a ({s.errors} err)" if s.errors else "n/a")
            else:
                cells.append(f"{sm[0]:.1f}/{'-' if sm[1] is None else f'{sm[1]:.1f}'}"
                             + (f" ({s.errors}err)" if s.errors else ""))
        rats = [ratio(bench, op, n) for n in ("runc", "crun")]
        print(f"{OPS[op][0]:<28}" + "".join(f"{c:>18}" for c in cells)
              + "".join(f"{'-' if r is None else f'{r:.2f}':>9}" for r in rats))
    print("(times in ms, RSS in MB; ratios are of medians: < 1 is better, except containers/s)")


def evaluate_targets(bench: Bench, ops: list[str]) -> list[dict]:
    out = []
    for text, op, limit in TARGETS:
        if op not in ops:
            continue
        r = ratio(bench, op, "runc")
        if r is None:
            status = "n/a"
        elif OPS[op][2] == "high":
            status = "PASS" if r >= limit else "FAIL"
        else:
            status = "PASS" if r <= limit else "FAIL"
        out.append({"target": text, "op": op, "ratio": r, "status": status})
        note = f"({r:.2f}x runc)" if r is not None else "(pyrunc unavailable)" if bench.runtimes[0].error else "(no data: see errors)"
        print(f"  {status:<5} {text:<45} {note}")
    return out


def first_line(argv: list[str]) -> str:
    import subprocess
    p = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=TIMEOUT)
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    if p.returncode != 0:
        raise BenchError(f"`{' '.join(argv)}` exit {p.returncode}: {lines[0] if lines else ''}")
    return lines[0] if lines else ""


def smoke_test(bench: Bench, rt: Runtime) -> None:
    """A runtime that cannot print its version or run /bin/true is reported unavailable."""
    try:
        if not os.access(rt.path, os.X_OK):
            raise BenchError(f"not found or not executable: {rt.path}")
        rt.version = first_line([rt.path, "--version"])
        cid = bench.new_id(rt, "smoke")
        bench.call(rt, "run", "--bundle", bench.bundles["true"], cid)
        rt.ids.discard(cid)
    except (BenchError, OSError, ValueError) as e:
        rt.error = str(e).splitlines()[0] if str(e) else type(e).__name__


def parse_args() -> argparse.Namespace:
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pyrunc", default=os.environ.get("PYRUNC", "/usr/local/bin/pyrunc"))
    p.add_argument("--runc", default="/usr/sbin/runc")
    p.add_argument("--crun", default="/usr/bin/crun")
    p.add_argument("--rounds", type=int, default=90, help="timed rounds per operation (after 1 warm-up)")
    p.add_argument("--seconds", type=float, default=20, help="duration of each containers/s test per runtime")
    p.add_argument("--json", default=os.path.join(here, "results.json"))
    p.add_argument("--only", default=",".join(GROUPS), help="comma-separated: " + ",".join(GROUPS))
    args = p.parse_args()
    args.only = [g.strip() for g in args.only.split(",") if g.strip()]
    if args.rounds < 1 or args.seconds <= 0:
        p.error("--rounds must be >= 1 and --seconds > 0")
    if unknown := [g for g in args.only if g not in GROUPS]:
        p.error(f"unknown --only names: {','.join(unknown)}")
    return args


def print_header(bench: Bench, load_before: str, ns_note: str) -> None:
    """What the machine and the runtimes were, so a reader can judge the numbers."""
    args = bench.args
    print(f"date     {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"kernel   {platform.release()}   cpus {os.cpu_count()}   python {platform.python_version()}")
    print(f"loadavg  before {load_before}")
    print(ns_note)
    print(f"rounds   {args.rounds} (+1 warm-up, interleaved)   throughput {args.seconds:g}s per runtime per test")
    print(f"peak RSS launcher: {' '.join(bench.rss_launcher)}")
    for rt in bench.runtimes:
        print(f"{rt.name:<7}  {rt.path}: " + (f"UNAVAILABLE: {rt.error}" if rt.error else rt.version))


def print_results(bench: Bench, ops: list[str]) -> list[dict]:
    print_table(bench, ops)
    for op in ops:
        for name, s in bench.results[op].items():
            if s.first_error:
                print(f"  error: {name} {op}: {s.first_error}")
    if "shim.rss" in ops and not bench.results["shim.rss"]["pyrunc"].values:
        print("  pyrunc-shim: n/a (no pyrunc-shim process after `pyrunc run -d`)")
    print("\ntargets (pyrunc vs runc, reported, not asserted):")
    targets = evaluate_targets(bench, ops)
    floor = summary("floor", bench.results["floor"]["pyrunc"]) if "floor" in ops else None
    for op in ("state", "kill", "delete"):
        base = summary(op, bench.results[op]["runc"]) if floor and op in ops else None
        if base:   # what the 2.0x targets leave to pyrunc's own code, after its interpreter's start
            r = floor[0] / base[0]
            print(f"  floor {'interpreter alone vs runc ' + op:<45} ({r:.2f}x runc"
                  + (": out of reach of any code run by this interpreter)" if r > 2.0 else
                     f", leaving {2.0 * base[0] - floor[0]:.1f} ms for pyrunc's own work)"))
    return targets


def json_report(bench: Bench, ops: list[str], header: dict, targets: list[dict]) -> dict:
    def series(op: str, s: Series) -> dict:
        sm = summary(op, s)
        extra = {"count": s.count, "elapsed_s": s.elapsed} if op.startswith("cps.") else {}
        return {"median": sm and sm[0], "p90": sm and sm[1], "samples": s.values,
                "errors": s.errors, "first_error": s.first_error, **extra}
    return {
        **header, "rounds": bench.args.rounds, "seconds": bench.args.seconds, "rss_launcher": bench.rss_launcher,
        "runtimes": {rt.name: {"path": rt.path, "version": rt.version, "available": not rt.error,
                               "error": rt.error} for rt in bench.runtimes},
        "ops": {op: {"label": OPS[op][0].strip(), "unit": OPS[op][1], "better": OPS[op][2],
                     "ratio_runc": ratio(bench, op, "runc"), "ratio_crun": ratio(bench, op, "crun"),
                     "runtimes": {n: series(op, s) for n, s in bench.results[op].items()}} for op in ops},
        "targets": targets,
    }


def run_groups(bench: Bench) -> list[str]:
    """Run the selected operation groups one after the other; returns the ops measured."""
    groups = list(dict.fromkeys("kill" if g == "delete" else g for g in bench.args.only))
    for group in groups:
        print(f"[bench] {group} ...", file=sys.stderr, flush=True)
        try:
            getattr(bench, "bench_" + group.replace("-", "_"))()
        except BenchError as e:   # one broken group must not stop the others
            print(f"[bench] {group} aborted: {e}", file=sys.stderr)
        reap_orphans()
    return [op for op in OPS if any(op in GROUPS[g] for g in groups)]


def remove_temp_dir(tmp: str) -> None:
    """rmtree crosses mount points: never run it while anything is still mounted below tmp."""
    if any(ln.split()[4].startswith(tmp + "/") for ln in read("/proc/self/mountinfo").splitlines()):
        print(f"WARNING: mounts left under {tmp}: not removing it", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    args = parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.py: must run as root")
    if not os.path.exists("/bin/busybox"):
        sys.exit("bench.py: /bin/busybox missing (apt-get install busybox-static)")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):   # even if started with SIGINT ignored
        signal.signal(sig, signal.default_int_handler)
    libc_call("prctl", 36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: detached inits reparent to us
    tmp = tempfile.mkdtemp(prefix="pyrunc-bench-")
    cgroups_before = bench_cgroup_dirs()
    runtimes = [Runtime("pyrunc", args.pyrunc), Runtime("runc", args.runc), Runtime("crun", args.crun)]
    for rt in runtimes:
        rt.root = os.path.join(tmp, f"state-{rt.name}")
        os.makedirs(rt.root, mode=0o700)
    bench, report = None, None
    try:
        ns_note = enter_private_mount_namespace(os.path.join(tmp, "empty"))
        spec_tool = next((p for p in (args.runc, args.crun) if os.access(p, os.X_OK)), None)
        if spec_tool is None:
            raise SystemExit("bench.py: need runc (or crun) to generate config.json with `spec`")
        bench = Bench(args, tmp, runtimes, build_bundles(tmp, spec_tool))
        load_before = read("/proc/loadavg").strip()
        for rt in runtimes:
            smoke_test(bench, rt)
        print_header(bench, load_before, ns_note)
        if all(rt.error for rt in runtimes):
            raise SystemExit("bench.py: no runtime works")
        ops = run_groups(bench)
        load_after = read("/proc/loadavg").strip()
        print(f"loadavg  after  {load_after}")
        targets = print_results(bench, ops)
        header = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                  "kernel": platform.release(), "cpus": os.cpu_count(), "cgroups": ns_note,
                  "loadavg_before": load_before, "loadavg_after": load_after}
        report = json_report(bench, ops, header, targets)
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):   # let the cleanup finish
            signal.signal(sig, signal.SIG_IGN)
        if bench:
            bench.cleanup()
        remove_temp_dir(tmp)
    left = leftovers(tmp, f"bench{os.getpid()}", cgroups_before)
    for item in left:
        print(f"WARNING: left behind: {item}")
    if report is None:
        return 130
    report["leftovers"] = left
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    print(f"\nJSON: {os.path.abspath(args.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
