"""Fixtures shared by the suite: a busybox rootfs, bundles, the pyrunc under test, leak checks.

Kernel tests run real containers as root. Every test that uses `bundle` or `pyrunc` is followed
by a check that it left nothing behind: no state directory, no mount mentioning the test's
paths, no cgroup directory with the test's container-id prefix (in every hierarchy), no process
of the container or naming the test's paths, no fd of any process into the test's paths.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
APPLETS = ("sh", "ls", "cat", "echo", "sleep", "true", "false", "id", "hostname", "ps", "mount",
           "env", "grep", "kill", "stat", "readlink", "touch", "mkdir", "pwd", "test", "wc", "head",
           "ulimit", "umask", "ip", "domainname", "uname", "find", "dd", "awk", "sed", "nproc")
IS_ROOT = os.geteuid() == 0


def pyrunc_binary() -> str:
    """The launcher under test: $PYRUNC (make test sets it to an installed tree), else the repo."""
    return os.environ.get("PYRUNC") or str(REPO / "build" / "root" / "bin" / "pyrunc")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="kernel tests need root")
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal busybox root filesystem built from Debian's busybox-static."""
    root = tmp_path_factory.mktemp("rootfs-src") / "rootfs"
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root"):
        (root / d).mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return root


def base_config(args: list[str]) -> dict:
    """runc's `spec` defaults with terminal off: the shape most tests start from."""
    from pyrunc.specgen import default_spec
    cfg = default_spec()
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args
    return cfg


class Bundle:
    """A bundle directory whose rootfs is a bind-free copy of the shared busybox tree."""

    def __init__(self, path: Path, rootfs_src: Path) -> None:
        self.path = path
        self.rootfs = path / "rootfs"
        shutil.copytree(rootfs_src, self.rootfs, symlinks=True)
        self.config = base_config(["true"])

    def write(self, config: dict | None = None) -> Bundle:
        if config is not None:
            self.config = config
        (self.path / "config.json").write_text(json.dumps(self.config, indent=1))
        return self

    def edit(self) -> dict:
        self.config = copy.deepcopy(self.config)
        return self.config


class Runtime:
    """Calls the pyrunc under test with a private --root, recording the ids it was given."""

    def __init__(self, binary: str, root: Path, prefix: str) -> None:
        self.binary = binary
        self.root = root
        self.prefix = prefix
        self.ids: set[str] = set()

    def new_id(self, tag: str = "c") -> str:
        cid = f"{self.prefix}-{tag}-{uuid.uuid4().hex[:6]}"
        self.ids.add(cid)
        return cid

    def __call__(self, *args: str, check: bool = False, timeout: float = 60, input: bytes | None = None,
                 env: dict[str, str] | None = None, global_args: tuple[str, ...] = (),
                 **kwargs: object) -> subprocess.CompletedProcess:
        cmd = [self.binary, "--root", str(self.root), *global_args, *args]
        kwargs.setdefault("capture_output", True)
        proc = subprocess.run(cmd, timeout=timeout, input=input, env=env, check=False, **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}: {proc.stderr!r} {proc.stdout!r}")
        return proc

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid, check=True).stdout)


