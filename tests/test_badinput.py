"""Bad input: generated malformed and hostile config.json files and command lines.

Every one must end in a clear one-line error (a PyruncError, never KeyError/TypeError/... that
the CLI would print as "internal error") and a non-zero exit, or, for hostile-looking input that
is in fact valid (a mount destination "/a/../b"), in a container that stays inside its rootfs;
and nothing may be left behind.

Thousands of configs go through pyrunc's own pre-fork pipeline in-process (id check, load and
validation, semantics, rootfs, namespaces, seccomp compile, cgroup placement and resource
translation); a few hundred go through a real `pyrunc create`, which adds everything the init
does; thousands of command lines go through cli.main in-process, and some through the launcher.
Counts are printed (-s) for README's reliability table; PYRUNC_LOAD=full raises them.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import base_config, leaks, one_line_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrunc import (
    cgroup_resources,
    cli,
    commands,
    config,
    create,
    detached,
    execute,
    lifecycle,
    lifecycle_delete,
    lifecycle_start,
    run,
    state,
)
from pyrunc.cgroups import CgroupManager
from pyrunc.errors import PyruncError

PRELOADED = (commands, detached, execute, lifecycle, lifecycle_delete, lifecycle_start,
             run)  # imported once here, not in each fork

FULL = os.environ.get("PYRUNC_LOAD") == "full"
IN_PROCESS = 6000 if FULL else 1500
ARGVS = 4000 if FULL else 1000
REAL = 400 if FULL else 120
TRIED: dict[str, int] = {}

# -- what hostile values look like -------------------------------------------------------------
EVIL_PATHS = ["..", "../..", "/..", "/../../../etc", "a/../../b", "/proc/self/exe", "/evil",
              "/evil/x", "evil/../../outside", "/abs", "/abs/../..", "", ".", "/", "//", "x\x00y",
              "\x00", "/dev/../../etc/passwd", "/sys/../../root", "/" + "a" * 5000, "rel/path",
              "/tmp/./../proc", "/proc", "/proc/sysrq-trigger", "/dev/null/x", "~", "-"]
HUGE_INTS = [2**31, 2**32, 2**63, 2**64, 2**100, -1, -2**63, -2**64, 10**30]
WEIRD_SCALARS = [None, True, False, 0, 1.5, -0.0, 1e308, "", "x" * 100_000, "\x00", "\udcff"[:0] + "é",
                 [], {}, [None], {"": None}]
UNKNOWN = {
    ("linux", "namespaces", 0, "type"): ["foo", "PID", "user ", "net", "mnt", ""],
    ("process", "capabilities", "bounding", 0): ["CAP_FOO", "cap_chown", "CHOWN", "CAP_", "CAP_CHOWN\x00"],
    ("process", "capabilities", "effective", 0): ["CAP_BAR", "ALL", "CAP_SYS_ADMIN "],
    ("process", "rlimits", 0, "type"): ["RLIMIT_FOO", "rlimit_nofile", "NOFILE", ""],
    ("linux", "seccomp", "defaultAction"): ["SCMP_ACT_FOO", "allow", "SCMP_ACT_ERRNO(1)", ""],
    ("linux", "seccomp", "architectures", 0): ["SCMP_ARCH_FOO", "x86_64", ""],
    ("linux", "seccomp", "syscalls", 0, "names", 0): ["no_such_syscall", "", "read\x00"],
    ("linux", "seccomp", "syscalls", 0, "action"): ["SCMP_ACT_NOPE", "SCMP_ACT_NOTIFY"],
    ("linux", "seccomp", "syscalls", 0, "args", 0, "op"): ["SCMP_CMP_FOO", "=="],
    ("linux", "seccomp", "flags", 0): ["SECCOMP_FILTER_FLAG_FOO"],
    ("mounts", 0, "type"): ["nosuchfs", "../proc", "proc\x00"],
    ("mounts", 0, "options", 0): ["nosuchopt", "bind,rbind", "size=-1", "mode=99999"],
    ("linux", "rootfsPropagation"): ["weird", "shared "],
    ("linux", "devices", 0, "type"): ["z", "cc", ""],
    ("linux", "sysctl", "kernel.foo"): ["1"],
    ("linux", "sysctl", "../../etc/passwd"): ["1"],
    ("linux", "sysctl", "net.ipv4.ip_forward"): ["1"],
    ("linux", "maskedPaths", 0): EVIL_PATHS,
    ("linux", "readonlyPaths", 0): EVIL_PATHS,
    ("process", "env", 0): ["NOEQUALS", "=x", "A\x00=1", ""],
    ("process", "args", 0): ["", "no-such-program", "/evil/sh", "\x00", "../../../bin/sh"],
    ("ociVersion",): ["2.0.0", "1.99.0", "", "1", "one.two"],
    ("hostname",): ["a" * 100, "host\x00", "/", ""],
}
PATH_FIELDS = [("root", "path"), ("process", "cwd"), ("mounts", 0, "destination"), ("mounts", 0, "source"),
               ("mounts", 1, "destination"), ("linux", "maskedPaths", 0), ("linux", "readonlyPaths", 0),
               ("linux", "devices", 0, "path"), ("linux", "namespaces", 0, "path"),
               ("hooks", "prestart", 0, "path"), ("hooks", "createContainer", 0, "path"),
               ("linux", "cgroupsPath"), ("linux", "seccomp", "listenerPath"), ("process", "args", 0),
               ("linux", "mountLabel")]
NUMBER_FIELDS = [("process", "user", "uid"), ("process", "user", "gid"), ("process", "user", "umask"),
                 ("process", "user", "additionalGids", 0), ("process", "rlimits", 0, "hard"),
                 ("process", "rlimits", 0, "soft"), ("process", "consoleSize", "height"),
                 ("process", "oomScoreAdj"), ("linux", "resources", "memory", "limit"),
                 ("linux", "resources", "memory", "swap"), ("linux", "resources", "cpu", "shares"),
                 ("linux", "resources", "cpu", "quota"), ("linux", "resources", "pids", "limit"),
                 ("linux", "resources", "blockIO", "weight"), ("linux", "devices", 0, "major"),
                 ("linux", "devices", 0, "fileMode"), ("linux", "timeOffsets", "monotonic", "secs"),
                 ("hooks", "prestart", 0, "timeout"), ("linux", "seccomp", "defaultErrnoRet"),
                 ("linux", "seccomp", "syscalls", 0, "args", 0, "value")]
REQUIRED = [("ociVersion",), ("root",), ("root", "path"), ("process",), ("process", "args"),
            ("process", "cwd"), ("process", "user"), ("process", "user", "uid"), ("mounts", 0, "destination"),
            ("linux", "namespaces", 0, "type"), ("process", "rlimits", 0, "type"),
            ("linux", "devices", 0, "type"), ("hooks", "prestart", 0, "path")]


def hostile_base() -> dict:
    """runc's starter config with one of everything a path, number or name can hide in."""
    cfg = base_config(["true"])
    linux = cfg["linux"]
    cfg["hostname"] = "bad"
    linux["devices"] = [{"path": "/dev/fuzz", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}]
    linux["sysctl"] = {}
    linux["resources"] = {"memory": {"limit": 64 << 20}, "cpu": {"shares": 512, "quota": 50000},
                          "pids": {"limit": 100}, "blockIO": {"weight": 100}}
    linux["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                        "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO",
                                      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]}
    cfg["hooks"] = {"prestart": [{"path": "/bin/true"}], "createContainer": [{"path": "/bin/true"}]}
    cfg["process"]["user"]["additionalGids"] = [1]
    cfg["process"]["consoleSize"] = {"height": 24, "width": 80}
    cfg["process"]["oomScoreAdj"] = 0
    return cfg


