"""linux.seccomp: filters built with libseccomp, loaded right before execve, checked from inside
real busybox containers (actions, errno values, argument rules, profiles, user notification)."""

from __future__ import annotations

import copy
import fcntl
import json
import os
import select
import socket
import struct
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import base_config

pytestmark = pytest.mark.kernel

ENOSYS = 38
PODMAN_PROFILE = Path("/usr/share/containers/seccomp.json")
MKDIR = ["mkdir", "mkdirat"]


def with_seccomp(sc: dict):
    def edit(cfg: dict) -> None:
        cfg["linux"]["seccomp"] = copy.deepcopy(sc)
        cfg["root"]["readonly"] = False  # so that a denied mkdir is the filter's doing
    return edit


def deny(names: list[str], action: str, **extra: object) -> dict:
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [dict({"names": names, "action": action}, **extra)]}


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip() and "warning" not in line]


def test_filter_is_loaded(run_container):
    r = run_container(["cat", "/proc/self/status"],
                      edit=with_seccomp(deny(["acct"], "SCMP_ACT_ERRNO")))
    assert r.rc == 0, r
    assert "Seccomp:\t2" in r.out
    assert "not enforced" not in r.err


def test_errno_ret(run_container):
    r = run_container(["sh", "-c", "mkdir /tmp/x; echo rc=$?; test -d /tmp/x || echo absent"],
                      edit=with_seccomp(deny(MKDIR, "SCMP_ACT_ERRNO", errnoRet=ENOSYS)))
    assert r.rc == 0, r
    assert "Function not implemented" in r.err
    assert "rc=1\nabsent\n" in r.out


def test_errno_defaults_to_eperm(run_container):
    r = run_container(["sh", "-c", "mkdir /tmp/x; echo rc=$?"],
                      edit=with_seccomp(deny(MKDIR, "SCMP_ACT_ERRNO")))
    assert r.rc == 0, r
    assert "Operation not permitted" in r.err


def test_default_errno_with_allow_list(run_container):
    profile = json.loads(PODMAN_PROFILE.read_text()) if PODMAN_PROFILE.exists() else None
    if profile is None:
        pytest.skip(f"{PODMAN_PROFILE} missing (apt-get install golang-github-containers-common)")
    sc = oci_profile(profile, caps=[])
    # Take mkdir out of the allow lists: the default (ENOSYS) applies to it.
    for rule in sc["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n not in MKDIR]
    r = run_container(["sh", "-c", "echo hi; mkdir /tmp/x; echo rc=$?"], edit=with_seccomp(sc))
    assert r.rc == 0, r
    assert r.out == "hi\nrc=1\n"
    assert "Function not implemented" in r.err


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_KILL",
                                    "SCMP_ACT_KILL_THREAD"])
def test_killing_actions(run_container, action):
    # The shell's child dies from SIGSYS (KILL_THREAD of a single-threaded process: the same).
    r = run_container(["sh", "-c", "mkdir /tmp/x; echo rc=$?"],
                      edit=with_seccomp(deny(MKDIR, action)))
    assert r.rc == 0, r
    assert "rc=159" in r.out


def test_kill_process_of_the_container_process(run_container):
    r = run_container(["mkdir", "/tmp/x"], edit=with_seccomp(deny(MKDIR, "SCMP_ACT_KILL_PROCESS")))
    assert r.rc == 128 + 31, r


def test_trace_without_tracer_is_enosys(run_container):
    # SECCOMP_RET_TRACE with no ptracer attached: the kernel fails the call with ENOSYS.
    r = run_container(["sh", "-c", "mkdir /tmp/x; echo rc=$?; test -d /tmp/x || echo absent"],
                      edit=with_seccomp(deny(MKDIR, "SCMP_ACT_TRACE", errnoRet=1)))
    assert r.rc == 0, r
    assert "rc=1\nabsent\n" in r.out and "Function not implemented" in r.err, r


