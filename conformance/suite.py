#!/usr/bin/python3
"""Our own runtime-spec conformance suite, run from outside against any OCI runtime binary.

One check per MUST/SHOULD of runtime.md, runtime-linux.md, config.md and config-linux.md that an
outsider can observe (the CLI's exit status, `state`, what a process inside the container sees,
what is left on the host). Each check names its section and paraphrases the requirement.

    RUNTIME=/usr/sbin/runc python3 conformance/suite.py        (or: make conformance)

Needs root, Debian's busybox-static (the rootfs is built from /bin/busybox) and util-linux
`unshare`. Every runtime gets a private --root, so nothing touches other users' containers.
The result table has one row per requirement: pass, FAIL, skip (the host cannot show it), or
conflict (the requirement contradicts the runtime-tools suite or an engine-visible behaviour
that runtime is expected to keep; the reason says which and what the runtime does).
Exit status: 1 if any check FAILs, else 0. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


class CheckFailed(Exception):
    """The runtime did not meet the requirement; the message is the reason."""


class Skip(Exception):
    """This host cannot show whether the requirement is met."""


class Conflict(Exception):
    """Not met, for a reason recorded in the check (e.g. runtime-tools expects the opposite)."""


def expect(cond: object, reason: str) -> None:
    if not cond:
        raise CheckFailed(reason)


CHECKS: list[tuple[str, str, str, object]] = []


def req(section: str, level: str, text: str):
    """Register a check: section is the spec file#anchor, text paraphrases the requirement."""
    def wrap(fn):
        CHECKS.append((section, level, text, fn))
        return fn
    return wrap


# --- bundles and the runtime under test ------------------------------------------------------

def base_config(args: list[str]) -> dict:
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": args,
                    "env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"], "cwd": "/",
                    "capabilities": {k: list(caps) for k in ("bounding", "effective",
                                                              "permitted")},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                    "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "conformance",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}]},
                  "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]},
    }