BASE = hostile_base()


def _set(doc: dict, path: tuple, value: object) -> dict:
    # A copy: WEIRD_SCALARS holds lists and dicts that sampled_from hands out as they are, and a
    # later mutation could descend into one (changing it for every later example) or place it
    # inside itself (json.dumps: "Circular reference detected", seen in a CI run).
    value = copy.deepcopy(value)
    node = doc
    for key in path[:-1]:
        if isinstance(node, list):
            if not node:
                node.append({})
            key = min(key, len(node) - 1) if isinstance(key, int) else 0
        elif not isinstance(node, dict):
            return doc
        elif key not in node or not isinstance(node[key], (dict, list)):
            node[key] = [] if isinstance(path[path.index(key) + 1], int) else {}
        node = node[key]
    last = path[-1]
    if isinstance(node, list):
        if not node:
            node.append(value)
        else:
            node[min(last, len(node) - 1) if isinstance(last, int) else 0] = value
    elif isinstance(node, dict):
        node[last] = value
    return doc


def _delete(doc: dict, path: tuple) -> dict:
    node = doc
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return doc
    try:
        del node[path[-1]]
    except (KeyError, IndexError, TypeError):
        pass
    return doc


@st.composite
def hostile_configs(draw) -> dict:
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["path", "path", "number", "unknown", "unknown", "missing",
                                     "type", "huge-string"]))
        if kind == "path":
            _set(doc, draw(st.sampled_from(PATH_FIELDS)), draw(st.sampled_from(EVIL_PATHS)))
        elif kind == "number":
            _set(doc, draw(st.sampled_from(NUMBER_FIELDS)),
                 draw(st.sampled_from(HUGE_INTS) | st.integers() | st.sampled_from(WEIRD_SCALARS)))
        elif kind == "unknown":
            path = draw(st.sampled_from(sorted(UNKNOWN, key=repr)))
            _set(doc, path, draw(st.sampled_from(UNKNOWN[path])))
        elif kind == "missing":
            _delete(doc, draw(st.sampled_from(REQUIRED)))
        elif kind == "type":
            path = draw(st.sampled_from(PATH_FIELDS + NUMBER_FIELDS + REQUIRED + sorted(UNKNOWN, key=repr)))
            _set(doc, path, draw(st.sampled_from(WEIRD_SCALARS + HUGE_INTS)))
        else:
            _set(doc, draw(st.sampled_from(PATH_FIELDS + [("hostname",), ("process", "env", 0)])),
                 "/" + "x" * draw(st.sampled_from([255, 256, 4096, 4097, 1 << 20])))
    return doc