def test_allow_rule_under_errno_default(run_container):
    # Every syscall fails with defaultErrnoRet except what the rules allow: the allowed ones
    # are the podman profile's minus mkdir, so mkdir gets the default's errno (EACCES here).
    if not PODMAN_PROFILE.exists():
        pytest.skip(f"{PODMAN_PROFILE} missing")
    sc = oci_profile(json.loads(PODMAN_PROFILE.read_text()), caps=[])
    sc["defaultErrnoRet"] = 13
    for rule in sc["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n not in MKDIR]
    assert {rule["action"] for rule in sc["syscalls"]} >= {"SCMP_ACT_ALLOW"}
    r = run_container(["sh", "-c", "echo hi; mkdir /tmp/x; echo rc=$?"], edit=with_seccomp(sc))
    assert r.rc == 0, r
    assert r.out == "hi\nrc=1\n" and "Permission denied" in r.err, r


def test_log_allows(run_container):
    r = run_container(["sh", "-c", "mkdir /tmp/x && test -d /tmp/x && echo made"],
                      edit=with_seccomp(deny(MKDIR, "SCMP_ACT_LOG")))
    assert r.rc == 0, r
    assert r.out == "made\n"


def test_args_eq(run_container):
    # personality(PER_LINUX32 = 8) denied, personality(0) still allowed.
    sc = deny(["personality"], "SCMP_ACT_ERRNO", errnoRet=ENOSYS,
              args=[{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}])
    r = run_container(["sh", "-c", "linux64 true; echo a=$?; linux32 true; echo b=$?"],
                      edit=with_seccomp(sc))
    assert r.rc == 0, r
    assert "a=0\n" in r.out and "b=0" not in r.out, r


# personality(0) is `linux64`, personality(8) (PER_LINUX32) is `linux32`: each operator denies
# one of them. (op, value, valueTwo, linux64 still works, linux32 still works)
OPERATOR_CASES = [
    ("SCMP_CMP_NE", 8, 0, False, True), ("SCMP_CMP_LT", 8, 0, False, True),
    ("SCMP_CMP_LE", 0, 0, False, True), ("SCMP_CMP_EQ", 0, 0, False, True),
    ("SCMP_CMP_GE", 8, 0, True, False), ("SCMP_CMP_GT", 0, 0, True, False),
    ("SCMP_CMP_MASKED_EQ", 0x8, 0x8, True, False),
]


@pytest.mark.parametrize("op,value,value_two,a_ok,b_ok", OPERATOR_CASES,
                         ids=[c[0] for c in OPERATOR_CASES])
def test_every_operator(run_container, op, value, value_two, a_ok, b_ok):
    arg = {"index": 0, "value": value, "op": op}
    if op == "SCMP_CMP_MASKED_EQ":
        arg["valueTwo"] = value_two
    sc = deny(["personality"], "SCMP_ACT_ERRNO", errnoRet=ENOSYS, args=[arg])
    r = run_container(["sh", "-c", "linux64 true; echo a=$?; linux32 true; echo b=$?"],
                      edit=with_seccomp(sc))
    assert r.rc == 0, r
    assert ("a=0\n" in r.out) == a_ok and ("b=0\n" in r.out) == b_ok, r


def test_args_same_index_twice_is_or(run_container):
    sc = deny(["personality"], "SCMP_ACT_ERRNO", errnoRet=ENOSYS,
              args=[{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}])
    r = run_container(["sh", "-c", "linux64 true; echo a=$?; linux32 true; echo b=$?"],
                      edit=with_seccomp(sc))
    assert r.rc == 0, r
    assert "a=0" not in r.out and "b=0" not in r.out, r


def test_args_masked_eq(run_container):
    # fork() is clone(CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID|SIGCHLD): denied when the
    # SIGCHLD bits are set, and docker's mask (namespace flags) leaves forks alone.
    denied = deny(["clone"], "SCMP_ACT_ERRNO", errnoRet=ENOSYS,
                  args=[{"index": 0, "value": 0xFF, "valueTwo": 17, "op": "SCMP_CMP_MASKED_EQ"}])
    r = run_container(["sh", "-c", "(echo sub); echo done"], edit=with_seccomp(denied))
    assert "sub" not in r.out, r
    docker = deny(["clone"], "SCMP_ACT_ERRNO", errnoRet=ENOSYS,
                  args=[{"index": 0, "value": 2114060288, "valueTwo": 2114060288,
                         "op": "SCMP_CMP_MASKED_EQ"}])
    r = run_container(["sh", "-c", "(echo sub); echo done"], edit=with_seccomp(docker))
    assert r.rc == 0 and r.out == "sub\ndone\n", r


def test_unknown_syscall_names_skipped(run_container):
    sc = deny(["no_such_syscall", "mkdir", "mkdirat"], "SCMP_ACT_ERRNO", errnoRet=ENOSYS)
    r = run_container(["sh", "-c", "mkdir /tmp/x; echo rc=$?"], edit=with_seccomp(sc))
    assert r.rc == 0, r
    assert "rc=1" in r.out


def test_unknown_action_refused(run_container, pyrunc):
    sc = deny(MKDIR, "SCMP_ACT_ERRNO")
    sc["syscalls"].insert(0, {"names": ["acct"], "action": "SCMP_ACT_ERRNO"})
    sc["syscalls"][1]["action"] = "SCMP_ACT_EXPLODE"
    r = run_container(["true"], edit=with_seccomp(sc))
    assert r.rc != 0
    lines = error_lines(r.err)
    assert len(lines) == 1 and "/linux/seccomp/syscalls/1/action" in lines[0], r
    assert not (pyrunc.root / r.cid).exists()


@pytest.mark.parametrize("where", ["rule", "default"])
def test_errno_on_an_action_without_one_refused(run_container, pyrunc, where):
    # config-linux.md#seccomp: errnoRet/defaultErrnoRet on an action that returns no errno
    # must be an error, naming the field (runc 1.1 drops it silently).
    sc = deny(MKDIR, "SCMP_ACT_KILL", errnoRet=1)
    if where == "default":
        sc = deny(MKDIR, "SCMP_ACT_ERRNO")
        sc["defaultErrnoRet"] = 1
    r = run_container(["true"], edit=with_seccomp(sc))
    assert r.rc != 0
    lines = error_lines(r.err)
    field = "/linux/seccomp/syscalls/0/errnoRet" if where == "rule" else \
        "/linux/seccomp/defaultErrnoRet"
    assert len(lines) == 1 and field in lines[0], r
    assert not (pyrunc.root / r.cid).exists()


def test_unsupported_flag_refused(run_container):
    sc = deny(MKDIR, "SCMP_ACT_ERRNO")
    sc["flags"] = ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    r = run_container(["true"], edit=with_seccomp(sc))
    assert r.rc != 0
    lines = error_lines(r.err)
    assert len(lines) == 1 and "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" in lines[0], r


def test_supported_flags(run_container):
    sc = deny(MKDIR, "SCMP_ACT_ERRNO")
    sc["flags"] = ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                   "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
    r = run_container(["sh", "-c", "mkdir /tmp/x; echo rc=$?"], edit=with_seccomp(sc))
    assert r.rc == 0 and "rc=1" in r.out, r


def test_no_new_privileges_false_with_dropped_caps(run_container):
    # Loading without no_new_privs needs CAP_SYS_ADMIN, which the config does not grant: kept
    # just long enough to load the filter, then dropped.
    def edit(cfg: dict) -> None:
        with_seccomp(deny(MKDIR, "SCMP_ACT_ERRNO"))(cfg)
        cfg["process"]["noNewPrivileges"] = False
        cfg["process"]["user"] = {"uid": 65534, "gid": 65534}
    r = run_container(["cat", "/proc/self/status"], edit=edit)
    assert r.rc == 0, r
    status = dict(line.split(":\t", 1) for line in r.out.splitlines() if ":\t" in line)
    assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "0"
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, status


@pytest.mark.parametrize("uid", [0, 65534])
def test_no_capabilities_object_non_root_without_nnp(run_container, uid):
    # No capabilities object grants nothing (runc's reading); the filter still loads without
    # no_new_privs, through a CAP_SYS_ADMIN held only until it is in.
    def edit(cfg: dict) -> None:
        with_seccomp(deny(MKDIR, "SCMP_ACT_ERRNO", errnoRet=ENOSYS))(cfg)
        cfg["process"]["noNewPrivileges"] = False
        cfg["process"]["user"] = {"uid": uid, "gid": uid}
        del cfg["process"]["capabilities"]
    r = run_container(["sh", "-c", "mkdir /tmp/x; echo rc=$?; cat /proc/self/status"], edit=edit)
    assert r.rc == 0, r
    assert "rc=1" in r.out and "Function not implemented" in r.err, r
    status = dict(line.split(":\t", 1) for line in r.out.splitlines() if ":\t" in line)
    assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "0"
    for kind in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[kind], 16) == 0, (kind, status)


