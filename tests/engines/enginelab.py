"""Private podman, containerd and dockerd instances for the engine tests, and the busybox images.

Everything an engine keeps lives under one temporary directory (its "lab"): storage, state,
sockets, runtime roots. What the engines of Debian 12 still write outside it (ENGINES.md sec. 5)
is recorded before the session and removed after it if the session created it; `Traces` then
checks that nothing is left: processes, mounts, state directories, cgroups, iptables chains.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

RUNC = "/usr/sbin/runc"
# Paths outside the lab that the engines create on first use (ENGINES.md sec. 5.4, 5.6, 5.7).
OUTSIDE = ["/etc/docker/key.json", "/opt/containerd", "/run/docker", "/run/containerd",
           "/var/lib/containers", "/run/containers", "/run/netns"]
# Top-level cgroup directories the three engines use with the cgroupfs driver.
CGROUP_PARENTS = ["libpod_parent", "default", "docker"]
STATE_ROOTS = ["/run/pyrunc", "/run/runc"]  # podman never passes --root


def cmdlines() -> dict[int, str]:
    out = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                out[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
    return out


def iptables_chains() -> set[str]:
    names: set[str] = set()
    for table in ("filter", "nat"):
        proc = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True)
        names.update(f"{table}:{line.split()[1]}" for line in proc.stdout.splitlines()
                     if line.startswith("-N "))
    return names


def cgroup_dirs() -> set[str]:
    found = set()
    for hier in Path("/sys/fs/cgroup").iterdir():
        for name in CGROUP_PARENTS:
            if (hier / name).is_dir():
                found.add(str(hier / name))
    return found


def remove_cgroup_tree(path: str) -> None:
    """rmdir bottom-up: cgroup directories cannot be removed with their control files."""
    for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda t: -t[0].count("/")):
        for _ in range(50):
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)  # the last task of a just-stopped container is still exiting


class Traces:
    """What exists before the session; `leftovers()` names what the session added and left."""

    def __init__(self, lab: Path) -> None:
        self.lab = lab
        self.outside = {p for p in OUTSIDE if os.path.lexists(p)}
        self.cgroups = cgroup_dirs()
        self.state = {root: set(os.listdir(root)) if os.path.isdir(root) else set()
                      for root in STATE_ROOTS}
        self.chains = iptables_chains()
        self.forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()

    def clean_outside(self) -> None:
        """Remove what the engines created outside the lab (only what did not exist before)."""
        for path in OUTSIDE:
            if path in self.outside or not os.path.lexists(path):
                continue
            subprocess.run(["umount", "-R", path], capture_output=True)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        for cg in cgroup_dirs() - self.cgroups:
            remove_cgroup_tree(cg)

    def leftovers(self) -> list[str]:
        left = []
        lab = str(self.lab)
        for pid, cmd in cmdlines().items():
            if lab in cmd and pid != os.getpid():
                left.append(f"process {pid}: {cmd[:160]}")
        with open("/proc/self/mountinfo") as f:
            left += [f"mount: {line.split()[4]}" for line in f if lab in line]
        if os.path.exists(lab):
            left.append(f"lab directory {lab}")
        for path in OUTSIDE:
            if path not in self.outside and os.path.lexists(path):
                left.append(f"path outside the lab: {path}")
        left += [f"cgroup: {cg}" for cg in cgroup_dirs() - self.cgroups]
        for root, before in self.state.items():
            now = set(os.listdir(root)) if os.path.isdir(root) else set()
            # Only podman's container ids: other suites may use the default root meanwhile.
            left += [f"state dir: {root}/{name}" for name in now - before
                     if len(name) == 64 and all(c in "0123456789abcdef" for c in name)]
        left += [f"iptables chain {c}" for c in iptables_chains() - self.chains]
        if Path("/proc/sys/net/ipv4/ip_forward").read_text() != self.forward:
            left.append("net.ipv4.ip_forward changed")
        return left


def unmount_under(path: Path) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if str(path) in line.split()[4]]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def stop_daemon(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_for(predicate, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def start_daemon(argv: list[str], sock: Path, log: Path,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str | None]:
    """The daemon, its output in `log`, and None once it listens on `sock` (else why not)."""
    with open(log, "w") as logf:
        daemon = subprocess.Popen(argv, stdout=logf, stderr=logf, start_new_session=True, env=env)
    return daemon, wait_for_socket(sock, daemon, log)


def wait_for_socket(path: Path, proc: subprocess.Popen, log: Path, timeout: float = 60) -> str | None:
    """None once the socket accepts connections, else why the daemon did not start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited {proc.returncode}: {log.read_text()[-600:]}"
        if path.exists():
            return None
        time.sleep(0.1)
    return f"no socket after {timeout}s: {log.read_text()[-600:]}"