def check_message(exc: PyruncError) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, repr(text)
    return text


def precheck(bundle: Path, cid: str) -> None:
    """pyrunc's own checks before anything exists on the host, as `create` runs them."""
    state.check_id(cid)
    cfg, _raw = config.load_bundle(str(bundle))
    config.rootfs_path(cfg, str(bundle))
    create.namespace_plan(cfg)
    linux = cfg.get("linux") or {}
    if linux.get("seccomp"):
        from pyrunc import seccomp
        seccomp.compile(linux["seccomp"])
    CgroupManager.for_container(linux.get("cgroupsPath"), cid)
    resources = linux.get("resources") or {}
    cgroup_resources.v1_writes(resources, {"memory", "cpu", "cpuset", "pids", "blkio", "devices",
                                           "hugetlb", "net_cls", "net_prio", "rdma"}, warnings=[])
    cgroup_resources.v2_writes(resources, warnings=[])
    cgroup_resources.device_writes(resources, linux.get("devices") or [])


@pytest.fixture(scope="module")
def fuzz_bundle(tmp_path_factory, rootfs):
    """A bundle whose rootfs holds symlinks out of it (absolute, relative, to the host's /)."""
    base = tmp_path_factory.mktemp("fuzz")
    bundle = base / "bundle"
    (base / "outside").mkdir()
    shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    (bundle / "rootfs" / "evil").symlink_to(str(base / "outside"))
    (bundle / "rootfs" / "abs").symlink_to("/")
    (bundle / "rootfs" / "rel").symlink_to("../../outside")
    return bundle


def write(bundle: Path, doc: object) -> None:
    text = json.dumps(doc) if not isinstance(doc, bytes) else doc
    (bundle / "config.json").write_text(text) if isinstance(text, str) else \
        (bundle / "config.json").write_bytes(text)