def oci_profile(profile: dict, caps: list[str]) -> dict:
    """containers-common's profile as podman hands it to the runtime, for x86_64."""
    arches = []
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == "SCMP_ARCH_X86_64":
            arches = [entry["architecture"], *entry["subArchitectures"]]
    rules = []
    for rule in profile["syscalls"]:
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if inc.get("arches") and "amd64" not in inc["arches"]:
            continue
        if exc.get("arches") and "amd64" in exc["arches"]:
            continue
        if inc.get("caps") and not set(inc["caps"]) <= set(caps):
            continue
        if exc.get("caps") and set(exc["caps"]) & set(caps):
            continue
        out = {"names": rule["names"], "action": rule["action"]}
        if rule.get("args"):
            out["args"] = rule["args"]
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        rules.append(out)
    return {"defaultAction": profile["defaultAction"],
            "defaultErrnoRet": profile["defaultErrnoRet"],
            "architectures": arches, "syscalls": rules}


def test_podman_default_profile(run_container):
    if not PODMAN_PROFILE.exists():
        print(f"skipped: {PODMAN_PROFILE} missing (golang-github-containers-common not installed)")
        pytest.skip(f"{PODMAN_PROFILE} missing")
    caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
            "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
            "CAP_SYS_CHROOT"]
    sc = oci_profile(json.loads(PODMAN_PROFILE.read_text()), caps)

    def edit(cfg: dict) -> None:
        with_seccomp(sc)(cfg)
        cfg["process"]["noNewPrivileges"] = False
        for kind in ("bounding", "effective", "permitted"):
            cfg["process"]["capabilities"][kind] = caps
    script = ("mkdir /tmp/d && echo hello > /tmp/d/f && cat /tmp/d/f && ls /tmp/d && "
              "(echo sub) && linux32 true && grep Seccomp: /proc/self/status && "
              "echo end")
    r = run_container(["sh", "-c", script], edit=edit)
    assert r.rc == 0, r
    assert r.out.splitlines() == ["hello", "f", "sub", "Seccomp:\t2", "end"], r


