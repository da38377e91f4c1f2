"""runc's command line: global flags, `--flag value` and `--flag=value`, help/version, errors as
one line, kill's signal forms, and the commands that are not there yet.

Tests without the `kernel` marker need no root: they call `parse_flags` directly or run pyrunc
commands that never touch a container.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from pathlib import Path

import pytest
from checks import alive, one_line
from conftest import Bundle, Runtime, poll, pyrunc_binary, wait_status

from pyrunc import OCI_VERSION
from pyrunc.cli import COMMANDS, GLOBAL_FLAGS, parse_flags
from pyrunc.errors import PyruncError

_seq = itertools.count()
CREATE_FLAGS = COMMANDS["create"][0]


def run_cli(*args: str, root: Path, timeout: float = 20) -> subprocess.CompletedProcess:
    """pyrunc for commands that start no container (so pipes are safe)."""
    return subprocess.run([pyrunc_binary(), "--root", str(root), *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)






def create_files(rt: Runtime, bundle: Bundle, cid: str, tmp: Path, *flags: str,
                 global_args: tuple[str, ...] = (), bundle_flag: bool = True,
                 cwd: Path | None = None) -> tuple[int, str, Path]:
    """`create` with stdio on files (the container keeps pyrunc's stdio open)."""
    n = next(_seq)
    out, err = tmp / f"create{n}.out", tmp / f"create{n}.err"
    args = ["create", *((["--bundle", str(bundle.path)]) if bundle_flag else []), *flags, cid]
    with open(out, "wb") as fo, open(err, "wb") as fe:
        res = rt(*args, capture_output=False, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe,
                 global_args=global_args, timeout=20, cwd=cwd)
    return res.returncode, err.read_text(), out


def listed(rt: Runtime, *global_args: str) -> list[str]:
    return rt("list", "-q", check=True, global_args=global_args).stdout.decode().split()




# --------------------------------------------------------------------------------------------
# pure parsing (no root, no process)


@pytest.mark.parametrize("argv", [
    ["--bundle=/b", "--pid-file=/f", "id"],
    ["--bundle", "/b", "--pid-file", "/f", "id"],
    ["-b", "/b", "--pid-file=/f", "id"],
    ["id", "--bundle", "/b", "--pid-file", "/f"],
])
def test_parse_value_forms(argv):
    opts, rest = parse_flags(argv, CREATE_FLAGS, stop_at_positional=False)
    assert opts["bundle"] == "/b"
    assert opts["pid_file"] == "/f"
    assert rest == ["id"]


def test_parse_value_with_equals_inside():
    opts, rest = parse_flags(["--pid-file=/a=b", "id"], CREATE_FLAGS, False)
    assert opts["pid_file"] == "/a=b" and rest == ["id"]


def test_parse_int_and_bool_forms():
    opts, _ = parse_flags(["--preserve-fds=2", "--no-pivot", "x"], CREATE_FLAGS, False)
    assert opts["preserve_fds"] == 2 and opts["no_pivot"] is True
    opts, _ = parse_flags(["--preserve-fds", "3", "--no-pivot=false", "x"], CREATE_FLAGS, False)
    assert opts["preserve_fds"] == 3 and opts["no_pivot"] is False
    with pytest.raises(PyruncError, match="--preserve-fds"):
        parse_flags(["--preserve-fds=many", "x"], CREATE_FLAGS, False)


def test_parse_global_flags_stop_at_command():
    argv = ["--root", "/r", "--log", "/l", "--log-format", "json", "--debug", "create",
            "--bundle", "/b", "id"]
    opts, rest = parse_flags(argv, GLOBAL_FLAGS, stop_at_positional=True)
    assert (opts["root"], opts["log"], opts["log_format"], opts["debug"]) == ("/r", "/l", "json", True)
    assert rest == ["create", "--bundle", "/b", "id"]
    opts, rest = parse_flags(["--log-format=json", "--root=/r", "state", "x"], GLOBAL_FLAGS, True)
    assert (opts["log_format"], opts["root"]) == ("json", "/r")
    assert rest == ["state", "x"]


def test_parse_unknown_and_missing_value():
    with pytest.raises(PyruncError, match="--frobnicate"):
        parse_flags(["--frobnicate", "x"], CREATE_FLAGS, False)
    with pytest.raises(PyruncError, match="--pid-file"):
        parse_flags(["id", "--pid-file"], CREATE_FLAGS, False)


# --------------------------------------------------------------------------------------------
# the binary, on commands that touch no container (no root needed)


def test_version(tmp_path):
    res = run_cli("--version", root=tmp_path)
    assert res.returncode == 0, res
    assert res.stderr == ""
    lines = res.stdout.split("\n")
    assert lines[-1] == "" and len(lines) == 4, res.stdout  # exactly three lines
    assert re.fullmatch(r"pyrunc version \S+", lines[0]), lines[0]
    assert re.fullmatch(r"commit: \S+", lines[1]), lines[1]
    assert lines[2] == f"spec: {OCI_VERSION}"
    assert re.fullmatch(r"spec: \d+\.\d+\.\d+\S*", lines[2])


def test_help(tmp_path):
    res = run_cli("--help", root=tmp_path)
    assert res.returncode == 0, res
    assert "USAGE" in res.stdout
    for command in ("create", "start", "run", "state", "kill", "delete", "list", "exec"):
        assert re.search(rf"^\s+{command}\s", res.stdout, re.MULTILINE), command
    assert res.stderr == ""


@pytest.mark.parametrize("command", ["create", "run", "kill", "delete", "list", "state",
                                     "checkpoint"])
def test_command_help(tmp_path, command):
    res = run_cli(command, "--help", root=tmp_path)
    assert res.returncode == 0, res
    assert "USAGE" in res.stdout
    assert command in res.stdout
    assert res.stderr == ""
    if command in ("create", "run"):
        assert "--bundle" in res.stdout and "--pid-file" in res.stdout
    if command == "delete":
        assert "--force" in res.stdout


def test_command_help_short(tmp_path):
    res = run_cli("state", "-h", root=tmp_path)
    assert res.returncode == 0, res
    assert "USAGE" in res.stdout


@pytest.mark.parametrize("args,needle", [
    (["--frobnicate", "list"], "--frobnicate"),
    (["list", "--frobnicate"], "--frobnicate"),
    (["create", "--frobnicate=1", "x"], "--frobnicate"),
    (["frobnicate"], "frobnicate"),
    (["frobnicate", "x", "y"], "frobnicate"),
])
def test_unknown_flag_or_command(tmp_path, args, needle):
    res = run_cli(*args, root=tmp_path)
    assert res.returncode == 1, res
    assert needle in one_line(res.stderr)
    assert res.stdout == ""
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("args", [["restore", "someid"]])
def test_not_supported_yet(tmp_path, args):
    res = run_cli(*args, root=tmp_path)
    assert res.returncode != 0
    assert "not supported yet" in one_line(res.stderr)
    assert res.stdout == ""


def test_checkpoint_fails_clearly(tmp_path):
    res = run_cli("checkpoint", "someid", root=tmp_path)
    assert res.returncode != 0
    assert "checkpoint" in one_line(res.stderr).lower()


def test_missing_id_is_one_line(tmp_path):
    res = run_cli("state", root=tmp_path)
    assert res.returncode == 1
    one_line(res.stderr)


# --------------------------------------------------------------------------------------------
# global and subcommand flags on real containers

pytestmark_kernel = pytest.mark.kernel


def create_sleeper(rt: Runtime, bundle: Bundle, tmp: Path, *flags: str, **kw) -> str:
    """The id of a container created (create_files(*flags, **kw)) to run `sleep 100`."""
    bundle.edit()["process"]["args"] = ["sh", "-c", "sleep 100"]
    bundle.write()
    cid = rt.new_id()
    rc, err, _ = create_files(rt, bundle, cid, tmp, *flags, **kw)
    assert rc == 0, err
    return cid


@pytestmark_kernel
@pytest.mark.parametrize("form", ["space", "equals"])
def test_create_flag_forms(pyrunc, bundle, tmp_path, form):
    pid_file = tmp_path / "p.pid"
    if form == "space":
        flags = ["--bundle", str(bundle.path), "--pid-file", str(pid_file)]
    else:
        flags = [f"--bundle={bundle.path}", f"--pid-file={pid_file}"]
    cid = create_sleeper(pyrunc, bundle, tmp_path, *flags, bundle_flag=False)
    st = pyrunc.state(cid)
    assert st["bundle"] == str(bundle.path)
    assert pid_file.read_text() == str(st["pid"])
    pyrunc("delete", "--force", cid, check=True)


@pytestmark_kernel
def test_create_bundle_defaults_to_cwd(pyrunc, bundle, tmp_path):
    cid = create_sleeper(pyrunc, bundle, tmp_path, bundle_flag=False, cwd=bundle.path)
    assert pyrunc.state(cid)["bundle"] == str(bundle.path)
    pyrunc("delete", "--force", cid, check=True)


@pytestmark_kernel
def test_root_flag_separates_containers(pyrunc, bundle, tmp_path):
    cid = create_sleeper(pyrunc, bundle, tmp_path)
    assert (pyrunc.root / cid).is_dir()
    other = tmp_path / "other-root"
    # a later --root wins, as with runc's flag parser
    res = pyrunc("list", "-q", global_args=("--root", str(other)))
    assert res.returncode == 0, res
    assert res.stdout == b""
    res = pyrunc("state", cid, global_args=(f"--root={other}",))
    assert res.returncode == 1 and b"container does not exist" in res.stderr
    assert listed(pyrunc) == [cid]
    pyrunc("delete", "--force", cid, check=True)


@pytestmark_kernel
@pytest.mark.parametrize("log_flags", [
    ("--log-format", "json"), ("--log-format=json",), ("--log-format", "json", "--debug"),
])
def test_global_log_flags_before_command(pyrunc, tmp_path, log_flags):
    log = tmp_path / "log.json"
    cid = pyrunc.new_id()
    res = pyrunc("state", cid, global_args=("--log", str(log), *log_flags))
    assert res.returncode == 1
    assert "container does not exist" in one_line(res.stderr.decode())
    errors = [json.loads(line) for line in log.read_text().splitlines()]
    errors = [e for e in errors if e["level"] == "error"]
    assert len(errors) == 1
    assert "container does not exist" in errors[0]["msg"]
    assert set(errors[0]) == {"level", "msg", "time"}


@pytestmark_kernel
def test_global_flags_with_successful_command(pyrunc, tmp_path):
    log = tmp_path / "log.json"
    res = pyrunc("list", "--format", "json", global_args=("--log", str(log), "--log-format=json",
                                                          "--debug"))
    assert res.returncode == 0, res
    assert json.loads(res.stdout) in ([], None)
    if log.exists():  # debug lines are allowed, but each must be a JSON object
        for line in log.read_text().splitlines():
            assert json.loads(line)["level"] != "error"


@pytestmark_kernel
def test_bad_log_format(pyrunc, tmp_path):
    res = pyrunc("list", global_args=("--log-format", "yaml"))
    assert res.returncode == 1
    assert "yaml" in one_line(res.stderr.decode())


@pytestmark_kernel
def test_systemd_cgroup_refused(pyrunc, bundle, tmp_path):
    bundle.edit()["process"]["args"] = ["sh", "-c", "sleep 100"]
    bundle.write()
    cid = pyrunc.new_id()
    rc, err, out = create_files(pyrunc, bundle, cid, tmp_path, global_args=("--systemd-cgroup",))
    assert rc == 1
    assert "systemd" in one_line(err)
    assert out.read_text() == ""
    assert listed(pyrunc) == []
    assert not (pyrunc.root / cid).exists()


# --------------------------------------------------------------------------------------------
# kill's signal forms


LOOP = ("trap 'echo TERM > /tmp/sig; exit 0' TERM; trap 'echo USR1 > /tmp/sig; exit 0' USR1; "
        "echo ready; while :; do sleep 0.1; done")


def running(rt: Runtime, bundle: Bundle, tmp: Path) -> tuple[str, int]:
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sh", "-c", LOOP]
    cfg["root"]["readonly"] = False
    bundle.write()
    cid = rt.new_id()
    rc, err, out = create_files(rt, bundle, cid, tmp)
    assert rc == 0, err
    rt("start", cid, check=True)
    poll(lambda: "ready" in out.read_text(), what="the container's trap to be set")
    return cid, rt.state(cid)["pid"]


@pytestmark_kernel
@pytest.mark.parametrize("sig", ["KILL", "SIGKILL", "kill", "9"])
def test_kill_forms(pyrunc, bundle, tmp_path, sig):
    cid, pid = running(pyrunc, bundle, tmp_path)
    res = pyrunc("kill", cid, sig)
    assert res.returncode == 0, res
    assert res.stdout == b"" and res.stderr == b""
    wait_status(pyrunc, cid, "stopped")
    assert not (bundle.rootfs / "tmp" / "sig").exists()  # KILL, not a handled signal
    assert not alive(pid)
    pyrunc("delete", cid, check=True)


@pytestmark_kernel
@pytest.mark.parametrize("sig,got", [(None, "TERM"), ("TERM", "TERM"), ("SIGTERM", "TERM"),
                                     ("15", "TERM"), ("USR1", "USR1"), ("10", "USR1"),
                                     ("sigusr1", "USR1")])
def test_kill_delivers_the_named_signal(pyrunc, bundle, tmp_path, sig, got):
    cid, _ = running(pyrunc, bundle, tmp_path)
    res = pyrunc("kill", cid, *([sig] if sig else []))
    assert res.returncode == 0, res
    wait_status(pyrunc, cid, "stopped")
    assert (bundle.rootfs / "tmp" / "sig").read_text() == f"{got}\n"
    pyrunc("delete", cid, check=True)


@pytestmark_kernel
@pytest.mark.parametrize("all_flag", [[], ["--all"]])
def test_kill_zero_asks_whether_the_init_lives(pyrunc, bundle, tmp_path, all_flag):
    """Signal 0 as runc takes it: exit 0 while the init runs, delivering nothing; once it is
    gone, "container not running" and exit 1 (engines use it as a liveness check)."""
    cid, pid = running(pyrunc, bundle, tmp_path)
    res = pyrunc("kill", *all_flag, cid, "0")
    assert (res.returncode, res.stdout, res.stderr) == (0, b"", b""), res
    assert pyrunc.state(cid)["status"] == "running" and alive(pid)
    assert not (bundle.rootfs / "tmp" / "sig").exists()
    pyrunc("kill", cid, "KILL", check=True)
    wait_status(pyrunc, cid, "stopped")
    res = pyrunc("kill", *all_flag, cid, "0")
    assert res.returncode == 1, res
    assert one_line(res.stderr.decode()).endswith("container not running")
    pyrunc("delete", cid, check=True)


@pytestmark_kernel
@pytest.mark.parametrize("sig", ["SIGFOO", "FOO", "0x9", "-9", "999", "65", ""])
def test_kill_bad_signal(pyrunc, bundle, tmp_path, sig):
    cid, pid = running(pyrunc, bundle, tmp_path)
    res = pyrunc("kill", cid, sig)
    assert res.returncode == 1, res
    line = one_line(res.stderr.decode())
    if sig:
        assert sig in line
    st = pyrunc.state(cid)
    assert st["status"] == "running" and alive(pid)
    assert not (bundle.rootfs / "tmp" / "sig").exists()
    pyrunc("delete", "--force", cid, check=True)
