"""Session fixtures: one private podman, containerd and dockerd, each given pyrunc and runc.

The tests install nothing (contrib/setup.sh installs podman, containerd and docker.io); an
engine that is missing or cannot start skips its tests with the reason. At the end of the
session every daemon is stopped, the lab is removed, and `Traces` must find nothing left.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from .enginelab import (
    RUNC,
    Traces,
    contrib_snippet,
    docker_archive,
    rootfs_tar,
    start_daemon,
    stop_daemon,
    unmount_under,
)

RUNTIMES = ("runc", "pyrunc")


def pyrunc_launcher() -> str:
    """As tests/conftest.py's pyrunc_binary: $PYRUNC (make test: build/root/bin/pyrunc)."""
    repo = Path(__file__).resolve().parents[2]
    return os.path.abspath(os.environ.get("PYRUNC") or repo / "build" / "root" / "bin" / "pyrunc")


class Engine:
    """Runs one engine's CLI; `runtime` picks runc or pyrunc for the commands that take it."""

    def __init__(self, lab: Path, env: dict[str, str]) -> None:
        self.lab = lab
        self.env = env

    def argv(self, args: tuple[str, ...], runtime: str | None) -> list[str]:
        raise NotImplementedError

    def __call__(self, *args: str, runtime: str | None = None, timeout: float = 90,
                 input: str | None = None, check: bool = False) -> subprocess.CompletedProcess:
        cmd = self.argv(args, runtime)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              input=input, env=self.env)
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}: {proc.stderr}{proc.stdout}")
        return proc


class Podman(Engine):
    def __init__(self, lab: Path, env: dict[str, str], runtimes: dict[str, str]) -> None:
        super().__init__(lab, env)
        self.runtimes = runtimes

    def base(self) -> list[str]:
        d = self.lab / "podman"
        return ["podman", "--root", str(d / "root"), "--runroot", str(d / "runroot"),
                "--tmpdir", str(d / "tmp"), "--storage-driver", "overlay"]

    def argv(self, args, runtime):
        rt = ["--runtime", self.runtimes[runtime]] if runtime else []
        return [*self.base(), *rt, *args]


class Ctr(Engine):
    def __init__(self, lab: Path, env: dict[str, str], runtimes: dict[str, str]) -> None:
        super().__init__(lab, env)
        self.runtimes = runtimes

    def argv(self, args, runtime):
        base = ["ctr", "--address", str(self.lab / "containerd" / "containerd.sock")]
        if runtime and args[0] == "run":
            return [*base, "run", "--runc-binary", self.runtimes[runtime], "--runc-root",
                    str(self.lab / "containerd" / "runc-root"), "--fifo-dir",
                    str(self.lab / "containerd" / "fifo"), *args[1:]]
        return [*base, *args]


class Docker(Engine):
    def argv(self, args, runtime):
        base = ["/usr/bin/docker", "-H", f"unix://{self.lab}/docker/docker.sock"]
        if runtime and args[0] in ("run", "create"):
            return [*base, args[0], "--runtime", runtime, *args[1:]]
        return [*base, *args]


@pytest.fixture(scope="session")
def lab(rootfs: Path):
    """The session's private directory, images, the runtimes under the name `runc`, and the
    final leak check of everything the engines touched."""
    if os.geteuid() != 0:
        pytest.skip("engine tests need root")
    lock = machine_lock()
    path = Path(tempfile.mkdtemp(prefix="pyrunc-eng-", dir="/tmp"))
    traces = Traces(path)
    launcher = pyrunc_launcher()
    # podman only parses the JSON error log of runtimes it knows by name: both are called runc.
    # An installed launcher (make test) comes with `make install`'s libexec/pyrunc/runc.
    for name, target in (("runc", RUNC), ("pyrunc", launcher)):
        (path / "rt" / name).mkdir(parents=True)
        (path / "rt" / name / "runc").symlink_to(target)
    installed = Path(launcher).parent.parent / "libexec" / "pyrunc" / "runc"
    pyrunc_runc = path / "rt" / "pyrunc" / "runc"
    if installed.exists() and os.path.realpath(installed) == os.path.realpath(launcher):
        pyrunc_runc = installed
    tar = rootfs_tar(rootfs, path / "rootfs.tar")
    docker_archive(tar, path / "bb-docker.tar", "localhost/bb:latest")
    (path / "hostdir").mkdir()
    (path / "hostdir" / "greeting").write_text("hello from the host\n")
    state = {"path": path, "launcher": launcher,
             "runtimes": {"runc": str(path / "rt" / "runc" / "runc"),
                          "pyrunc": str(pyrunc_runc)}}
    yield state
    unmount_under(path)
    shutil.rmtree(path, ignore_errors=True)
    traces.clean_outside()
    left = traces.leftovers()
    os.close(lock)
    assert not left, "the engines left traces:\n" + "\n".join(left)


def machine_lock(wait: float = 900) -> int:
    """One engines session at a time on the machine: the engines share paths outside any lab
    (/run/containerd, /opt/containerd, the libpod_parent/default/docker cgroups) that each
    session removes at its end, so a second suite running meanwhile (another checkout's) waits.
    The lock is on /run/lock itself, which always exists: no lock file is left behind."""
    fd = os.open("/run/lock", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                pytest.skip(f"another engines session held /run/lock for {wait:.0f}s")
            time.sleep(1)


def engine_env(lab: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "CONTAINERS_"))}
    env["DOCKER_CONFIG"] = str(lab / "docker-cli")  # podman reads its auth file too
    (lab / "docker-cli").mkdir(exist_ok=True)
    (lab / "docker-cli" / "config.json").write_text("{}")
    env["CONTAINERS_CONF"] = str(lab / "podman" / "containers.conf")
    return env