def tiny_program(path: Path, code: bytes) -> None:
    """A static x86-64 ELF made of `code` alone: the raw syscalls busybox cannot make."""
    base, size = 0x400000, 64 + 56 + len(code)
    ehdr = (b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
            + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base + 120, 64, 0, 0, 64, 56, 1, 64, 0, 0))
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    path.write_bytes(ehdr + phdr + code)
    path.chmod(0o755)


# clone(CLONE_NEWUTS|SIGCHLD, 0, 0, 0, 0); exit 100 in the parent, 101 in the child, -errno on
# failure.
CLONE_NEWUTS_PROGRAM = bytes.fromhex(
    "b838000000" "bf11000004" "31f6" "31d2" "4531d2" "4531c0" "0f05"
    "4885c0" "7810" "7407" "bf64000000" "eb0b" "bf65000000" "eb04" "f7d8" "89c7"
    "b83c000000" "0f05")
DOCKER_CLONE_MASK = 2114060288  # every CLONE_NEW* flag


@pytest.mark.parametrize("docker_clone,rc", [(True, ENOSYS), (False, 1)])
def test_docker_style_profile_with_masked_eq_on_clone(run_container, bundle, docker_clone, rc):
    """podman's profile with docker's clone rule: clone is allowed only when no namespace flag
    is set (MASKED_EQ against the CLONE_NEW* mask), so a clone(CLONE_NEWUTS) gets the profile's
    default errno (ENOSYS) while forks keep working. The control, podman's unconditional clone,
    lets the same call reach the kernel, which refuses it (EPERM: no CAP_SYS_ADMIN)."""
    if not PODMAN_PROFILE.exists():
        pytest.skip(f"{PODMAN_PROFILE} missing")
    sc = oci_profile(json.loads(PODMAN_PROFILE.read_text()), caps=[])
    if docker_clone:
        for rule in sc["syscalls"]:
            rule["names"] = [n for n in rule["names"] if n != "clone"]
        sc["syscalls"].append({"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": DOCKER_CLONE_MASK, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]})
    tiny_program(bundle.rootfs / "cloneuts", CLONE_NEWUTS_PROGRAM)
    r = run_container(["sh", "-c", "(echo forked); /cloneuts; echo rc=$?"],
                      edit=with_seccomp(sc))
    assert r.rc == 0, r
    assert r.out == f"forked\nrc={rc}\n", r