def contrib_snippet(name: str, launcher: str) -> str:
    """contrib/engines/NAME (what `make install` puts in share/pyrunc/engines) for this launcher."""
    text = (Path(__file__).resolve().parents[2] / "contrib" / "engines" / name).read_text()
    return text.replace("@PREFIX@/bin/pyrunc", launcher)


# -- images ---------------------------------------------------------------------------------------

def rootfs_tar(rootfs: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w") as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name)
    return dest


def docker_archive(layer: Path, dest: Path, tag: str) -> Path:
    """A `docker save`-format archive with one layer: what `ctr images import` reads."""
    data = layer.read_bytes()
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin:/usr/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag],
                            "Layers": ["layer/layer.tar"]}]).encode()
    with tarfile.open(dest, "w") as tar:
        for name, blob in (("layer/layer.tar", data), (config_name, config),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return dest


# -- a terminal for -it ---------------------------------------------------------------------------

# An init that reports the signals it gets (the engines' `logs` show them) and never exits.
TRAP_SCRIPT = 'trap "echo got USR1" USR1; trap "echo got TERM" TERM; while :; do sleep 0.1; done'


# docker's and podman's limits test: the flags, what the container prints, what it should show.
LIMITS_FLAGS = ("--pids-limit", "50", "--memory", "128m", "--cpus", "1.5", "--cap-drop", "ALL",
                "--cap-add", "NET_BIND_SERVICE", "--read-only")
LIMITS_SCRIPT = ("cd /sys/fs/cgroup; cat pids/pids.max memory/memory.limit_in_bytes "
                 "cpu/cpu.cfs_quota_us; grep CapEff /proc/self/status; touch /a; "
                 "cat /x/greeting; ")
LIMITS_SEEN = ["50", "134217728", "150000", "CapEff:\t0000000000000400", "hello from the host"]


def check_exec(engine, call, name: str, runtime: str | None, id_out: str, status: int) -> None:
    """`exec` into the running container `name`: `id` prints id_out, an exit status comes back,
    and `exec -it` gets a terminal. `call` is `engine` with the runtime bound, if it needs one."""
    res = call("exec", name, "id")
    assert (res.returncode, res.stdout) == (0, id_out), res
    assert call("exec", name, "sh", "-c", f"exit {status}").returncode == status
    rc, out = run_in_pty(engine.argv(("exec", "-it", name, "sh", "-c", "tty; exit 5"), runtime),
                         env=engine.env)
    assert (rc, out.strip("\0\n")) == (5, "/dev/pts/0"), out


def check_signal_and_pause(engine, name: str) -> None:
    """`engine` (docker or podman, with its runtime bound) delivers USR1 to the TRAP_SCRIPT
    init, then pauses and unpauses it as its inspect shows."""
    engine("kill", "--signal", "USR1", name, check=True)
    wait_for(lambda: "got USR1" in engine("logs", name).stdout, "USR1 to reach the trap")
    engine("pause", name, check=True)
    assert engine("inspect", "-f", "{{.State.Status}}", name).stdout == "paused\n"
    engine("unpause", name, check=True)
    assert engine("inspect", "-f", "{{.State.Status}}", name).stdout == "running\n"


def check_interactive_shell(engine, run_args: tuple[str, ...], runtime: str) -> None:
    """`<engine> run <run_args> sh` at a terminal: arithmetic, the tty, an exit status."""
    rc, out = run_in_pty(engine.argv(("run", *run_args, "sh"), runtime),
                         send="echo $((6*7)); tty; exit 4\n", wait_for="# ", env=engine.env)
    assert rc == 4, out
    assert "\n42\n/dev/pts/0\n" in out, out


def run_in_pty(argv: list[str], send: str = "", wait_for: str = "", timeout: float = 60,
               env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run argv with a pty as its controlling terminal and stdio, as a person at a terminal
    would; type `send` once `wait_for` (e.g. a shell prompt) has appeared; return (status,
    everything the terminal showed)."""
    master, slave = pty.openpty()
    # login_tty makes the pty the child's controlling terminal, which no Popen option does;
    # nothing else runs threads in the engines' tests.
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                            preexec_fn=lambda: os.login_tty(slave),  # noqa: PLW1509
                            close_fds=True)
    os.close(slave)
    out = b""
    sent = not send
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sent and wait_for.encode() in out:
                os.write(master, send.encode())
                sent = True
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every holder of the terminal is gone
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        rc = proc.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return rc, out.decode(errors="replace").replace("\r", "")