def leaks(prefix: str, paths: list[str], root: Path) -> list[str]:
    """Everything a test may have left behind on the host, described one item per line."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if any(p in line for p in paths):
                found.append("mount: " + line.split(" - ")[0].split()[4])
    for hier in Path("/sys/fs/cgroup").iterdir():
        if not hier.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(hier):
            for d in dirnames:
                if d.startswith(prefix):
                    found.append(f"cgroup: {dirpath}/{d}")
            if dirpath.count("/") > 8:
                dirnames.clear()
    if root.exists():
        for entry in root.iterdir():
            found.append(f"state dir: {entry}")
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        try:
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if status == "Z":
            continue
        if prefix in cgroup:
            found.append(f"process: {pid} in {cgroup.splitlines()[0]}")
        elif _mentions(cmdline, paths):
            # A forked pyrunc (intermediate, init before execve) or a pyrunc-shim: their command
            # lines name the test's --root or state dir even before they join any cgroup.
            found.append(f"process: {pid} ({cmdline.strip()[:120]})")
        # fds of long-lived processes (pyrunc-shim, a container's init, any daemon): none may
        # still point into the test's bundle or state root once the test is over.
        found += [f"fd: {pid} {fd} -> {target}" for fd, target in open_fds(pid).items()
                  if _mentions(target, paths)]
    return found


def _mentions(text: str, paths: list[str]) -> bool:
    """text names one of paths or something under it (not merely a longer sibling's name)."""
    return any(p + "/" in text or text.endswith(p) or p + " " in text for p in paths)


def open_fds(pid: int | str) -> dict[str, str]:
    """fd number -> what it points to, for one process (empty if it is gone)."""
    out = {}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in names:
        try:
            out[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
    return out


@pytest.fixture
def pyrunc(tmp_path: Path, request: pytest.FixtureRequest):
    """The runtime under test with a private state root; fails the test on any leftover."""
    prefix = "pyrunct" + uuid.uuid4().hex[:6]
    rt = Runtime(pyrunc_binary(), tmp_path / "state", prefix)
    yield rt
    for cid in list(rt.ids):
        if (rt.root / cid).exists():
            rt("delete", "--force", cid)
    left = leaks(prefix, [str(tmp_path)], rt.root)
    assert not left, "leftovers:\n" + "\n".join(left)


@pytest.fixture
def bundle(tmp_path: Path, rootfs: Path) -> Bundle:
    b = Bundle(tmp_path / "bundle", rootfs)
    (tmp_path / "bundle").mkdir(exist_ok=True)
    return b


# -- helpers for the kernel tests (namespaces, rootfs, process, cgroup placement) -----------------

class RunResult:
    """What `pyrunc run` gave back, decoded; `out` and `err` are text."""

    def __init__(self, proc: subprocess.CompletedProcess, cid: str) -> None:
        self.rc = proc.returncode
        self.out = proc.stdout.decode(errors="replace")
        self.err = proc.stderr.decode(errors="replace")
        self.cid = cid

    def __iter__(self):
        return iter((self.rc, self.out, self.err))

    def __repr__(self) -> str:
        return f"RunResult(rc={self.rc}, out={self.out!r}, err={self.err!r})"


@pytest.fixture
def run_container(pyrunc: Runtime, bundle: Bundle):
    """run_container(args, edit=fn, flags=(...)) writes the bundle's config with those args (after
    fn(config) changes it) and does `pyrunc run [flags] --bundle B ID`: a RunResult."""

    def run(args: list[str], edit=None, flags: tuple[str, ...] = (), timeout: float = 30,
            **kwargs: object) -> RunResult:
        cfg = base_config(list(args))
        if edit is not None:
            edit(cfg)
        bundle.write(cfg)
        cid = pyrunc.new_id()
        proc = pyrunc("run", *flags, "--bundle", str(bundle.path), cid, timeout=timeout, **kwargs)
        return RunResult(proc, cid)

    return run


def one_line_error(err: str) -> str:
    """The single error line of a failed command's stderr (warnings aside)."""
    lines = [line for line in err.splitlines() if line.strip() and not is_warning(line)]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    return lines[0]


def is_warning(line: str) -> bool:
    return line.startswith("pyrunc: warning:") or "level=warning" in line


def poll(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def wait_status(rt: Runtime, cid: str, want: str, timeout: float = 5.0) -> dict:
    last: dict = {}

    def check() -> bool:
        nonlocal last
        last = rt.state(cid)
        return last["status"] == want
    try:
        poll(check, timeout, f"{cid} to be {want}")
    except AssertionError:
        raise AssertionError(f"{cid} never became {want}; last state {last}") from None
    return last


# -- a private network namespace for the networking tests (netdev, CNI) ------------------------

def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def links(ns: str) -> list[str]:
    """Interface names in the named network namespace, sorted."""
    out = ip("-n", ns, "-o", "link", "show").stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


class NetNS:
    """A network namespace a test made (`ip netns add`), in which pyrunc runs."""

    def __init__(self, name: str) -> None:
        self.name = name

    def sh(self, script: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.name, "sh", "-ec", script], check=True,
                       capture_output=True)

    def addrs(self, dev: str) -> str:
        return ip("-n", self.name, "-o", "addr", "show", "dev", dev).stdout


@pytest.fixture
def netns(pyrunc: Runtime, tmp_path: Path):
    """The `pyrunc` fixture's runtime, moved into a fresh network namespace with nsenter (only
    the network namespace: cgroups and mounts stay the host's), so no host interface is ever
    touched; the namespace is deleted afterwards, its containers first."""
    name = f"{pyrunc.prefix}-net"
    ip("netns", "add", name)
    wrapper = tmp_path / "pyrunc-in-netns"
    wrapper.write_text(f"#!/bin/sh\nexec nsenter --net=/run/netns/{name} {pyrunc.binary} \"$@\"\n")
    wrapper.chmod(0o755)
    original, pyrunc.binary = pyrunc.binary, str(wrapper)
    try:
        yield NetNS(name)
        for cid in list(pyrunc.ids):
            if (pyrunc.root / cid).exists():
                pyrunc("delete", "--force", cid)
    finally:
        pyrunc.binary = original
        ip("netns", "del", name, check=False)
    assert name not in ip("netns", "list").stdout