# -- SCMP_ACT_NOTIFY ---------------------------------------------------------------------------

NOTIF_SIZE = 80        # struct seccomp_notif: id u64, pid u32, flags u32, seccomp_data (64)
RESP_SIZE = 24         # struct seccomp_notif_resp: id u64, val s64, error s32, flags u32
IOCTL_RECV = (3 << 30) | (NOTIF_SIZE << 16) | (ord("!") << 8) | 0
IOCTL_SEND = (3 << 30) | (RESP_SIZE << 16) | (ord("!") << 8) | 1


class Listener(threading.Thread):
    """A seccomp agent: takes the fd and state, answers every notification with success."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(4)
        self.states: list[dict] = []
        self.fds: list[int] = []
        self.answered: list[int] = []
        self.stop = threading.Event()

    @property
    def state(self) -> dict:
        return self.states[0]

    def take(self) -> None:
        conn, _ = self.server.accept()
        data = b""
        with conn:
            while True:
                msg, fds, _, _ = socket.recv_fds(conn, 65536, 4)
                self.fds += fds
                if not msg:
                    break
                data += msg
        self.states.append(json.loads(data))

    def run(self) -> None:
        while not self.stop.is_set():
            ready = select.select([self.server, *self.fds], [], [], 0.1)[0]
            for fd in ready:
                if fd is self.server:
                    self.take()
                    continue
                buf = bytearray(NOTIF_SIZE)
                try:
                    fcntl.ioctl(fd, IOCTL_RECV, buf)
                except OSError:
                    continue  # the target went away meanwhile
                notif_id, _pid, _flags, nr = struct.unpack_from("QIIi", buf)
                self.answered.append(nr)
                try:
                    fcntl.ioctl(fd, IOCTL_SEND, struct.pack("QqiI", notif_id, 0, 0, 0))
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.server.close()
        for fd in self.fds:
            os.close(fd)


def _notify_agent(tmp_path) -> tuple[Listener, dict]:
    """A running seccomp agent, and a profile that sends it every mkdir (SCMP_ACT_NOTIFY)."""
    path = str(tmp_path / "agent.sock")
    agent = Listener(path)
    agent.start()
    sc = deny(MKDIR, "SCMP_ACT_NOTIFY")
    sc["listenerPath"] = path
    return agent, sc


def test_notify_listener(run_container, bundle, tmp_path):
    agent, sc = _notify_agent(tmp_path)
    sc["listenerMetadata"] = "meta=1"

    def edit(cfg: dict) -> None:
        with_seccomp(sc)(cfg)
        cfg["annotations"] = {"org.example": "yes"}
    try:
        r = run_container(["sh", "-c", "mkdir /tmp/x && echo ok; test -d /tmp/x || echo absent"],
                          edit=edit)
    finally:
        agent.close()
    assert r.rc == 0, r
    assert r.out == "ok\nabsent\n"
    assert agent.answered, "no notification answered"
    st = agent.state
    assert st["fds"] == ["seccompFd"] and st["metadata"] == "meta=1"
    assert st["pid"] > 1 and st["state"]["pid"] == st["pid"]
    assert st["state"]["id"] == r.cid and st["state"]["bundle"] == str(bundle.path)
    assert st["state"]["annotations"] == {"org.example": "yes"}
    assert st["state"]["status"] == "creating"


def test_notify_refused_for_sendmsg(run_container):
    sc = deny(["sendmsg"], "SCMP_ACT_NOTIFY")
    sc["listenerPath"] = "/nonexistent.sock"
    r = run_container(["true"], edit=with_seccomp(sc))
    assert r.rc != 0 and "sendmsg" in r.err and "/linux/seccomp/syscalls/0" in r.err, r


def test_notify_needs_listener_path(run_container):
    r = run_container(["true"], edit=with_seccomp(deny(MKDIR, "SCMP_ACT_NOTIFY")))
    assert r.rc != 0
    assert "/linux/seccomp/listenerPath" in r.err, r


# -- exec: the container's filter applies to exec'd processes too -----------------------------

def start_detached(pyrunc, bundle, tmp_path: Path, cfg: dict) -> str:
    bundle.write(cfg)
    cid = pyrunc.new_id()
    log = tmp_path / "init.out"
    with open(log, "wb") as out:
        res = pyrunc("run", "-d", "--bundle", str(bundle.path), cid, capture_output=False,
                     stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    assert res.returncode == 0, log.read_text()
    return cid


def test_exec_gets_the_filter(pyrunc, bundle, tmp_path):
    cfg = base_config(["sleep", "100000"])
    with_seccomp(deny(MKDIR, "SCMP_ACT_ERRNO", errnoRet=ENOSYS))(cfg)
    cid = start_detached(pyrunc, bundle, tmp_path, cfg)
    r = pyrunc("exec", cid, "sh", "-c", "mkdir /tmp/y; echo rc=$?; grep Seccomp: /proc/self/status")
    assert r.returncode == 0, r
    assert r.stdout.decode() == "rc=1\nSeccomp:\t2\n"
    assert b"Function not implemented" in r.stderr


def test_exec_notify(pyrunc, bundle, tmp_path):
    agent, sc = _notify_agent(tmp_path)
    cfg = base_config(["sleep", "100000"])
    with_seccomp(sc)(cfg)
    try:
        cid = start_detached(pyrunc, bundle, tmp_path, cfg)
        r = pyrunc("exec", cid, "sh", "-c",
                   "mkdir /tmp/y && echo ok; test -d /tmp/y || echo absent")
    finally:
        agent.close()
    assert r.returncode == 0, r
    assert r.stdout.decode() == "ok\nabsent\n"
    assert [st["state"]["status"] for st in agent.states] == ["creating", "running"]
    init_pid = pyrunc.state(cid)["pid"]
    assert agent.states[0]["pid"] == init_pid
    assert agent.states[1]["pid"] not in (init_pid, 0) and agent.states[1]["state"]["id"] == cid


def int80_program(path: Path) -> None:
    """Calls getpid through the 32-bit entry (int 0x80, the x86 ABI) and exits 42: a syscall
    of another architecture, as a 32-bit binary would make it."""
    tiny_program(path, bytes.fromhex("b814000000" "cd80" "bf2a000000" "b83c000000" "0f05"))


@pytest.mark.parametrize("arches,rc", [(["SCMP_ARCH_X86_64"], 128 + 31),
                                       (["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"], 42)])
def test_architectures(run_container, bundle, tmp_path, arches, rc):
    # A syscall from an architecture the filter does not list is killed (libseccomp's bad-arch
    # action); listing SCMP_ARCH_X86 lets the same 32-bit syscall through.
    int80_program(tmp_path / "probe")
    if subprocess.run([str(tmp_path / "probe")]).returncode != 42:
        pytest.skip("this kernel runs no 32-bit syscalls (IA32 emulation off)")
    int80_program(bundle.rootfs / "int80")
    sc = deny(MKDIR, "SCMP_ACT_ERRNO")
    sc["architectures"] = arches
    r = run_container(["/int80"], edit=with_seccomp(sc))
    assert r.rc == rc, r


def test_arch_unknown_to_libseccomp(run_container, pyrunc):
    sc = deny(MKDIR, "SCMP_ACT_ERRNO")
    sc["architectures"].append("SCMP_ARCH_LOONGARCH64")  # libseccomp 2.6+
    r = run_container(["true"], edit=with_seccomp(sc))
    if r.rc == 0:
        pytest.skip("this libseccomp knows loongarch64")
    lines = error_lines(r.err)
    assert len(lines) == 1 and "/linux/seccomp/architectures/1" in lines[0], r
    assert not (pyrunc.root / r.cid).exists()
