"""Hooks: each kind at its point of the lifecycle, in the namespaces the runtime-spec names, with
the state on stdin; failures handled as the spec says."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

import pytest
from checks import create_refused

pytestmark = pytest.mark.kernel

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def _recorder(tmp_path, kind: str) -> dict:
    """A hook that appends "<kind> <mnt ns> <state json>" to a log file on the host."""
    log = tmp_path / "hooks.log"
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\nstate=$(cat)\n"
                      f'echo "$1 $(readlink /proc/self/ns/mnt) $state" >> {log}\n')
    script.chmod(0o755)
    return {"path": str(script), "args": ["hook.sh", kind]}


def _lines(tmp_path) -> list[tuple[str, str, dict]]:
    out = []
    for line in (tmp_path / "hooks.log").read_text().splitlines():
        kind, ns, state = line.split(" ", 2)
        out.append((kind, ns, json.loads(state)))
    return out


def test_all_hooks_run_in_order_with_state_on_stdin(pyrunc, bundle, tmp_path):
    cfg = bundle.edit()
    cfg["root"]["readonly"] = False
    cfg["process"]["args"] = ["true"]
    cfg["hooks"] = {k: [_recorder(tmp_path, k)] for k in KINDS}
    # startContainer runs inside the container after pivot_root: the host's log is out of
    # reach there, so it records through a bind mount of the test directory.
    cfg["mounts"].append({"destination": str(tmp_path), "type": "bind", "source": str(tmp_path),
                          "options": ["rbind"]})
    bundle.write()
    cid = pyrunc.new_id()
    with open(tmp_path / "out", "wb") as out:
        pyrunc("create", "--bundle", str(bundle.path), cid, check=True, capture_output=False,
               stdout=out, stderr=out)
    pid = pyrunc.state(cid)["pid"]
    container_mnt = os.readlink(f"/proc/{pid}/ns/mnt")
    host_mnt = os.readlink("/proc/self/ns/mnt")
    pyrunc("start", cid, check=True)
    for _ in range(200):
        if pyrunc.state(cid)["status"] == "stopped":
            break
        subprocess.run(["sleep", "0.02"])
    pyrunc("delete", cid, check=True)
    lines = _lines(tmp_path)
    assert [k for k, _, _ in lines] == list(KINDS)
    where = {k: ns for k, ns, _ in lines}
    for kind in ("prestart", "createRuntime", "poststart", "poststop"):
        assert where[kind] == host_mnt, kind
    for kind in ("createContainer", "startContainer"):
        assert where[kind] == container_mnt, kind
    states = {k: st for k, _, st in lines}
    assert states["createRuntime"]["status"] == "creating"
    assert states["prestart"]["status"] == "created"  # runtime-tools hooks_stdin, crun
    assert states["startContainer"]["status"] == "created"
    assert states["poststart"]["status"] == "running"
    assert states["poststop"]["status"] == "stopped"
    for kind in ("prestart", "createRuntime", "createContainer", "startContainer", "poststart"):
        assert states[kind]["pid"] == pid, kind
        assert states[kind]["id"] == cid
        assert states[kind]["bundle"] == str(bundle.path)


def test_start_hook_member_spelled_with_an_escape_runs(pyrunc, bundle, tmp_path):
    """start parses config.json for poststart only when its bytes can hold that member
    (state.Container.may_have): "\\u0070oststart" is the same name and must run."""
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sleep", "30"]
    cfg["hooks"] = {"poststart": [_recorder(tmp_path, "late")]}  # no other "poststart" bytes
    bundle.write()
    path = bundle.path / "config.json"
    text = path.read_text()
    assert text.count('"poststart"') == 1
    path.write_text(text.replace('"poststart"', '"\\u0070oststart"'))
    cid = pyrunc.new_id()
    pyrunc("create", "--bundle", str(bundle.path), cid, check=True, capture_output=False,
           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = pyrunc.state(cid)["pid"]
    stored = (pyrunc.root / cid / "config.json").read_bytes()
    assert b"poststart" not in stored and b"\\u0070oststart" in stored  # what start reads
    pyrunc("start", cid, check=True)
    pyrunc("delete", "--force", cid, check=True)
    [(kind, _, state)] = _lines(tmp_path)
    assert kind == "late" and state["status"] == "running" and state["pid"] == pid


def test_start_and_delete_take_the_hook_kinds_from_the_state(pyrunc, bundle, tmp_path):
    """create records in state.json which hook kinds its config has; start and delete read the
    stored config.json only for a kind listed there (as runc, which keeps the config it created
    with in its state, never rereads it). A config.json changed after create adds no hooks."""
    cfg = bundle.edit()
    cfg["process"]["args"] = ["true"]
    bundle.write()
    cid = pyrunc.new_id()
    pyrunc("create", "--bundle", str(bundle.path), cid, check=True, capture_output=False,
           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert json.loads((pyrunc.root / cid / "state.json").read_text())["hooks"] == []
    cfg["hooks"] = {k: [_recorder(tmp_path, k)] for k in ("poststart", "poststop")}
    (pyrunc.root / cid / "config.json").write_text(json.dumps(cfg))
    pyrunc("start", cid, check=True)
    for _ in range(200):
        if pyrunc.state(cid)["status"] == "stopped":
            break
        subprocess.run(["sleep", "0.02"])
    r = pyrunc("delete", cid)
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    assert not (pyrunc.root / cid).exists()
    assert not (tmp_path / "hooks.log").exists()


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_time_hook_fails_create_and_cleans_up(pyrunc, bundle, kind, tmp_path):
    # runtime-spec lifecycle: the container is destroyed (step 12), then the poststop hooks
    # run (step 13), with the stopped state; a failing one of them is only a warning.
    poststop = tmp_path / "poststop.json"
    cfg = bundle.edit()
    cfg["hooks"] = {kind: [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}],
                    "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 4"]},
                                 {"path": "/bin/sh", "args": ["sh", "-c", f"cat > {poststop}"]}]}
    bundle.write()
    cid = pyrunc.new_id()
    res = pyrunc("create", "--bundle", str(bundle.path), cid)
    assert res.returncode == 1
    assert f"{kind} hook #0".encode() in res.stderr
    assert b"exit status 3" in res.stderr
    assert b"poststop hook #0" in res.stderr and b"exit status 4" in res.stderr
    assert not (pyrunc.root / cid).exists()
    state = json.loads(poststop.read_text())
    assert (state["id"], state["status"], state["pid"]) == (cid, "stopped", 0)
    assert state["bundle"] == str(bundle.path)


def test_failure_before_any_hook_runs_no_poststop(pyrunc, bundle, tmp_path):
    # A create that fails before the hooks (here: the rootfs is missing) never set anything
    # up for a poststop hook to undo: errors leave the host as before (runtime.md#errors).
    marker = tmp_path / "poststop-ran"
    cfg = bundle.edit()
    cfg["root"]["path"] = str(tmp_path / "no-such-rootfs")
    cfg["hooks"] = {"prestart": [{"path": "/bin/true"}],
                    "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"touch {marker}"]}]}
    bundle.write()
    cid = pyrunc.new_id()
    assert pyrunc("create", "--bundle", str(bundle.path), cid).returncode == 1
    assert not marker.exists()


def test_failing_start_container_hook_fails_start(pyrunc, bundle, tmp_path):
    # runtime-spec lifecycle step 7: an error from `start`, the container stopped, the user's
    # program never run.
    cfg = bundle.edit()
    cfg["root"]["readonly"] = False
    cfg["process"]["args"] = ["sh", "-c", "echo ran > /ran"]
    cfg["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}],
                    "poststop": [{"path": "/bin/sh",
                                  "args": ["sh", "-c", f"touch {tmp_path / 'poststop-ran'}"]}]}
    bundle.write()
    cid = pyrunc.new_id()
    pyrunc("create", "--bundle", str(bundle.path), cid, check=True, capture_output=False,
           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    res = pyrunc("start", cid)
    assert res.returncode == 1, res
    err = res.stderr.decode()
    assert err.startswith("pyrunc: startContainer hook #0") and "exit status 3" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert pyrunc.state(cid)["status"] == "stopped"
    assert not (bundle.rootfs / "ran").exists()
    pyrunc("delete", cid, check=True)
    assert not (pyrunc.root / cid).exists()
    assert (tmp_path / "poststop-ran").exists()  # the lifecycle went on at step 12 with delete


def test_hook_timeout_kills_it_and_fails_create(pyrunc, bundle):
    cfg = bundle.edit()
    cfg["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}
    bundle.write()
    cid = pyrunc.new_id()
    res = pyrunc("create", "--bundle", str(bundle.path), cid, timeout=20)
    assert res.returncode == 1
    assert b"timed out after 1s" in res.stderr
    assert not (pyrunc.root / cid).exists()


@pytest.mark.parametrize("timeout", [2**31, 2**63 - 1])
def test_a_hook_timeout_beyond_any_clock_means_no_limit(pyrunc, bundle, timeout):
    """poll(2) takes int milliseconds: the schema's int64 seconds must not overflow it."""
    cfg = bundle.edit()
    cfg["hooks"] = {"createRuntime": [{"path": "/bin/true", "args": ["true"], "timeout": timeout}]}
    bundle.write()
    cid = pyrunc.new_id()
    with tempfile.TemporaryFile() as err:  # the init keeps create's stderr: no pipe
        res = pyrunc("create", "--bundle", str(bundle.path), cid, capture_output=False,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        err.seek(0)
        assert res.returncode == 0, err.read()
    pyrunc("delete", "--force", cid, check=True)


def test_hook_env_and_args_are_exactly_as_configured(pyrunc, bundle, tmp_path):
    out = tmp_path / "env.txt"
    cfg = bundle.edit()
    cfg["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", f"env > {out}; echo $0", "zero"],
                                       "env": ["FOO=bar", "BAZ=1"]}]}
    bundle.write()
    pyrunc("run", "--bundle", str(bundle.path), pyrunc.new_id(), check=True)
    env = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert env.get("FOO") == "bar" and env.get("BAZ") == "1"
    assert "PATH" not in env or env["PATH"] != os.environ.get("PATH")


@pytest.mark.parametrize("kind", ["poststart", "poststop"])
def test_failing_late_hook_only_warns(pyrunc, bundle, kind):
    cfg = bundle.edit()
    cfg["process"]["args"] = ["sh", "-c", "exit 5"]
    cfg["hooks"] = {kind: [{"path": "/bin/false"}]}
    bundle.write()
    res = pyrunc("run", "--bundle", str(bundle.path), pyrunc.new_id())
    assert res.returncode == 5
    assert f"warning: {kind} hook #0".encode() in res.stderr


def test_missing_hook_binary_fails_create(pyrunc, bundle):
    cfg = bundle.edit()
    cfg["hooks"] = {"prestart": [{"path": "/nonexistent/hook"}]}
    bundle.write()
    err = create_refused(pyrunc, bundle)
    assert b"prestart hook #0 (/nonexistent/hook)" in err