def engine_dir(lab: Path, engine: str, programs: tuple[str, ...], package: str) -> Path:
    """The engine's own directory in the lab; its tests are skipped if a program is missing
    (a path is checked as it is: /usr/local/bin/docker is not Debian's)."""
    if not all(shutil.which(p) for p in programs):
        pytest.skip(f"{engine} cannot start: {package} not installed (contrib/setup.sh)")
    d = lab / engine
    d.mkdir()
    return d


def import_image(engine: Engine, why: str | None, *args: str, timeout: float = 90) -> str | None:
    """The busybox image imported into a daemon that started (why is None), or why it cannot
    serve the tests."""
    if why is not None:
        return why
    res = engine(*args, timeout=timeout)
    return None if res.returncode == 0 else f"image import: {res.stderr.strip()}"


@pytest.fixture(scope="session")
def podman(lab):
    path: Path = lab["path"]
    d = engine_dir(path, "podman", ("podman", "conmon"), "podman/conmon")
    # ENGINES.md sec. 5: no CAP_SYS_RESOURCE here (podman's default rlimits of 1048576 fail with
    # runc as with pyrunc), no systemd, and every podman path private.
    # README's containers.conf entry (contrib/engines): `--runtime pyrunc` by name.
    engine_snippet = contrib_snippet("containers.conf", lab["launcher"]).split("[engine]\n", 1)[1]
    (d / "containers.conf").write_text(f"""[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
tmp_dir = "{d}/tmp"
static_dir = "{d}/static"
volume_path = "{d}/volumes"
{engine_snippet}
[network]
network_config_dir = "{d}/net"
""")
    p = Podman(path, engine_env(path), lab["runtimes"])
    res = p("import", "--change", 'CMD ["/bin/sh"]', str(path / "rootfs.tar"), "localhost/bb:latest")
    if res.returncode != 0:
        pytest.skip(f"podman cannot start: {res.stderr.strip()[-400:]}")
    yield p
    p("rm", "--all", "--force", "--time", "0")
    p("rmi", "--all", "--force")
    unmount_under(d)


@pytest.fixture(scope="session")
def ctr(lab):
    path: Path = lab["path"]
    d = engine_dir(path, "containerd", ("containerd", "ctr"), "containerd")
    disabled = ", ".join(f'"io.containerd.{p}"' for p in (
        "grpc.v1.cri", "snapshotter.v1.aufs", "snapshotter.v1.btrfs", "snapshotter.v1.devmapper",
        "snapshotter.v1.zfs", "tracing.processor.v1.otlp", "internal.v1.tracing"))
    (d / "config.toml").write_text(f"""version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [{disabled}]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
""")
    daemon, why = start_daemon(["containerd", "--config", str(d / "config.toml")],
                               d / "containerd.sock", d / "containerd.log")
    c = Ctr(path, engine_env(path), lab["runtimes"])
    why = import_image(c, why, "images", "import", str(path / "bb-docker.tar"))
    try:
        if why:
            pytest.skip(f"containerd cannot start: {why}")
        yield c
    finally:
        for line in c("task", "ls", "-q").stdout.split():
            c("task", "kill", "-a", "-s", "SIGKILL", line)
            c("task", "delete", "--force", line)
        for line in c("containers", "ls", "-q").stdout.split():
            c("containers", "delete", line)
        c("images", "rm", "localhost/bb:latest")
        stop_daemon(daemon)
        unmount_under(d)


@pytest.fixture(scope="session")
def docker(lab):
    path: Path = lab["path"]
    d = engine_dir(path, "docker", ("/usr/bin/docker", "dockerd"), "docker.io")
    # README's daemon.json (contrib/engines): pyrunc as a named runtime beside the built-in runc.
    (d / "daemon.json").write_text(contrib_snippet("daemon.json", lab["launcher"]))
    # No iptables rules, no docker0 bridge, cgroupfs (ENGINES.md sec. 5.7); `--add-runtime`
    # (README's other way) adds pyrunc once more under a second name.
    daemon, why = start_daemon(
        ["dockerd", "--config-file", str(d / "daemon.json"), "--data-root", str(d / "data"),
         "--exec-root", str(d / "exec"), "--pidfile", str(d / "dockerd.pid"),
         "-H", f"unix://{d}/docker.sock", "--iptables=false", "--ip-forward=false",
         "--ip-masq=false", "--bridge=none", "--storage-driver", "overlay2",
         "--exec-opt", "native.cgroupdriver=cgroupfs",
         "--add-runtime", f"pyrunc-cli={lab['launcher']}"],
        d / "docker.sock", d / "dockerd.log", env=engine_env(path))
    dk = Docker(path, engine_env(path))
    why = import_image(dk, why, "import", "-c", 'CMD ["/bin/sh"]', str(path / "rootfs.tar"),
                       "bb:latest", timeout=120)
    try:
        if why:
            pytest.skip(f"docker cannot start: {why}")
        yield dk
    finally:
        ids = dk("ps", "-aq").stdout.split()
        if ids:
            dk("rm", "-f", *ids)
        dk("rmi", "-f", "bb:latest")
        stop_daemon(daemon, timeout=60)
        unmount_under(d)


@pytest.fixture(params=RUNTIMES)
def runtime(request) -> str:
    """Each engine test runs once with runc (the reference) and once with pyrunc."""
    return request.param