@settings(max_examples=IN_PROCESS, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(doc=hostile_configs())
def test_hostile_configs_in_process(fuzz_bundle, doc):
    write(fuzz_bundle, doc)
    TRIED["in-process configs"] = TRIED.get("in-process configs", 0) + 1
    try:
        precheck(fuzz_bundle, "fuzz")
    except PyruncError as exc:
        check_message(exc)
        TRIED["in-process refused"] = TRIED.get("in-process refused", 0) + 1


RAW_DOCS = [b"", b"{", b"null", b"[]", b"1", b'"x"', b"\xff\xfe", b'{"ociVersion": "1.0.2"}',
            b'{"ociVersion": 1}', b'{"a": 1, "a": 2}', b"{" * 5000 + b"}" * 5000, b"[" * 100_000,
            (b'{"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["true"], "cwd": "/",'
             b' "user": {"uid": 0, "gid": 0}}, "linux": {"namespaces": [{"type": "mount"}]}}\x00'),
            b'\xef\xbb\xbf{}', b'{"ociVersion": "1.0.2", "root": {"path": "rootfs"}} trailing',
            b'{"ociVersion": NaN}', b'{"ociVersion": "1.0.2", "x": Infinity}', b'{"x": 1e999999}']


@pytest.mark.parametrize("raw", RAW_DOCS, ids=range(len(RAW_DOCS)))
def test_malformed_json_in_process(fuzz_bundle, raw):
    write(fuzz_bundle, raw)
    with pytest.raises(PyruncError) as info:
        precheck(fuzz_bundle, "fuzz")
    assert check_message(info.value).startswith("config.json")


@settings(max_examples=300, deadline=None, database=None)
@given(cid=st.text(alphabet="a./\x00-_+ \n%é", min_size=0, max_size=8) | st.sampled_from(
    ["..", ".", "a/b", "../x", "/", "-", "x" * 1025, "a\x00b", "", "a b", "a\nb"]))
def test_container_ids_in_process(cid):
    TRIED["ids"] = TRIED.get("ids", 0) + 1
    try:
        state.check_id(cid)
    except PyruncError as exc:
        check_message(exc)
        return
    assert "/" not in cid and cid not in (".", "..") and "\x00" not in cid


# -- command lines -------------------------------------------------------------------------------
COMMANDS = ["create", "run", "start", "state", "list", "kill", "delete", "exec", "ps", "pause",
            "resume", "update", "events", "features", "spec", "checkpoint", "restore", "logs",
            "nosuch", "", "-", "--", "help"]
FLAGS = ["--bundle", "-b", "--pid-file", "--console-socket", "--preserve-fds", "--force", "-f",
         "--all", "-a", "--format", "--quiet", "-q", "--detach", "-d", "--process", "-p", "--cwd",
         "--env", "-e", "--tty", "-t", "--user", "-u", "--cap", "-c", "--memory", "--cpu-shares",
         "--pids-limit", "--resources", "-r", "--no-pivot", "--keep", "--follow", "--nope", "-x",
         "--help", "--shim", "--cgroup", "--additional-gids", "-g", "--ignore-paused"]
GLOBALS = ["--debug", "--log-format", "--systemd-cgroup", "--rootless", "--criu", "--version",
           "--nope", "--log-format=xml", "--rootless=true", "--debug=maybe"]
WORDS = ["x", "KILL", "SIGFOO", "0", "-1", "99999999999999999999", "RTMIN+99", "SIGRTMAX-0", "9",
         "65", "table", "json", "yaml", "=", "1:2", "a:b", "CAP_FOO", "ALL", "../x", "a/b", "..",
         "", "-", "--", "true", "false", "sh", "/", "-5", "1k", "max", "abc", "=true", "=x", " "]


@st.composite
def command_lines(draw) -> list[str]:
    argv = [draw(st.sampled_from(GLOBALS)) for _ in range(draw(st.integers(0, 1)))]
    argv.append(draw(st.sampled_from(COMMANDS)))
    for _ in range(draw(st.integers(0, 5))):
        argv.append(draw(st.sampled_from(FLAGS + WORDS + WORDS)))
        if draw(st.booleans()):
            argv[-1] += "=" + draw(st.sampled_from(WORDS))
    return argv


def run_main(argv: list[str], work: Path) -> tuple[int, str]:
    """cli.main in this process, with --root in a private dir and cwd an empty one. A `run`
    makes its caller a child subreaper and installs signal handlers before it fails: both are
    undone here (and checked), or pytest would keep orphans as unreaped zombies."""
    from pyrunc import linux
    from pyrunc.log import Log
    saved_log = (Log.path, Log.fmt, Log.debug_enabled)
    saved_handlers = {sig: signal.getsignal(sig) for sig in signal.valid_signals()
                      if sig not in (signal.SIGKILL, signal.SIGSTOP)}
    err, out = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(work)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = cli.main(["--root", str(work / "root"), *argv])
    finally:
        os.chdir(cwd)
        Log.path, Log.fmt, Log.debug_enabled = saved_log
        linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 0)
        for sig, handler in saved_handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
    return code, err.getvalue()


