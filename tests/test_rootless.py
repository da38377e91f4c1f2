"""Rootless: an unprivileged user (made by the test, removed after) runs pyrunc with its own ids
mapped to root, its state under $XDG_RUNTIME_DIR/pyrunc, and cgroups only where delegated.

The bundle is the user's own (a world-traversable temporary directory: pytest's is 0700), and the
pyrunc under test must be readable by that user; when it is not (a checkout under /root), it is
copied to such a directory first. Leftovers are checked here: rootless containers have no
cgroups, so the shared fixture's process check cannot see them; processes are found by uid.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from conftest import one_line_error, poll, pyrunc_binary

pytestmark = pytest.mark.kernel


def launcher_for(uid: int, gid: int, scratch: Path) -> str:
    """The pyrunc under test, or a copy of its install tree the user can read."""
    binary = pyrunc_binary()
    probe = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                            binary, "--version"], capture_output=True)
    if probe.returncode == 0:
        return binary
    tree = Path(binary).resolve().parent.parent      # <prefix>/bin/pyrunc -> <prefix>
    copy = scratch / "pyrunc-copy"
    shutil.copytree(tree, copy, symlinks=True)
    launcher = copy / "bin" / "pyrunc"
    launcher.write_text(launcher.read_text().replace(str(tree), str(copy)))
    return str(launcher)


class User:
    """An unprivileged user with a bundle of its own; runs pyrunc as itself."""

    def __init__(self, name: str, work: Path, rootfs_src: Path) -> None:
        subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name], check=True)
        self.name = name
        out = subprocess.run(["id", "-u", name], capture_output=True, check=True).stdout
        self.uid = int(out)
        self.gid = int(subprocess.run(["id", "-g", name], capture_output=True,
                                      check=True).stdout)
        self.work = work
        self.xdg = work / "xdg"
        self.bundle = work / "bundle"
        self.xdg.mkdir(mode=0o700)
        self.bundle.mkdir()
        shutil.copytree(rootfs_src, self.bundle / "rootfs", symlinks=True)
        for dirpath, dirnames, filenames in os.walk(work):
            for n in [dirpath] + [os.path.join(dirpath, x) for x in dirnames + filenames]:
                os.lchown(n, self.uid, self.gid)
        self.binary = launcher_for(self.uid, self.gid, work)
        self.ids: set[str] = set()

    def new_id(self) -> str:
        cid = f"rl-{uuid.uuid4().hex[:8]}"
        self.ids.add(cid)
        return cid

    def argv(self, *args: str) -> list[str]:
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                "env", "-i", f"XDG_RUNTIME_DIR={self.xdg}", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                self.binary, *args]

    def __call__(self, *args: str, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        proc = subprocess.run(self.argv(*args), cwd=self.bundle, timeout=60, **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} exited {proc.returncode}: {proc.stderr!r}")
        return proc

    def config(self, args: list[str], edit=None) -> dict:
        """`pyrunc spec --rootless`, run as the user (its own ids mapped), with these args."""
        cfg_file = self.bundle / "config.json"
        if cfg_file.exists():
            cfg_file.unlink()
        self("spec", "--rootless", check=True)
        cfg = json.loads(cfg_file.read_text())
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = args
        if edit:
            edit(cfg)
        cfg_file.write_text(json.dumps(cfg))
        return cfg

    def pids(self) -> list[int]:
        """Live (non-zombie) processes running as this user."""
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            uid_line = next(x for x in status.splitlines() if x.startswith("Uid:"))
            if uid_line.split()[1] == str(self.uid) and "State:\tZ" not in status:
                found.append(int(pid))
        return found

    def subordinate_ids(self) -> tuple[int, int]:
        """Start of this user's /etc/subuid and /etc/subgid ranges (added if useradd did not;
        userdel removes them)."""
        starts = []
        for kind, flag in (("subuid", "--add-subuids"), ("subgid", "--add-subgids")):
            path = Path("/etc") / kind
            entries = [line.split(":") for line in path.read_text().splitlines()] \
                if path.exists() else []
            mine = [int(e[1]) for e in entries if e[0] == self.name and int(e[2]) >= 65536]
            if not mine:
                top = max([int(e[1]) + int(e[2]) for e in entries if len(e) == 3] + [1_000_000])
                subprocess.run(["usermod", flag, f"{top}-{top + 65535}", self.name], check=True)
                mine = [top]
            starts.append(mine[0])
        return starts[0], starts[1]

    def leftovers(self) -> list[str]:
        found = [f"process {pid}" for pid in self.pids()]
        with open("/proc/self/mountinfo") as f:
            found += [f"mount: {line.split()[4]}" for line in f if str(self.work) in line]
        state = self.xdg / "pyrunc"
        if state.exists():
            found += [f"state dir: {p}" for p in state.iterdir()]
        return found


@pytest.fixture
def user(rootfs: Path):
    if shutil.which("setpriv") is None or shutil.which("useradd") is None:
        pytest.skip("needs setpriv (util-linux) and useradd (passwd)")
    work = Path(tempfile.mkdtemp(prefix="pyrunc-rootless-", dir="/tmp"))
    work.chmod(0o755)
    u = None
    try:
        u = User(f"pyrl{uuid.uuid4().hex[:8]}", work, rootfs)
        yield u
        for cid in u.ids:
            if (u.xdg / "pyrunc" / cid).exists():
                u("delete", "--force", cid)
        left = u.leftovers()
        assert not left, "leftovers:\n" + "\n".join(left)
    finally:
        if u is not None:
            for pid in u.pids():  # only the user this test made owns these
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            subprocess.run(["userdel", u.name], check=False)
        shutil.rmtree(work, ignore_errors=True)


def test_rootless_run_maps_the_users_own_ids(user):
    user.config(["sh", "-c", ("cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; "
                  "id -u; id -g; hostname; grep -c . /proc/self/mounts")])
    cid = user.new_id()
    res = user("run", cid)
    out, err = res.stdout.decode(), res.stderr.decode()
    assert res.returncode == 0, err
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["0", str(user.uid), "1"] and lines[1] == ["0", str(user.gid), "1"], out
    # Without newgidmap, an unprivileged writer must deny setgroups first (as runc does).
    assert lines[2] == ["deny"]
    assert lines[3] == ["0"] and lines[4] == ["0"] and lines[5] == ["pyrunc"]
    # No cgroup is writable by this user on this host: skipped, with one warning.
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "rootless: not using the cgroup hierarchies" in warnings[0], err


def test_rootless_lifecycle_and_exec_with_state_under_xdg_runtime_dir(user):
    user.config(["sleep", "1000"])
    cid = user.new_id()
    user("create", "--bundle", str(user.bundle), cid, check=True,
         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
         capture_output=False)
    assert (user.xdg / "pyrunc" / cid / "state.json").exists()
    st = json.loads(user("state", cid, check=True).stdout)
    assert st["status"] == "created"
    status = Path(f"/proc/{st['pid']}/status").read_text()
    assert next(x for x in status.splitlines() if x.startswith("Uid:")).split()[1] == str(user.uid)
    user("start", cid, check=True)
    out = user("exec", cid, "sh", "-c", "id -u; cat /proc/self/uid_map", check=True).stdout.decode()
    assert out.split() == ["0", "0", str(user.uid), "1"], out
    user("kill", cid, "KILL", check=True)
    poll(lambda: json.loads(user("state", cid, check=True).stdout)["status"] == "stopped",
         10, "the rootless container to stop")
    user("delete", cid, check=True)
    assert not (user.xdg / "pyrunc" / cid).exists()


def test_rootless_uses_a_delegated_cgroup(user):
    deleg = Path("/sys/fs/cgroup/pids") / f"{user.name}-deleg"
    if not deleg.parent.is_dir():
        pytest.skip("no v1 pids hierarchy to delegate")
    deleg.mkdir()
    try:
        for p in [deleg] + list(deleg.iterdir()):
            os.chown(p, user.uid, user.gid)
        user.config(["sh", "-c", "grep pids /proc/self/cgroup; cat /sys/fs/cgroup/pids/pids.max"],
                    edit=lambda c: c["linux"].update(resources={"pids": {"limit": 42}}))
        cid = user.new_id()
        # The caller stands in the delegated cgroup: the container's goes below it.
        argv = ["sh", "-c", f'echo $$ > {deleg}/cgroup.procs && exec "$@"', "sh",
                *user.argv("run", cid)]
        res = subprocess.run(argv, cwd=user.bundle, capture_output=True, timeout=60)
        out, err = res.stdout.decode(), res.stderr.decode()
        assert res.returncode == 0, err
        assert out.splitlines()[0].endswith(f"/{deleg.name}/{cid}"), out
        assert out.splitlines()[1] == "42"
        assert "pids" not in next(x for x in err.splitlines() if "warning" in x)
        assert not (deleg / cid).exists(), "the container's cgroup outlived it"
    finally:
        deleg.rmdir()


def test_rootless_maps_a_range_through_newuidmap(user):
    if shutil.which("newuidmap") is None or shutil.which("newgidmap") is None:
        pytest.skip("newuidmap/newgidmap (Debian: uidmap) are not installed")
    sub_u, sub_g = user.subordinate_ids()

    def edit(cfg: dict) -> None:
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": user.uid, "size": 1},
                                       {"containerID": 1, "hostID": sub_u, "size": 1000}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": user.gid, "size": 1},
                                       {"containerID": 1, "hostID": sub_g, "size": 1000}]
        cfg["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
        for kind in ("bounding", "effective", "permitted"):
            cfg["process"]["capabilities"][kind].append("CAP_CHOWN")
    user.config(["sh", "-c", ("cat /proc/self/uid_map /proc/self/setgroups; touch /tmp/f && "
                  "chown 5:7 /tmp/f && stat -c %u:%g /tmp/f")], edit=edit)
    res = user("run", user.new_id())
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["0", str(user.uid), "1"] and lines[1] == ["1", str(sub_u), "1000"], out
    # The setuid helper wrote gid_map, so setgroups stays allowed (runc's rule).
    assert lines[2] == ["allow"] and lines[3] == ["5:7"], out


def no_pid_namespace(cfg: dict) -> None:
    cfg["linux"]["namespaces"].remove({"type": "pid"})


def test_rootless_without_cgroup_or_pid_namespace_is_warned_about(user):
    def host_proc(cfg: dict) -> None:
        no_pid_namespace(cfg)
        # A new proc needs a pid namespace the user namespace owns: the host's, bound.
        cfg["mounts"][0] = {"destination": "/proc", "type": "bind", "source": "/proc",
                            "options": ["rbind"]}
    user.config(["true"], edit=host_proc)
    res = user("run", user.new_id())
    assert res.returncode == 0, res.stderr
    assert "no cgroup and no private pid namespace" in res.stderr.decode()
    user.config(["true"], edit=no_pid_namespace)
    res = user("run", user.new_id())
    assert res.returncode == 1
    assert "mounts[0] /proc: proc in a user namespace needs a pid namespace of its own" in \
        one_line_error(res.stderr.decode())


def test_rootless_flag_values(user):
    user.config(["true"])
    res = user("--rootless=maybe", "run", user.new_id())
    assert res.returncode == 1
    assert "--rootless: invalid value 'maybe'" in one_line_error(res.stderr.decode())
    # --rootless=false: cgroup errors are errors again, and nothing is left behind.
    res = user("--rootless=false", "run", user.new_id())
    assert res.returncode == 1
    assert "permission denied" in one_line_error(res.stderr.decode()).lower()


@pytest.mark.parametrize("edit, needle", [
    (lambda c: (c["linux"]["namespaces"].remove({"type": "user"}),
                c["linux"].pop("uidMappings"), c["linux"].pop("gidMappings")),
     "rootless container requires user namespaces"),
    # Not its own id: only newuidmap could, and /etc/subuid grants it no such thing.
    (lambda c: c["linux"].update(uidMappings=[{"containerID": 0, "hostID": 0, "size": 1}]),
     "linux.uidMappings: "),
    (lambda c: c["process"]["user"].update(additionalGids=[0]),
     "cannot set any additional groups in a rootless container"),
    (lambda c: c["mounts"].append({"destination": "/tmp", "type": "bind", "source": "/tmp",
                                   "options": ["rbind", "idmap"]}),
     "id-mapped mounts are not supported for rootless containers"),
])
def test_rootless_refusals(user, edit, needle):
    user.config(["true"], edit=edit)
    res = user("run", user.new_id())
    assert res.returncode == 1, res
    assert needle in one_line_error(res.stderr.decode())