class Ctx:
    """One check's bundles, container ids and runtime calls; close() removes all of them."""

    def __init__(self, runtime: str, root: Path, rootfs: Path, work: Path) -> None:
        self.runtime = runtime
        self.root = root
        self.rootfs_src = rootfs
        self.work = Path(tempfile.mkdtemp(dir=work))
        self.ids: list[str] = []
        self.cleanups: list = []

    # bundles
    def bundle(self, args: list[str], edit=None) -> Path:
        b = Path(tempfile.mkdtemp(dir=self.work, prefix="bundle-"))
        shutil.copytree(self.rootfs_src, b / "rootfs", symlinks=True)
        cfg = base_config(args)
        if edit is not None:
            edit(cfg)
        (b / "config.json").write_text(json.dumps(cfg, indent=1))
        if not any(n.get("type") == "mount" for n in (cfg.get("linux") or {}).get("namespaces")
                   or []):
            # No mount namespace: a runtime may leave the container's mounts in ours (runc
            # does); they must go before the bundle is removed.
            self.cleanups.append(lambda: unmount_below(b / "rootfs"))
        return b

    def new_id(self) -> str:
        cid = f"conf-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    # runtime calls
    def rt(self, *args: str, timeout: float = 30, stdout=subprocess.PIPE,
           stderr=subprocess.PIPE) -> subprocess.CompletedProcess:
        return subprocess.run([self.runtime, "--root", str(self.root), *args], env=ENV,
                              stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                              timeout=timeout)

    def create(self, bundle: Path, cid: str | None = None, check: bool = True
               ) -> tuple[str, subprocess.CompletedProcess]:
        """create with the container's stdout/stderr in files of the bundle (out, err)."""
        cid = cid or self.new_id()
        with open(bundle / "out", "ab") as out, open(bundle / "err", "ab") as err:
            p = self.rt("create", "--bundle", str(bundle), cid, stdout=out, stderr=err)
        if check and p.returncode != 0:
            raise CheckFailed(f"create failed: {self.text(bundle / 'err')[-300:]}")
        return cid, p

    def create_refused(self, bundle: Path, failure: str, leftover: str | None = None) -> str:
        """create of a bundle the runtime must refuse: `failure` if it exits 0, and with
        `leftover`, that if a container of the id exists afterwards. The id."""
        cid, p = self.create(bundle, check=False)
        expect(p.returncode != 0, failure)
        if leftover is not None:
            expect(self.state(cid) is None, leftover)
        return cid

    def run(self, args: list[str], edit=None, timeout: float = 30) -> tuple[int, str, str]:
        """create, start, wait for stopped, delete: (exit-ish rc, stdout, stderr)."""
        b = self.bundle(args, edit)
        cid, p = self.create(b, check=False)
        if p.returncode != 0:
            return p.returncode, self.text(b / "out"), self.text(b / "err")
        s = self.rt("start", cid)
        if s.returncode != 0:
            return s.returncode, self.text(b / "out"), s.stderr.decode(errors="replace")
        self.wait_status(cid, "stopped", timeout)
        self.rt("delete", cid)
        return 0, self.text(b / "out"), self.text(b / "err")

    def must_run(self, args: list[str], edit=None) -> str:
        rc, out, err = self.run(args, edit)
        if rc != 0:
            raise CheckFailed(f"container failed: {err.strip()[-300:]}")
        return out

    def state(self, cid: str) -> dict | None:
        p = self.rt("state", cid)
        if p.returncode != 0:
            return None
        try:
            return json.loads(p.stdout)
        except ValueError:
            raise CheckFailed(f"state output is not JSON: {p.stdout[:200]!r}") from None

    def wait_status(self, cid: str, status: str, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(cid)
            if st is not None and st.get("status") == status:
                return st
            if time.monotonic() > deadline:
                raise CheckFailed(f"container never became {status}: {st}")
            time.sleep(0.02)

    def wait_file(self, path: Path, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while not (path.exists() and path.stat().st_size):
            if time.monotonic() > deadline:
                raise CheckFailed(f"{path.name} never appeared")
            time.sleep(0.02)
        return path.read_text()

    @staticmethod
    def text(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def holder(self, *flags: str) -> int:
        """A sleeping process in new namespaces (unshare FLAGS), killed at close."""
        if shutil.which("unshare") is None:
            raise Skip("util-linux unshare is not installed")
        p = subprocess.Popen(["unshare", *flags, "sleep", "1000"])
        self.cleanups.append(lambda: (p.kill(), p.wait()))
        deadline = time.monotonic() + 10
        while Path(f"/proc/{p.pid}/comm").read_text().strip() != "sleep":
            if time.monotonic() > deadline or p.poll() is not None:
                raise Skip("unshare holder did not start")
            time.sleep(0.01)
        return p.pid

    def close(self) -> None:
        for cid in self.ids:
            try:
                if self.state(cid) is not None:
                    self.rt("kill", cid, "KILL")
                    self.rt("delete", "--force", cid)
            except (subprocess.TimeoutExpired, CheckFailed):
                pass
        for fn in self.cleanups:
            try:
                fn()
            except Exception:  # noqa: BLE001, S110 - cleanup is best effort, the next check goes on
                pass
        shutil.rmtree(self.work, ignore_errors=True)


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below path in our mount table."""
    p = str(path)
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f
                if ln.split()[4] == p or ln.split()[4].startswith(p + "/")]


def unmount_below(path: Path) -> None:
    for m in sorted(mounts_below(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], env=ENV, stderr=subprocess.DEVNULL)


def host_ns(name: str, pid: str | int = "self") -> str:
    return os.readlink(f"/proc/{pid}/ns/{name}")


def mountinfo_line(text: str, mountpoint: str) -> list[str]:
    for line in text.splitlines():
        f = line.split()
        if len(f) > 4 and f[4] == mountpoint:
            return f
    raise CheckFailed(f"{mountpoint} is not a mount point inside the container")


def hook(script: str, timeout: int | None = None) -> dict:
    h: dict = {"path": "/bin/sh", "args": ["sh", "-c", script]}
    if timeout is not None:
        h["timeout"] = timeout
    return h


def cgroup_dirs(pid: int) -> list[Path]:
    """The host directories of every cgroup a process is in (v1 and v2)."""
    out = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if ctrls == "":
            base = Path("/sys/fs/cgroup/unified")
            if not base.is_dir() or not (base / "cgroup.controllers").exists():
                base = Path("/sys/fs/cgroup")
        else:
            name = ctrls.replace("name=", "")
            base = Path("/sys/fs/cgroup") / name
            if not base.is_dir():
                base = Path("/sys/fs/cgroup") / ctrls.split(",")[0]
        d = base / path.lstrip("/")
        if path not in ("/", "") and d.is_dir():
            out.append(d)
    return out


# === runtime.md ================================================================================

@req("runtime.md#state", "MUST", "the state of a created container is JSON with ociVersion, id, "
     "status, pid and bundle, status one of the defined values")
def state_fields(c: Ctx) -> None:
    b = c.bundle(["sleep", "30"])
    cid, _ = c.create(b)
    st = c.state(cid)
    expect(st is not None, "state failed for a created container")
    for key, typ in (("ociVersion", str), ("id", str), ("status", str), ("bundle", str),
                     ("pid", int)):
        expect(isinstance(st.get(key), typ), f"{key} missing or not a {typ.__name__}: {st}")
    expect(st["status"] == "created", f"status {st['status']!r}, expected 'created'")
    expect(st["id"] == cid, f"id {st['id']!r} is not {cid!r}")
    expect(os.path.realpath(st["bundle"]) == os.path.realpath(b), f"bundle {st['bundle']!r}")
    expect(st["pid"] > 0 and Path(f"/proc/{st['pid']}").exists(), f"pid {st['pid']} not alive")


@req("runtime.md#state", "MUST", "the state's status follows the lifecycle: created, running, "
     "stopped")
def state_lifecycle(c: Ctx) -> None:
    b = c.bundle(["sleep", "30"])
    cid, _ = c.create(b)
    expect(c.state(cid)["status"] == "created", "not created after create")
    expect(c.rt("start", cid).returncode == 0, "start failed")
    c.wait_status(cid, "running")
    c.rt("kill", cid, "KILL")
    c.wait_status(cid, "stopped")


@req("runtime.md#query-state", "MUST", "state without a container id is an error")
def state_no_id(c: Ctx) -> None:
    expect(c.rt("state").returncode != 0, "state with no id exited 0")


@req("runtime.md#query-state", "MUST", "state of a container that does not exist is an error")
def state_missing(c: Ctx) -> None:
    expect(c.rt("state", c.new_id()).returncode != 0, "state of an unknown id exited 0")


@req("runtime.md#create", "MUST", "create without a container id is an error")
def create_no_id(c: Ctx) -> None:
    b = c.bundle(["true"])
    p = c.rt("create", "--bundle", str(b))
    expect(p.returncode != 0, "create with no id exited 0")


@req("runtime.md#create", "MUST", "create with an id already in use is an error, and no new "
     "container is created (the existing one is untouched)")
def create_duplicate(c: Ctx) -> None:
    b = c.bundle(["sleep", "30"])
    cid, _ = c.create(b)
    pid = c.state(cid)["pid"]
    b2 = c.bundle(["sleep", "30"])
    _, p = c.create(b2, cid, check=False)
    expect(p.returncode != 0, "second create with the same id exited 0")
    st = c.state(cid)
    expect(st and st["pid"] == pid and st["status"] == "created",
           f"the existing container changed: {st}")


@req("runtime.md#create", "MUST", "create with an invalid id (a path) is an error, and no "
     "container is created")
def create_invalid_id(c: Ctx) -> None:
    b = c.bundle(["true"])
    bad = f"../conf-{uuid.uuid4().hex[:6]}"
    _, p = c.create(b, bad, check=False)
    ok = p.returncode != 0
    if not ok:
        c.rt("delete", "--force", bad)
    expect(ok, f"create accepted the id {bad!r}")


@req("runtime.md#create", "MUST", "the user program is not run by create, only by start")
def create_not_run(c: Ctx) -> None:
    b = c.bundle(["sh", "-c", "echo ran > /ran"])
    cid, _ = c.create(b)
    time.sleep(0.2)
    expect(not (b / "rootfs" / "ran").exists(), "the program ran before start")
    expect(c.rt("start", cid).returncode == 0, "start failed")
    c.wait_file(b / "rootfs" / "ran")


@req("runtime.md#create", "MUST", "create applies the configuration except process (the "
     "container's namespaces exist before start)")
def create_applies_config(c: Ctx) -> None:
    b = c.bundle(["true"])
    cid, _ = c.create(b)
    pid = c.state(cid)["pid"]
    for name in ("uts", "ipc", "net", "mnt", "pid"):
        inside = os.readlink(f"/proc/{pid}/ns/{name}")
        expect(inside != host_ns(name), f"{name} namespace not created at create time")


@req("runtime.md#create", "MUST", "a property that cannot be applied is an error, and no "
     "container is created")
def create_unapplicable(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["mounts"].append({"destination": "/x", "type": "no-such-fs", "source": "none"})
    b = c.bundle(["true"], edit)
    c.create_refused(b, "create with an unknown filesystem type exited 0",
                     "a container exists after the failed create")


@req("runtime.md#lifecycle", "MUST", "changes to config.json after create do not affect the "
     "container")
def config_update_no_effect(c: Ctx) -> None:
    b = c.bundle(["echo", "original"])
    cid, _ = c.create(b)
    cfg = json.loads((b / "config.json").read_text())
    cfg["process"]["args"] = ["echo", "changed"]
    (b / "config.json").write_text(json.dumps(cfg))
    expect(c.rt("start", cid).returncode == 0, "start failed")
    c.wait_status(cid, "stopped")
    out = c.text(b / "out")
    expect(out.strip() == "original", f"the container printed {out.strip()!r}")


@req("runtime.md#start", "MUST", "start without a container id is an error")
def start_no_id(c: Ctx) -> None:
    expect(c.rt("start").returncode != 0, "start with no id exited 0")


@req("runtime.md#start", "MUST", "start of a container that is not created (unknown) is an "
     "error")
def start_missing(c: Ctx) -> None:
    expect(c.rt("start", c.new_id()).returncode != 0, "start of an unknown id exited 0")


@req("runtime.md#start", "MUST", "start of a running container is an error with no effect on "
     "it")
def start_running(c: Ctx) -> None:
    b = c.bundle(["sh", "-c", "echo started >> /count; sleep 30"])
    cid, _ = c.create(b)
    c.rt("start", cid)
    c.wait_file(b / "rootfs" / "count")
    pid = c.state(cid)["pid"]
    expect(c.rt("start", cid).returncode != 0, "second start exited 0")
    time.sleep(0.2)
    st = c.state(cid)
    expect(st["status"] == "running" and st["pid"] == pid, f"container changed: {st}")
    expect(c.text(b / "rootfs" / "count") == "started\n", "the program ran twice")


@req("runtime.md#start", "MUST", "start of a stopped container is an error with no effect on it")
def start_stopped(c: Ctx) -> None:
    b = c.bundle(["sh", "-c", "echo started >> /count"])
    cid, _ = c.create(b)
    c.rt("start", cid)
    c.wait_status(cid, "stopped")
    expect(c.rt("start", cid).returncode != 0, "start of a stopped container exited 0")
    time.sleep(0.2)
    expect(c.text(b / "rootfs" / "count") == "started\n", "the program ran again")
    expect(c.state(cid)["status"] == "stopped", "status changed")


@req("runtime.md#start", "MUST", "start runs the program given in process (args, env, cwd)")
def start_runs_process(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["process"]["env"].append("CONF_VAR=value-1")
        cfg["process"]["cwd"] = "/tmp"
    out = c.must_run(["sh", "-c", "echo $CONF_VAR $(pwd) \"$0\"", "arg zero"], edit)
    expect(out.strip() == "value-1 /tmp arg zero", f"the program printed {out.strip()!r}")


@req("runtime.md#start", "MUST", "start errors when process is not set (create or start fails)")
def start_without_process(c: Ctx) -> None:
    b = c.bundle(["true"], lambda cfg: cfg.pop("process"))
    cid, p = c.create(b, check=False)
    if p.returncode != 0:
        return
    expect(c.rt("start", cid).returncode != 0, "create and start both succeeded without process")


@req("runtime.md#kill", "MUST", "kill without a container id is an error")
def kill_no_id(c: Ctx) -> None:
    expect(c.rt("kill").returncode != 0, "kill with no id exited 0")


@req("runtime.md#kill", "MUST", "kill sends the given signal to the container process")
def kill_signal(c: Ctx) -> None:
    b = c.bundle(["sh", "-c", ("trap 'echo got > /got' USR1; echo ready > /ready; "
                               "while :; do sleep 0.05; done")])
    cid, _ = c.create(b)
    c.rt("start", cid)
    c.wait_file(b / "rootfs" / "ready")
    expect(c.rt("kill", cid, "USR1").returncode == 0, "kill USR1 failed")
    c.wait_file(b / "rootfs" / "got")
    expect(c.rt("kill", cid, "KILL").returncode == 0, "kill KILL failed")
    c.wait_status(cid, "stopped")


@req("runtime.md#kill", "MUST", "kill of a created container is allowed (only stopped ones "
     "are refused)")
def kill_created(c: Ctx) -> None:
    b = c.bundle(["sleep", "30"])
    cid, _ = c.create(b)
    p = c.rt("kill", cid, "KILL")
    expect(p.returncode == 0, f"kill of a created container failed: {p.stderr[-200:]!r}")
    c.wait_status(cid, "stopped")


@req("runtime.md#kill", "MUST", "kill of a stopped container is an error with no effect")
def kill_stopped(c: Ctx) -> None:
    b = c.bundle(["true"])
    cid, _ = c.create(b)
    c.rt("start", cid)
    c.wait_status(cid, "stopped")
    expect(c.rt("kill", cid, "KILL").returncode != 0, "kill of a stopped container exited 0")
    expect(c.state(cid)["status"] == "stopped", "status changed")


@req("runtime.md#delete", "MUST", "delete without a container id is an error")
def delete_no_id(c: Ctx) -> None:
    expect(c.rt("delete").returncode != 0, "delete with no id exited 0")


@req("runtime.md#delete", "MUST", "delete of a running container is an error with no effect")
def delete_running(c: Ctx) -> None:
    b = c.bundle(["sleep", "30"])
    cid, _ = c.create(b)
    c.rt("start", cid)
    c.wait_status(cid, "running")
    pid = c.state(cid)["pid"]
    expect(c.rt("delete", cid).returncode != 0, "delete of a running container exited 0")
    st = c.state(cid)
    expect(st and st["status"] == "running" and st["pid"] == pid, f"container changed: {st}")


@req("runtime.md#delete", "MUST", "delete of a created (not stopped) container is an error with "
     "no effect")
def delete_created(c: Ctx) -> None:
    b = c.bundle(["sh", "-c", "echo ran > /ran"])
    cid, _ = c.create(b)
    p = c.rt("delete", cid)
    st = c.state(cid)
    expect(p.returncode != 0, "delete of a created container exited 0 "
           f"(container {'still there' if st else 'gone'})")
    expect(st and st["status"] == "created", f"container changed: {st}")
    expect(c.rt("start", cid).returncode == 0, "the container could not be started afterwards")
    c.wait_file(b / "rootfs" / "ran")


@req("runtime.md#delete", "MUST", "delete removes what create made: the container, its "
     "cgroups; the id can be used again")
def delete_resources(c: Ctx) -> None:
    b = c.bundle(["true"], lambda cfg: cfg["linux"].update(
        cgroupsPath=f"/conf-del-{uuid.uuid4().hex[:8]}"))
    cid, _ = c.create(b)
    pid = c.state(cid)["pid"]
    dirs = cgroup_dirs(pid)
    expect(dirs, "the container process is in no cgroup of its own")
    c.rt("start", cid)
    c.wait_status(cid, "stopped")
    expect(c.rt("delete", cid).returncode == 0, "delete of a stopped container failed")
    expect(c.state(cid) is None, "state still answers after delete")
    left = [str(d) for d in dirs if d.exists()]
    expect(not left, f"cgroups left behind: {left}")
    c.create(c.bundle(["true"]), cid)


@req("runtime.md#delete", "MUST", "delete leaves alone what the container joined but did not "
     "create (a network namespace given by path)")
def delete_keeps_joined(c: Ctx) -> None:
    pid = c.holder("--net")
    ns = f"/proc/{pid}/ns/net"

    def edit(cfg: dict) -> None:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"]
                                      if n["type"] != "network"] + [{"type": "network",
                                                                     "path": ns}]
    rc, out, err = c.run(["readlink", "/proc/self/ns/net"], edit)
    expect(rc == 0, f"container failed: {err[-200:]}")
    expect(out.strip() == host_ns("net", pid), "the namespace was not joined")
    expect(Path(ns).exists() and host_ns("net", pid) == out.strip(),
           "the joined namespace is gone")
    r = subprocess.run(["nsenter", "-t", str(pid), "-n", "true"], env=ENV)
    expect(r.returncode == 0, "the joined namespace cannot be entered any more")


@req("runtime.md#errors", "MUST", "a failed create leaves the host as before: no container, "
     "no cgroup")
def error_leaves_nothing(c: Ctx) -> None:
    path = f"/conf-err-{uuid.uuid4().hex[:8]}"

    def edit(cfg: dict) -> None:
        cfg["linux"]["cgroupsPath"] = path
        cfg["process"]["args"] = ["/no/such/program"]
        cfg["mounts"].append({"destination": "/x", "type": "no-such-fs", "source": "none"})
    b = c.bundle(["true"], edit)
    c.create_refused(b, "create exited 0",
                     "a container exists after the failed create")
    left = [str(d) for d in Path("/sys/fs/cgroup").glob("*" + path) if d.exists()]
    left += [str(d) for d in Path("/sys/fs/cgroup").glob("*/*" + path) if d.exists()]
    expect(not left, f"cgroups left behind: {left}")


def _failing_create_hook(kind: str):
    def check(c: Ctx) -> None:
        b = c.bundle(["sh", "-c", "echo ran > /ran"], lambda cfg: cfg.update(
            hooks={kind: [hook("exit 3")]}))
        cid = c.create_refused(b, f"create succeeded although a {kind} hook failed")
        st = c.state(cid)
        expect(st is None or st["status"] == "stopped", f"container left {st and st['status']}")
        expect(not (b / "rootfs" / "ran").exists(), "the program ran")
    return check


for _kind in ("prestart", "createRuntime", "createContainer"):
    req("runtime.md#lifecycle", "MUST", f"a failing {_kind} hook makes create fail and the "
        "container is stopped/destroyed")(_failing_create_hook(_kind))


@req("runtime.md#lifecycle", "MUST", "a failing startContainer hook makes start fail and the "
     "user program does not run")
def start_hook_fails(c: Ctx) -> None:
    b = c.bundle(["sh", "-c", "echo ran > /ran"], lambda cfg: cfg.update(
        hooks={"startContainer": [hook("exit 3")]}))
    cid, _ = c.create(b)
    expect(c.rt("start", cid).returncode != 0, "start succeeded although startContainer failed")
    time.sleep(0.2)
    expect(not (b / "rootfs" / "ran").exists(), "the program ran")
    st = c.state(cid)
    expect(st is None or st["status"] == "stopped", f"container left {st and st['status']}")


@req("runtime.md#lifecycle", "MUST", "a failing poststart hook is an error and the container is "
     "stopped (runtime-spec 1.3; earlier versions: a warning)")
def poststart_fails(c: Ctx) -> None:
    b = c.bundle(["sleep", "30"], lambda cfg: cfg.update(hooks={"poststart": [hook("exit 3")]}))
    cid, _ = c.create(b)
    p = c.rt("start", cid)
    if p.returncode == 0:
        raise Conflict("start succeeded with a warning: runtime-tools' poststart_fail (and the "
                       "1.0-1.2 spec) require the warning and the remaining hooks to go on")
    st = c.state(cid)
    expect(st is None or st["status"] == "stopped", f"container left {st and st['status']}")


@req("runtime.md#lifecycle", "MUST", "after a failing prestart, createRuntime, createContainer or "
     "startContainer hook the lifecycle goes on at step 12: the container is destroyed and the "
     "poststop hooks run")
def failed_hook_poststop(c: Ctx) -> None:
    missed = []
    for kind in ("prestart", "createRuntime", "createContainer", "startContainer"):
        b = c.bundle(["true"])
        marker = b / "poststop-ran"
        cfg = json.loads((b / "config.json").read_text())
        cfg["hooks"] = {kind: [hook("exit 3")], "poststop": [hook(f"echo ran > {marker}")]}
        (b / "config.json").write_text(json.dumps(cfg))
        cid, p = c.create(b, check=False)
        if p.returncode == 0:
            expect(kind == "startContainer", f"create succeeded although {kind} failed")
            if c.rt("start", cid).returncode == 0:
                continue  # start_hook_fails reports that; here only poststop is judged
        st = c.state(cid)
        expect(st is None or st["status"] == "stopped",
               f"{kind}: container left {st and st['status']}")
        if st is not None:  # the lifecycle may go on at delete (step 11 then 12)
            c.rt("delete", cid)
        if not marker.exists():
            missed.append(kind)
    expect(not missed, f"no poststop hook after a failing {', '.join(missed)} hook")


@req("runtime.md#lifecycle", "MUST", "a failing poststop hook is a warning: delete succeeds and "
     "the remaining poststop hooks run")
def poststop_fails(c: Ctx) -> None:
    b = c.bundle(["true"])
    marker = b / "second"
    cfg = json.loads((b / "config.json").read_text())
    cfg["hooks"] = {"poststop": [hook("exit 3"), hook(f"echo ran > {marker}")]}
    (b / "config.json").write_text(json.dumps(cfg))
    cid, _ = c.create(b)
    c.rt("start", cid)
    c.wait_status(cid, "stopped")
    p = c.rt("delete", cid)
    expect(p.returncode == 0, "delete failed because of the poststop hook")
    expect(marker.exists(), "the second poststop hook did not run")
    expect(c.state(cid) is None, "the container was not deleted")


# === config.md: hooks ===========================================================================

HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")


@req("config.md#posix-platform-hooks", "MUST", "every kind of hook is called, in the lifecycle's "
     "order (prestart, createRuntime, createContainer, startContainer, poststart, poststop)")
def hooks_order(c: Ctx) -> None:
    b = c.bundle(["true"])
    order = b / "order"
    inside = "/order"
    cfg = json.loads((b / "config.json").read_text())
    cfg["hooks"] = {k: [hook(f"echo {k} >> {inside if k == 'startContainer' else order}")]
                    for k in HOOK_KINDS}
    cfg["hooks"]["createContainer"] = [hook(f"echo createContainer >> {order}")]
    (b / "config.json").write_text(json.dumps(cfg))
    cid, _ = c.create(b)
    mid = c.text(order).split()
    c.rt("start", cid)
    c.wait_status(cid, "stopped")
    c.rt("delete", cid)
    got = c.text(order).split()
    start_c = c.text(b / "rootfs" / "order").split()
    expect(mid == ["prestart", "createRuntime", "createContainer"],
           f"after create: {mid}")
    expect(start_c == ["startContainer"], f"startContainer: {start_c}")
    expect(got == ["prestart", "createRuntime", "createContainer", "poststart", "poststop"],
           f"hook order {got}")


@req("config.md#posix-platform-hooks", "MUST", "hooks of one kind run in the listed order")
def hooks_listed_order(c: Ctx) -> None:
    b = c.bundle(["true"])
    log = b / "log"
    cfg = json.loads((b / "config.json").read_text())
    cfg["hooks"] = {"prestart": [hook(f"echo {i} >> {log}") for i in range(5)]}
    (b / "config.json").write_text(json.dumps(cfg))
    c.create(b)
    expect(c.text(log).split() == ["0", "1", "2", "3", "4"], f"order {c.text(log).split()}")


@req("config.md#posix-platform-hooks", "MUST", "hooks get the container's state on stdin (id, "
     "pid, bundle, status)")
def hooks_stdin(c: Ctx) -> None:
    b = c.bundle(["sleep", "30"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["hooks"] = {k: [hook(f"cat > {b}/{k}.json")] for k in ("prestart", "createRuntime",
                                                                 "poststart", "poststop")}
    (b / "config.json").write_text(json.dumps(cfg))
    cid, _ = c.create(b)
    pid = c.state(cid)["pid"]
    c.rt("start", cid)
    c.rt("kill", cid, "KILL")
    c.wait_status(cid, "stopped")
    c.rt("delete", cid)
    for k in ("prestart", "createRuntime", "poststart", "poststop"):
        try:
            st = json.loads(c.text(b / f"{k}.json"))
        except ValueError:
            raise CheckFailed(f"{k}: stdin was not JSON: {c.text(b / f'{k}.json')[:100]!r}")
        expect(st.get("id") == cid, f"{k}: id {st.get('id')!r}")
        expect(os.path.realpath(st.get("bundle", "")) == os.path.realpath(b),
               f"{k}: bundle {st.get('bundle')!r}")
        expect(isinstance(st.get("status"), str), f"{k}: no status")
        if k != "poststop":
            expect(st.get("pid") == pid, f"{k}: pid {st.get('pid')} is not {pid}")


@req("config.md#posix-platform-hooks", "MUST", "prestart, createRuntime, poststart and poststop "
     "run in the runtime's namespaces; createContainer and startContainer in the container's")
def hooks_namespaces(c: Ctx) -> None:
    b = c.bundle(["sleep", "30"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["hooks"] = {}
    for k in HOOK_KINDS:
        dest = f"/{k}.ns" if k == "startContainer" else f"{b}/{k}.ns"
        if k == "createContainer":
            dest = f"{b}/rootfs/{k}.ns"
        cfg["hooks"][k] = [hook(f"readlink /proc/self/ns/mnt > {dest}; readlink /proc/self/ns/uts >> {dest}")]
    (b / "config.json").write_text(json.dumps(cfg))
    cid, _ = c.create(b)
    pid = c.state(cid)["pid"]
    inside = [os.readlink(f"/proc/{pid}/ns/mnt"), os.readlink(f"/proc/{pid}/ns/uts")]
    host = [host_ns("mnt"), host_ns("uts")]
    c.rt("start", cid)
    c.rt("kill", cid, "KILL")
    c.wait_status(cid, "stopped")
    c.rt("delete", cid)
    for k in HOOK_KINDS:
        where = b / "rootfs" if k in ("createContainer", "startContainer") else b
        got = c.text(where / f"{k}.ns").split()
        want = inside if k in ("createContainer", "startContainer") else host
        expect(got == want, f"{k} ran in {got}, expected {want}")


@req("config.md#posix-platform-hooks", "MUST", "a createContainer hook's path resolves in the "
     "runtime's namespace, a startContainer hook's in the container's")
def hook_path_namespaces(c: Ctx) -> None:
    host_only = shutil.which("env") or "/usr/bin/env"  # the busybox rootfs has /bin only
    b = c.bundle(["true"])
    ctr_only = b / "rootfs" / "only-here"
    ctr_only.write_text("#!/bin/sh\necho ran > /start-hook-ran\n")
    ctr_only.chmod(0o755)
    cfg = json.loads((b / "config.json").read_text())
    cfg["root"]["readonly"] = False
    cfg["hooks"] = {"createContainer": [{"path": host_only, "args": ["env", "true"]}],
                    "startContainer": [{"path": "/only-here"}]}
    (b / "config.json").write_text(json.dumps(cfg))
    cid, p = c.create(b, check=False)
    expect(p.returncode == 0, f"createContainer hook {host_only} (host only) did not run: "
           f"{c.text(b / 'err').strip()[-200:]}")
    s = c.rt("start", cid)
    expect(s.returncode == 0, f"startContainer hook /only-here (container only) did not run: "
           f"{s.stderr.decode(errors='replace').strip()[-200:]}")
    expect((b / "rootfs" / "start-hook-ran").exists(), "the startContainer hook did not run")


@req("config.md#poststart", "MUST", "poststart hooks run after the program started and before "
     "start returns")
def poststart_timing(c: Ctx) -> None:
    b = c.bundle(["sleep", "30"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["hooks"] = {"poststart": [hook(f"sleep 0.3; echo done > {b}/poststart")]}
    (b / "config.json").write_text(json.dumps(cfg))
    cid, _ = c.create(b)
    pid = c.state(cid)["pid"]
    expect(c.rt("start", cid).returncode == 0, "start failed")
    expect((b / "poststart").exists(), "start returned before the poststart hook finished")
    exe = os.readlink(f"/proc/{pid}/exe")
    expect("busybox" in exe, f"the container process is not the user program yet: {exe}")


@req("config.md#poststop", "MUST", "poststop hooks run after the container is deleted and "
     "before delete returns")
def poststop_timing(c: Ctx) -> None:
    b = c.bundle(["true"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["hooks"] = {"poststop": [hook(f"sleep 0.3; echo done > {b}/poststop")]}
    (b / "config.json").write_text(json.dumps(cfg))
    cid, _ = c.create(b)
    c.rt("start", cid)
    c.wait_status(cid, "stopped")
    expect(c.rt("delete", cid).returncode == 0, "delete failed")
    expect((b / "poststop").exists(), "delete returned before the poststop hook finished")


@req("config.md#posix-platform-hooks", "MUST", "a hook timeout must be greater than zero: "
     "timeout 0 is an error")
def hook_timeout_zero(c: Ctx) -> None:
    b = c.bundle(["true"], lambda cfg: cfg.update(hooks={"prestart": [hook("true", 0)]}))
    c.create_refused(b, "create accepted a hook with timeout 0")


@req("config.md#posix-platform-hooks", "MUST", "a hook path must be absolute: a relative one "
     "is an error")
def hook_path_absolute(c: Ctx) -> None:
    b = c.bundle(["true"], lambda cfg: cfg.update(
        hooks={"prestart": [{"path": "bin/true"}]}))
    c.create_refused(b, "create accepted a relative hook path")


# === config.md: the rest ========================================================================

@req("config.md#specification-version", "MUST", "ociVersion must be SemVer: anything else is "
     "an error")
def oci_version_semver(c: Ctx) -> None:
    b = c.bundle(["true"], lambda cfg: cfg.update(ociVersion="not-a-version"))
    c.create_refused(b, "create accepted ociVersion 'not-a-version'")


@req("config.md#root", "MUST", "root.path must exist: a missing directory is an error")
def root_missing(c: Ctx) -> None:
    b = c.bundle(["true"], lambda cfg: cfg["root"].update(path="no-such-rootfs"))
    c.create_refused(b, "create accepted a missing root.path",
                     "a container exists")


@req("config.md#root", "MUST", "root.readonly true makes the root filesystem read-only")
def root_readonly(c: Ctx) -> None:
    out = c.must_run(["sh", "-c", "touch /x 2>/dev/null && echo writable || echo readonly"],
                     lambda cfg: cfg["root"].update(readonly=True))
    expect(out.strip() == "readonly", f"/ is {out.strip()}")


@req("config.md#mounts", "MUST", "mounts are made in the listed order")
def mounts_order(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["mounts"] += [
            {"destination": "/mnt/a", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/mnt/a/b", "type": "tmpfs", "source": "tmpfs",
             "options": ["size=1m"]},
        ]
    out = c.must_run(["cat", "/proc/self/mountinfo"], edit)
    a, ab = mountinfo_line(out, "/mnt/a"), mountinfo_line(out, "/mnt/a/b")
    expect(ab[1] == a[0], "/mnt/a/b is not mounted on top of /mnt/a")


@req("config.md#mounts", "MUST", "a mount's uidMappings come with gidMappings: one without the "
     "other is an error")
def mount_idmap_pairs(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["mounts"].append({"destination": "/mnt", "type": "bind", "source": str(c.work),
                              "options": ["bind", "idmap"],
                              "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]})
    b = c.bundle(["true"], edit)
    cid, p = c.create(b, check=False)
    expect(p.returncode != 0, "create accepted uidMappings without gidMappings")
    expect(c.state(cid) is None, "a container exists")


@req("config.md#mounts", "MUST", "a relative mount destination is taken relative to /")
def mounts_relative_destination(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["mounts"].append({"destination": "mnt/rel", "type": "tmpfs", "source": "tmpfs"})
    rc, out, err = c.run(["cat", "/proc/self/mountinfo"], edit)
    if rc != 0:
        raise CheckFailed(f"refused: {err.strip()[-200:]}")
    mountinfo_line(out, "/mnt/rel")


def _flags(line: list[str]) -> set[str]:
    return set(line[5].split(","))


@req("config.md#mounts", "MUST", "the mount(8) flag options (ro, nosuid, nodev, noexec, noatime, "
     "strictatime, nodiratime, rw, relatime) are applied")
def mount_flag_options(c: Ctx) -> None:
    cases = {
        "/m/1": (["ro", "nosuid", "nodev", "noexec"], {"ro", "nosuid", "nodev", "noexec"}),
        "/m/2": (["noatime", "nodiratime"], {"noatime", "nodiratime"}),
        "/m/3": (["strictatime"], set()),
        "/m/4": (["rw", "relatime", "suid", "dev", "exec"], {"rw", "relatime"}),
    }

    def edit(cfg: dict) -> None:
        for dest, (opts, _) in cases.items():
            cfg["mounts"].append({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                                  "options": opts})
    out = c.must_run(["cat", "/proc/self/mountinfo"], edit)
    for dest, (opts, want) in cases.items():
        got = _flags(mountinfo_line(out, dest))
        expect(want <= got, f"{dest} {opts}: flags {sorted(got)}")
    got3 = _flags(mountinfo_line(out, "/m/3"))
    expect(not {"relatime", "noatime"} & got3, f"strictatime: flags {sorted(got3)}")
    got4 = _flags(mountinfo_line(out, "/m/4"))
    expect(not {"nosuid", "nodev", "noexec"} & got4, f"suid/dev/exec: flags {sorted(got4)}")


@req("config.md#mounts", "MUST", "bind and rbind options make bind mounts (an atime mode "
     "included)")
def mount_bind(c: Ctx) -> None:
    src = c.work / "bindsrc"
    src.mkdir()
    (src / "file").write_text("from-host\n")

    def edit(cfg: dict) -> None:
        cfg["mounts"] += [
            {"destination": "/b1", "type": "none", "source": str(src),
             "options": ["bind", "ro"]},
            {"destination": "/b2", "type": "none", "source": str(src),
             "options": ["rbind", "nosuid", "strictatime"]},
        ]
    out = c.must_run(["sh", "-c", "cat /b1/file /b2/file; cat /proc/self/mountinfo"], edit)
    expect(out.startswith("from-host\nfrom-host\n"), f"bind contents: {out[:40]!r}")
    expect("ro" in _flags(mountinfo_line(out, "/b1")), "/b1 is not read-only")
    expect("nosuid" in _flags(mountinfo_line(out, "/b2")), "/b2 is not nosuid")


@req("config.md#mounts", "MUST", "the propagation options (shared, slave, private, unbindable) "
     "set the bind mount's propagation")
def mount_propagation(c: Ctx) -> None:
    src = c.work / "propsrc"
    src.mkdir()
    # A slave of a mount that has no peers is private: only "not shared" can be required.
    kinds = {"shared": "shared:", "slave": None, "private": None, "unbindable": "unbindable"}

    def edit(cfg: dict) -> None:
        for k in kinds:
            cfg["mounts"].append({"destination": f"/p/{k}", "type": "none",
                                  "source": str(src), "options": ["rbind", k]})
    out = c.must_run(["cat", "/proc/self/mountinfo"], edit)
    for k, tag in kinds.items():
        f = mountinfo_line(out, f"/p/{k}")
        opt = f[6:f.index("-")]
        if tag is None:
            expect(not any(o.startswith("shared:") for o in opt), f"{k}: optional fields {opt}")
        else:
            expect(any(o.startswith(tag) for o in opt), f"{k}: optional fields {opt}")


@req("config.md#mounts", "SHOULD", "the recursive attribute options (rro, rnosuid, ...) apply "
     "to every mount below a bind")
def mount_recursive_attrs(c: Ctx) -> None:
    if not Path("/sys/fs/cgroup").is_mount() or not any(
            Path(p).is_mount() for p in Path("/sys/fs/cgroup").iterdir()):
        raise Skip("no mount below /sys/fs/cgroup to bind recursively")
    sub = next(p.name for p in sorted(Path("/sys/fs/cgroup").iterdir()) if p.is_mount())

    def edit(cfg: dict) -> None:
        cfg["mounts"].append({"destination": "/cg", "type": "none", "source": "/sys/fs/cgroup",
                              "options": ["rbind", "rro", "rnosuid"]})
    out = c.must_run(["cat", "/proc/self/mountinfo"], edit)
    got = _flags(mountinfo_line(out, f"/cg/{sub}"))
    expect({"ro", "nosuid"} <= got, f"/cg/{sub}: {sorted(got)}")


@req("config.md#mounts", "SHOULD", "unknown options are passed to the filesystem as data "
     "(tmpfs size=, mode=)")
def mount_fs_data(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["mounts"].append({"destination": "/d", "type": "tmpfs", "source": "tmpfs",
                              "options": ["size=2m", "mode=711"]})
    out = c.must_run(["sh", "-c", "stat -c %a /d; cat /proc/self/mountinfo"], edit)
    f = mountinfo_line(out, "/d")
    expect("size=2048k" in f[-1], f"super options {f[-1]}")
    expect(out.split()[0] == "711", f"mode {out.split()[0]}")


@req("config.md#process", "MUST", "consoleSize is ignored when terminal is false")
def console_size_ignored(c: Ctx) -> None:
    out = c.must_run(["echo", "ok"], lambda cfg: cfg["process"].update(
        consoleSize={"height": 10, "width": 40}))
    expect(out.strip() == "ok", f"printed {out!r}")


@req("config.md#process", "MUST", "cwd must be absolute: a relative cwd is an error")
def cwd_absolute(c: Ctx) -> None:
    b = c.bundle(["true"], lambda cfg: cfg["process"].update(cwd="tmp"))
    c.create_refused(b, "create accepted a relative cwd")


@req("config.md#posix-process", "MUST", "each rlimit is applied: getrlimit gives the configured "
     "soft and hard values")
def rlimits_applied(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 900, "soft": 800},
                                     {"type": "RLIMIT_CORE", "hard": 4096, "soft": 2048}]
    out = c.must_run(["sh", "-c", "ulimit -Sn; ulimit -Hn; ulimit -Sc; ulimit -Hc"], edit)
    # busybox ulimit -c counts 512-byte blocks
    expect(out.split() == ["800", "900", "4", "8"], f"limits {out.split()}")


@req("config.md#posix-process", "MUST", "an rlimit type that maps to no kernel limit is an error")
def rlimits_unknown(c: Ctx) -> None:
    b = c.bundle(["true"], lambda cfg: cfg["process"]["rlimits"].append(
        {"type": "RLIMIT_TEST", "hard": 1, "soft": 1}))
    c.create_refused(b, "create accepted RLIMIT_TEST")


@req("config.md#posix-process", "MUST", "duplicated rlimit types are an error")
def rlimits_duplicate(c: Ctx) -> None:
    b = c.bundle(["true"], lambda cfg: cfg["process"]["rlimits"].append(
        {"type": "RLIMIT_NOFILE", "hard": 512, "soft": 512}))
    c.create_refused(b, "create accepted two RLIMIT_NOFILE entries")


@req("config.md#linux-process", "MUST", "oomScoreAdj, when set, is written to oom_score_adj")
def oom_score_adj_set(c: Ctx) -> None:
    out = c.must_run(["cat", "/proc/self/oom_score_adj"],
                     lambda cfg: cfg["process"].update(oomScoreAdj=123))
    expect(out.strip() == "123", f"oom_score_adj {out.strip()}")


@req("config.md#linux-process", "MUST", "without oomScoreAdj the value is left as the runtime "
     "had it")
def oom_score_adj_unset(c: Ctx) -> None:
    mine = Path("/proc/self/oom_score_adj").read_text().strip()
    out = c.must_run(["cat", "/proc/self/oom_score_adj"])
    expect(out.strip() == mine, f"oom_score_adj {out.strip()}, the caller's is {mine}")


@req("config.md#linux-process", "MUST", "a capability name the kernel does not know is logged "
     "(warning or error naming it)")
def capability_unknown_logged(c: Ctx) -> None:
    b = c.bundle(["true"], lambda cfg: cfg["process"]["capabilities"]["bounding"].append(
        "CAP_TEST"))
    c.create(b, check=False)
    said = c.text(b / "err") + c.text(b / "out")
    expect("CAP_TEST" in said, f"nothing names CAP_TEST: {said.strip()[-200:]!r}")


@req("config.md#linux-process", "SHOULD", "a capability that cannot be granted (outside the "
     "runtime's bounding set) is a warning, not a failure")
def capability_not_grantable(c: Ctx) -> None:
    from ctypes import CDLL
    libc = CDLL(None, use_errno=True)
    missing = [n for n, i in (("CAP_SYS_RESOURCE", 24), ("CAP_MAC_ADMIN", 33),
                              ("CAP_BPF", 39)) if libc.prctl(23, i, 0, 0, 0) == 0]
    if not missing:
        raise Skip("the runtime's bounding set has every capability tried")
    b = c.bundle(["true"], lambda cfg: [cfg["process"]["capabilities"][k].append(missing[0])
                                       for k in ("bounding", "effective", "permitted")])
    _, p = c.create(b, check=False)
    expect(p.returncode == 0, f"create failed for {missing[0]}: "
           f"{c.text(b / 'err').strip()[-200:]}")


@req("config.md#annotations", "MUST", "unknown annotation keys are accepted like any unknown "
     "property")
def annotations_unknown(c: Ctx) -> None:
    out = c.must_run(["echo", "ok"], lambda cfg: cfg.update(
        annotations={"com.example.conformance.unknown": "value"}))
    expect(out.strip() == "ok", f"printed {out!r}")


@req("config.md#annotations", "MUST", "an annotation key must not be empty: an empty key is an "
     "invalid value, hence an error")
def annotation_key_empty(c: Ctx) -> None:
    b = c.bundle(["true"], lambda cfg: cfg.update(annotations={"": "x"}))
    cid, p = c.create(b, check=False)
    expect(p.returncode != 0, "create accepted an empty annotation key")
    expect(c.state(cid) is None, "a container exists")


@req("config.md#extensibility", "MUST", "unknown properties are ignored")
def unknown_properties(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["comExampleUnknown"] = {"x": 1}
        cfg["process"]["comExampleUnknown"] = True
        cfg["linux"]["comExampleUnknown"] = [1, 2]
    out = c.must_run(["echo", "ok"], edit)
    expect(out.strip() == "ok", f"printed {out!r}")


@req("config.md#valid-values", "MUST", "invalid values are an error (a string where a number "
     "belongs)")
def invalid_values(c: Ctx) -> None:
    b = c.bundle(["true"], lambda cfg: cfg["process"]["user"].update(uid="zero"))
    c.create_refused(b, "create accepted process.user.uid = \"zero\"")


# === config-linux.md ============================================================================

@req("config-linux.md#default-filesystems", "SHOULD", "/proc, /sys, /dev/pts and /dev/shm are "
     "available")
def default_filesystems(c: Ctx) -> None:
    out = c.must_run(["cat", "/proc/self/mountinfo"])
    for mp, fs in (("/proc", "proc"), ("/sys", "sysfs"), ("/dev/pts", "devpts"),
                   ("/dev/shm", "tmpfs")):
        f = mountinfo_line(out, mp)
        expect(f[f.index("-") + 1] == fs, f"{mp} is {f[f.index('-') + 1]}")


@req("config-linux.md#namespaces", "MUST", "a namespace without path is created new")
def ns_new(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["linux"]["namespaces"].append({"type": "cgroup"})
    names = ["pid", "net", "ipc", "uts", "mnt", "cgroup"]
    out = c.must_run(["sh", "-c", "; ".join(f"readlink /proc/self/ns/{n}" for n in names)], edit)
    for n, got in zip(names, out.split()):
        expect(got != host_ns(n), f"{n} is the host's")


@req("config-linux.md#namespaces", "MUST", "a namespace with path is joined")
def ns_join(c: Ctx) -> None:
    pid = c.holder("--net", "--ipc", "--uts")

    def edit(cfg: dict) -> None:
        cfg.pop("hostname", None)
        cfg["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"}] + [
            {"type": t, "path": f"/proc/{pid}/ns/{n}"}
            for t, n in (("network", "net"), ("ipc", "ipc"), ("uts", "uts"))]
    out = c.must_run(["sh", "-c", "for n in net ipc uts; do readlink /proc/self/ns/$n; done"],
                     edit)
    expect(out.split() == [host_ns(n, pid) for n in ("net", "ipc", "uts")],
           f"not the holder's namespaces: {out.split()}")


@req("config-linux.md#namespaces", "MUST", "a namespace path of the wrong type is an error")
def ns_wrong_type(c: Ctx) -> None:
    pid = c.holder("--uts")

    def edit(cfg: dict) -> None:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"]
                                      if n["type"] != "network"]
        cfg["linux"]["namespaces"].append({"type": "network", "path": f"/proc/{pid}/ns/uts"})
    b = c.bundle(["true"], edit)
    c.create_refused(b, "create accepted a uts namespace file as the network namespace",
                     "a container exists")


@req("config-linux.md#namespaces", "MUST", "a namespace type left out is inherited from the "
     "runtime (ipc, uts, network here)")
def ns_inherit(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg.pop("hostname", None)
        cfg["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"}]
    out = c.must_run(["sh", "-c", "for n in net ipc uts; do readlink /proc/self/ns/$n; done"],
                     edit)
    expect(out.split() == [host_ns(n) for n in ("net", "ipc", "uts")],
           f"not the runtime's namespaces: {out.split()}")


@req("config-linux.md#namespaces", "MUST", "without a mount namespace entry the container shares "
     "the runtime's mount namespace")
def ns_inherit_mount(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["linux"]["namespaces"] = [{"type": t} for t in ("pid", "uts", "ipc", "network")]
    out = c.must_run(["readlink", "/proc/self/ns/mnt"], edit)
    expect(out.strip() == host_ns("mnt"), f"mount namespace {out.strip()}, not the runtime's")


@req("runtime.md#delete", "MUST", "without a mount namespace, delete still removes the mounts "
     "create made (they are in the host's table)")
def delete_host_mounts(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["linux"]["namespaces"] = [{"type": t} for t in ("pid", "uts", "ipc", "network")]
    b = c.bundle(["true"], edit)
    cid, p = c.create(b, check=False)
    if p.returncode != 0:
        raise Skip("the runtime refuses a container without a mount namespace: "
                   + c.text(b / "err").strip()[-150:])
    c.rt("start", cid)
    c.wait_status(cid, "stopped")
    expect(c.rt("delete", cid).returncode == 0, "delete failed")
    left = mounts_below(b / "rootfs")
    expect(not left, f"{len(left)} mounts left in the host's table, e.g. {left[:3]}")


@req("config-linux.md#namespaces", "MUST", "a namespace path must be absolute: a relative one "
     "is an error")
def ns_relative_path(c: Ctx) -> None:
    pid = c.holder("--uts")

    def edit(cfg: dict) -> None:
        cfg.pop("hostname", None)
        cfg["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"}, {
            "type": "uts", "path": os.path.relpath(f"/proc/{pid}/ns/uts")}]
    b = c.bundle(["true"], edit)
    c.create_refused(b, "create accepted a relative namespace path",
                     "a container exists")


@req("config-linux.md#namespaces", "MUST", "duplicated namespace types are an error")
def ns_duplicate(c: Ctx) -> None:
    b = c.bundle(["true"], lambda cfg: cfg["linux"]["namespaces"].append({"type": "ipc"}))
    c.create_refused(b, "create accepted two ipc namespaces")


@req("config-linux.md#devices", "MUST", "configured devices exist in the container with their "
     "type, numbers, mode and owner")
def devices_created(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["linux"]["devices"] = [{"path": "/dev/conf-null", "type": "c", "major": 1,
                                    "minor": 3, "fileMode": 0o620, "uid": 7, "gid": 8}]
    out = c.must_run(["stat", "-c", "%F %t %T %a %u %g", "/dev/conf-null"], edit)
    expect(out.split() == ["character", "special", "file", "1", "3", "620", "7", "8"],
           f"device {out.strip()!r}")


@req("config-linux.md#devices", "MUST", "a file already at a device path that does not match "
     "is an error")
def devices_conflict(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/dev"]
        cfg["linux"]["devices"] = [{"path": "/etc/notadevice", "type": "c", "major": 1,
                                    "minor": 3}]
    b = c.bundle(["true"], edit)
    (b / "rootfs" / "etc").mkdir(exist_ok=True)
    (b / "rootfs" / "etc" / "notadevice").write_text("a regular file\n")
    cid, p = c.create(b, check=False)
    if p.returncode == 0:
        st = c.state(cid)
        mode = os.stat(b / "rootfs" / "etc" / "notadevice").st_mode
        expect(False, "create succeeded: the path is now "
               f"{'a device' if stat.S_ISCHR(mode) else 'still the file'} ({st and st['status']})")


@req("config-linux.md#default-devices", "MUST", "/dev/null, zero, full, random, urandom, tty, "
     "console (with a terminal) and ptmx are supplied")
def default_devices(c: Ctx) -> None:
    want = {"null": "1 3", "zero": "1 5", "full": "1 7", "random": "1 8", "urandom": "1 9",
            "tty": "5 0"}
    script = "; ".join(f"echo {n} $(stat -c '%t %T' /dev/{n})" for n in want)
    out = c.must_run(["sh", "-c", script + "; ls -l /dev/ptmx"])
    got = {line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines()[:-1]}
    for n, numbers in want.items():
        expect(got.get(n) == numbers, f"/dev/{n}: {got.get(n)!r}")
    expect("/dev/ptmx" in out.splitlines()[-1], "/dev/ptmx missing")


@req("runtime-linux.md#dev-symbolic-links", "MUST", "/dev/fd, /dev/stdin, /dev/stdout and "
     "/dev/stderr link to /proc/self/fd")
def dev_symlinks(c: Ctx) -> None:
    out = c.must_run(["sh", "-c", "for l in fd stdin stdout stderr; do readlink /dev/$l; done"])
    expect(out.split() == ["/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1",
                           "/proc/self/fd/2"], f"links {out.split()}")


@req("runtime-linux.md#file-descriptors", "MUST", "only stdin, stdout and stderr are open in "
     "the container process by default")
def only_stdio(c: Ctx) -> None:
    out = c.must_run(["ls", "/proc/self/fd"])
    # ls itself holds one directory fd (3) while listing
    extra = [fd for fd in out.split() if fd not in ("0", "1", "2", "3")]
    expect(not extra, f"open fds {out.split()}")


@req("config-linux.md#control-groups", "MUST", "an absolute cgroupsPath is relative to the "
     "cgroup mount point, and the same path gives the same place")
def cgroups_path(c: Ctx) -> None:
    name = f"conf-cg-{uuid.uuid4().hex[:8]}"
    b = c.bundle(["sleep", "30"], lambda cfg: cfg["linux"].update(cgroupsPath=f"/{name}"))
    cid, _ = c.create(b)
    pid = c.state(cid)["pid"]
    dirs = cgroup_dirs(pid)
    expect(dirs and all(d.name == name and d.parent.parent == Path("/sys/fs/cgroup")
                        or d.parent == Path("/sys/fs/cgroup") for d in dirs),
           f"cgroups {[str(d) for d in dirs]}")


@req("config-linux.md#memory", "MUST", "memory.limit is applied to the container's cgroup")
def cgroups_memory(c: Ctx) -> None:
    b = c.bundle(["sleep", "30"], lambda cfg: cfg["linux"]["resources"].update(
        memory={"limit": 64 * 1024 * 1024}))
    cid, _ = c.create(b)
    pid = c.state(cid)["pid"]
    values = []
    for d in cgroup_dirs(pid):
        for f in ("memory.limit_in_bytes", "memory.max"):
            if (d / f).exists():
                values.append((d / f).read_text().strip())
    expect(str(64 * 1024 * 1024) in values, f"limits seen {values}")


@req("config-linux.md#pids", "SHOULD", "a pids limit of 0 is treated as a valid limit")
def pids_zero(c: Ctx) -> None:
    b = c.bundle(["sleep", "30"], lambda cfg: cfg["linux"]["resources"].update(
        pids={"limit": 0}))
    _, p = c.create(b, check=False)
    if p.returncode != 0:
        raise CheckFailed(f"create refused pids.limit 0: {c.text(b / 'err').strip()[-200:]}")


@req("config-linux.md#unified", "MUST", "unified keys are written to the container's cgroup2 "
     "files as given (a core file here, so no controller is needed)")
def unified_written(c: Ctx) -> None:
    if not any(Path(d, "cgroup.controllers").exists()
               for d in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")):
        raise Skip("no cgroup2 hierarchy on this host")
    b = c.bundle(["sleep", "30"], lambda cfg: cfg["linux"]["resources"].update(
        unified={"cgroup.max.descendants": "7"}))
    cid, p = c.create(b, check=False)
    expect(p.returncode == 0, f"create failed: {c.text(b / 'err').strip()[-200:]}")
    pid = c.state(cid)["pid"]
    values = [(d / "cgroup.max.descendants").read_text().strip() for d in cgroup_dirs(pid)
              if (d / "cgroup.max.descendants").exists()]
    expect(values == ["7"], f"cgroup.max.descendants seen: {values}")


@req("config-linux.md#unified", "MUST", "a unified key for a controller that is not present is "
     "an error")
def unified_missing_controller(c: Ctx) -> None:
    b = c.bundle(["true"], lambda cfg: cfg["linux"]["resources"].update(
        unified={"nosuchcontroller.max": "1"}))
    c.create_refused(b, "create accepted a key of an absent controller",
                     "a container exists")


@req("config-linux.md#sysctl", "MUST", "sysctls are applied in the container")
def sysctl_applied(c: Ctx) -> None:
    out = c.must_run(["cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/shmmni"],
                     lambda cfg: cfg["linux"].update(sysctl={"net.ipv4.ip_forward": "1",
                                                             "kernel.shmmni": "1234"}))
    expect(out.split() == ["1", "1234"], f"values {out.split()}")


@req("config-linux.md#masked-paths", "MUST", "masked paths cannot be read in the container")
def masked_paths(c: Ctx) -> None:
    out = c.must_run(["sh", "-c", "cat /proc/kcore 2>/dev/null | wc -c; ls /sys/firmware | wc -l"],
                     lambda cfg: cfg["linux"].update(maskedPaths=["/proc/kcore",
                                                                  "/sys/firmware"]))
    expect(out.split() == ["0", "0"], f"readable: {out.split()}")


@req("config-linux.md#readonly-paths", "MUST", "readonly paths are read-only in the container")
def readonly_paths(c: Ctx) -> None:
    out = c.must_run(["sh", "-c", ("echo 1 > /proc/sys/kernel/shmmni 2>/dev/null && echo rw "
                                   "|| echo ro")], lambda cfg: cfg["linux"].update(readonlyPaths=["/proc/sys"]))
    expect(out.strip() == "ro", f"/proc/sys is {out.strip()}")


@req("config-linux.md#rootfs-mount-propagation", "MUST", "rootfsPropagation sets the propagation "
     "of the container's root mount")
def rootfs_propagation(c: Ctx) -> None:
    out = c.must_run(["cat", "/proc/self/mountinfo"],
                     lambda cfg: cfg["linux"].update(rootfsPropagation="private"))
    f = mountinfo_line(out, "/")
    opt = f[6:f.index("-")]
    expect(not opt, f"/ optional fields {opt}, expected private (none)")


@req("config-linux.md#seccomp", "MUST", "the seccomp filter applies: a syscall given errnoRet "
     "fails with that errno")
def seccomp_errno(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                   "syscalls": [{"names": ["mkdirat", "mkdir"],
                                                 "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    out = c.must_run(["sh", "-c", "mkdir /tmp/x 2>&1; echo rc=$?"], edit)
    expect("rc=1" in out and "not permitted" in out.lower(), f"mkdir said {out.strip()!r}")


@req("config-linux.md#seccomp", "MUST", "errnoRet on an action that returns no errno is an "
     "error")
def seccomp_errno_wrong_action(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                   "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_KILL",
                                                 "errnoRet": 1}]}
    b = c.bundle(["true"], edit)
    c.create_refused(b, "create accepted errnoRet with SCMP_ACT_KILL",
                     "a container exists")


@req("config-linux.md#seccomp", "MUST", "a seccomp state that cannot be sent to listenerPath is "
     "an error")
def seccomp_listener_unreachable(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                   "listenerPath": str(c.work / "no-such-socket"),
                                   "syscalls": [{"names": ["mkdirat"],
                                                 "action": "SCMP_ACT_NOTIFY"}]}
    b = c.bundle(["true"], edit)
    c.create_refused(b, "create succeeded with nothing listening at listenerPath",
                     "a container exists")


@req("config-linux.md#user-namespace-mappings", "SHOULD", "the runtime does not change the "
     "ownership of the rootfs to realize the mappings")
def userns_no_chown(c: Ctx) -> None:
    def edit(cfg: dict) -> None:
        cfg["linux"]["namespaces"].append({"type": "user"})
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/sys"]
    b = c.bundle(["true"], edit)
    for d in (c.work.parent, c.work, b):
        d.chmod(0o755)  # the container's root (host uid 100000) must reach its rootfs
    paths = [b / "rootfs", b / "rootfs" / "bin", b / "rootfs" / "bin" / "busybox",
             b / "rootfs" / "etc" / "passwd"]
    before = [(os.lstat(x).st_uid, os.lstat(x).st_gid) for x in paths]
    cid, _ = c.create(b)
    c.rt("start", cid)
    c.wait_status(cid, "stopped")
    c.rt("delete", cid)
    after = [(os.lstat(x).st_uid, os.lstat(x).st_gid) for x in paths]
    changed = [f"{x.relative_to(b)} {o} -> {n}" for x, o, n in zip(paths, before, after) if o != n]
    expect(not changed, f"ownership changed: {changed}")


def host_veth(c: Ctx) -> str:
    """A veth pair in our network namespace (deleted at close if still here); one end's name."""
    dev = f"cf{uuid.uuid4().hex[:8]}"
    if subprocess.run(["ip", "link", "add", dev, "type", "veth", "peer", "name", dev + "p"],
                      env=ENV, stderr=subprocess.DEVNULL).returncode != 0:
        raise Skip("cannot create a veth pair on this host (ip, veth)")
    c.cleanups.append(lambda: subprocess.run(["ip", "link", "del", dev + "p"], env=ENV,
                                             stderr=subprocess.DEVNULL))
    return dev


@req("config-linux.md#network-devices", "MUST", "netDevices are moved into the container's "
     "network namespace, renamed, set up, with their addresses kept")
def netdevices_moved(c: Ctx) -> None:
    dev = host_veth(c)
    subprocess.run(["ip", "addr", "add", "10.213.7.1/24", "dev", dev], env=ENV, check=True)

    def edit(cfg: dict) -> None:
        cfg["linux"]["netDevices"] = {dev: {"name": "ctr0"}}
    out = c.must_run(["sh", "-c", "ip -o link show ctr0; ip -o -4 addr show dev ctr0"], edit)
    expect("ctr0" in out, f"no ctr0 in the container: {out.strip()!r}")
    expect(",UP" in out or "<UP" in out, f"ctr0 is not up: {out.strip()!r}")
    expect("10.213.7.1/24" in out, f"the address was not kept: {out.strip()!r}")


@req("config-linux.md#network-devices", "MUST", "a netDevices name that already exists in the "
     "container's namespace is an error")
def netdevices_name_taken(c: Ctx) -> None:
    dev = host_veth(c)
    b = c.bundle(["true"], lambda cfg: cfg["linux"].update(netDevices={dev: {"name": "lo"}}))
    c.create_refused(b, "create moved a device onto the name lo",
                     "a container exists")
    expect(Path(f"/sys/class/net/{dev}").exists(), "the device did not come back to the host")


# --- the runner -------------------------------------------------------------------------------

def build_rootfs(dest: Path) -> Path:
    if not os.path.exists(BUSYBOX):
        sys.exit("conformance: busybox (Debian's busybox-static) is needed for the rootfs")
    root = dest / "rootfs"
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "mnt"):
        (root / d).mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="runtime-spec conformance checks, from outside")
    ap.add_argument("--runtime", default=os.environ.get("RUNTIME", "pyrunc"))
    ap.add_argument("-k", dest="only", default="", help="run checks whose name contains this")
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("conformance: needs root", file=sys.stderr)
        return 2
    runtime = a.runtime if "/" in a.runtime else shutil.which(a.runtime) or a.runtime
    if not os.access(runtime, os.X_OK):
        print(f"conformance: runtime {runtime} is not executable", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="conformance-"))
    results = []
    try:
        rootfs = build_rootfs(work)
        state_root = work / "state"
        state_root.mkdir()
        for section, level, text, fn in CHECKS:
            name = fn.__name__
            if a.only and a.only not in name:
                continue
            ctx = Ctx(runtime, state_root, rootfs, work)
            t0 = time.monotonic()
            try:
                fn(ctx)
                result, reason = "pass", ""
            except CheckFailed as exc:
                result, reason = "FAIL", str(exc)
            except Skip as exc:
                result, reason = "skip", str(exc)
            except Conflict as exc:
                result, reason = "conflict", str(exc)
            except subprocess.TimeoutExpired as exc:
                result, reason = "FAIL", f"timed out: {' '.join(map(str, exc.cmd[3:]))}"
            except Exception as exc:  # noqa: BLE001 - a broken check is reported, not fatal
                result, reason = "FAIL", f"check error: {type(exc).__name__}: {exc}"
            finally:
                ctx.close()
            results.append({"check": name, "section": section, "level": level,
                            "requirement": text, "result": result, "reason": reason,
                            "seconds": round(time.monotonic() - t0, 2)})
            print(f"{result:8} {name} {reason}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"runtime: {runtime}")
    print("| requirement | level | result | reason |")
    print("|---|---|---|---|")
    for r in results:
        reason = r["reason"].replace("|", "/").replace("\n", " ")
        print(f"| {r['section']}: {r['requirement']} | {r['level']} | {r['result']} | {reason} |")
    counts = {k: sum(r["result"] == k for r in results) for k in ("pass", "FAIL", "skip",
                                                                   "conflict")}
    print(f"total: {len(results)} checks: {counts['pass']} pass, {counts['FAIL']} FAIL, "
          f"{counts['skip']} skip, {counts['conflict']} conflict")
    if a.json:
        a.json.write_text(json.dumps({"runtime": runtime, "results": results}, indent=1))
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