@settings(max_examples=ARGVS, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=command_lines())
def test_command_lines_in_process(tmp_path_factory, argv):
    work = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    code, err = run_main(argv, work)
    TRIED["command lines"] = TRIED.get("command lines", 0) + 1
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    if code != 0:
        assert code == 1, (argv, code)
        one_line_error(err)
    root = work / "root"
    assert not root.exists() or list(root.iterdir()) == [], (argv, list(root.iterdir()))
    shutil.rmtree(work)


HOSTILE_IDS = ["..", "a/b", "../escape", "/abs", "x" * 1025, "a b\nc", "é", "$(id);*"]


@pytest.mark.kernel
def test_hostile_ids_through_the_launcher(pyrunc, bundle):
    bundle.write()
    for cid in HOSTILE_IDS:
        for args in (("create", "--bundle", str(bundle.path), cid), ("state", cid), ("delete", "--force", cid),
                     ("exec", cid, "true")):
            with tempfile.TemporaryFile() as errf:
                proc = pyrunc(*args, capture_output=False, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=errf)
                errf.seek(0)
                err = errf.read().decode()
            assert proc.returncode != 0 or args[0] == "delete", (args, err)
            if proc.returncode == 0 and args[0] in ("create", "run"):
                pyrunc("delete", "--force", cid)  # then the assertion below says which one
            if proc.returncode:
                assert "Traceback" not in err and "internal error" not in err, err
                one_line_error(err)
    assert not pyrunc.root.exists() or list(pyrunc.root.iterdir()) == []
    assert not (bundle.path.parent / "escape").exists()


@pytest.mark.kernel
def test_hostile_configs_through_real_creates(pyrunc, rootfs, tmp_path):
    """A real `pyrunc create` per config (4 at a time): one-line error, or a container that
    starts inside its rootfs; nothing written outside it; nothing left after each."""
    examples: list[dict] = []

    @settings(max_examples=REAL, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(doc=hostile_configs())
    def collect(doc):
        examples.append(doc)

    collect()
    base = tmp_path / "fuzz"
    outside = base / "outside"
    outside.mkdir(parents=True)
    src = base / "rootfs"
    shutil.copytree(rootfs, src, symlinks=True)
    (src / "evil").symlink_to(str(outside))
    (src / "abs").symlink_to("/")
    (src / "rel").symlink_to("../../outside")

    def one(item: tuple[int, dict]) -> str:
        i, doc = item
        bundle = base / f"b{i}"
        bundle.mkdir()
        (bundle / "rootfs").symlink_to(src)  # root.path rootfs -> one shared tree
        cid = pyrunc.new_id(f"z{i}")
        if isinstance(doc.get("linux"), dict) and "cgroupsPath" in doc["linux"]:
            # Hostile cgroupsPath values are tried in-process; a real one must stay ours (a
            # cgroup outside our prefix would escape the leak check if the test failed).
            doc["linux"]["cgroupsPath"] = f"/{cid}"
        root = doc.get("root")
        if isinstance(root, dict) and isinstance(root.get("path"), str) and "\0" not in root["path"] \
                and not os.path.realpath(bundle / root["path"]).startswith(str(src)):
            # root.path is a host path by definition: one that names `outside` (e.g.
            # "evil/../../outside") makes it the rootfs, legitimately. The sentinel is for
            # paths *inside* the container.
            root["path"] = "rootfs"
        write(bundle, doc)
        with tempfile.TemporaryFile() as err:
            proc = pyrunc("create", "--bundle", str(bundle), cid, capture_output=False,
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            err.seek(0)
            text = err.read().decode(errors="replace")
        assert "Traceback" not in text and "internal error" not in text, (doc, text)
        if proc.returncode == 0:
            pyrunc("delete", "--force", cid, check=True)
            return "accepted"
        one_line_error(text)
        return "refused"

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(one, enumerate(examples)))
    TRIED["real creates"] = len(outcomes)
    TRIED["real creates refused"] = outcomes.count("refused")
    assert list(outside.iterdir()) == []
    assert leaks(pyrunc.prefix, [str(tmp_path)], pyrunc.root) == []


def test_report_counts():
    """Last in this module: the numbers for README (run with -s)."""
    print("\nBADINPUT " + ", ".join(f"{k}={v}" for k, v in TRIED.items()))
    if "in-process configs" not in TRIED:
        pytest.skip("the generating tests did not run")
    assert TRIED["in-process configs"] >= IN_PROCESS * 0.9
