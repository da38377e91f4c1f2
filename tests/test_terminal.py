"""process.terminal: the pty goes to --console-socket, or is relayed by a foreground `run`."""

from __future__ import annotations

import os
import subprocess

import pytest
from checks import create_refused
from consoles import ConsoleSocket, read_until_eio

pytestmark = pytest.mark.kernel


def test_console_socket_receives_the_pty_master(pyrunc, bundle, tmp_path):
    cfg = bundle.edit()
    cfg["process"]["terminal"] = True
    cfg["process"]["consoleSize"] = {"height": 33, "width": 111}
    cfg["process"]["args"] = ["sh", "-c", "tty; stty size; ls -l /dev/console | cut -c1-1; echo done"]
    bundle.write()
    with ConsoleSocket(str(tmp_path / "console.sock")) as console:
        cid = pyrunc.new_id()
        # Pipes read to EOF, as containerd's shim reads them: with a terminal the init must
        # not keep create's stdout/stderr while it waits for `start` (or this times out).
        res = pyrunc("create", "--bundle", str(bundle.path), "--console-socket", console.path,
                     cid, timeout=20)
        assert res.returncode == 0, res.stderr
    assert console.fd is not None, "no fd arrived over the console socket"
    pyrunc("start", cid, check=True)
    output = read_until_eio(console.fd).decode().replace("\r", "")
    os.close(console.fd)
    lines = output.split("\n")
    assert lines[0].startswith("/dev/pts/"), output
    assert "33 111" in lines, output
    assert "c" in lines, output  # /dev/console is the pty, a character device
    assert "done" in lines, output
    pyrunc("delete", "--force", cid, check=True)


def test_create_with_terminal_needs_a_console_socket(pyrunc, bundle):
    cfg = bundle.edit()
    cfg["process"]["terminal"] = True
    bundle.write()
    err = create_refused(pyrunc, bundle)
    assert b"console socket" in err


def test_foreground_run_relays_the_terminal(pyrunc, bundle):
    """`pyrunc run` with terminal true and no socket: driven through a real pty by script(1)."""
    cfg = bundle.edit()
    cfg["process"]["terminal"] = True
    cfg["process"]["args"] = ["sh", "-c", "read line; echo got-$line; exit 7"]
    bundle.write()
    cid = pyrunc.new_id()
    cmd = f"{pyrunc.binary} --root {pyrunc.root} run --bundle {bundle.path} {cid}"
    proc = subprocess.run(["script", "-qec", cmd, "/dev/null"], input=b"hello\n",
                          capture_output=True, timeout=30)
    assert b"got-hello" in proc.stdout, proc.stdout
    assert proc.returncode == 7


def test_interactive_run_in_tmux(pyrunc, bundle, tmp_path):
    """`pyrunc run` with a terminal, typed at through tmux: the container's shell sees the
    user's window size, echoes what is typed, and its exit status comes back."""
    import shutil
    import time
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed (contrib/setup.sh installs it)")
    cfg = bundle.edit()
    cfg["process"]["terminal"] = True
    cfg["process"]["args"] = ["sh"]
    bundle.write()
    cid = pyrunc.new_id()
    session = f"pyrunc-{cid}"
    sock = str(tmp_path / "tmux.sock")
    command = (f"{pyrunc.binary} --root {pyrunc.root} run --bundle {bundle.path} {cid}; "
               f"echo EXIT=$?; sleep 60")

    def screen() -> str:
        return subprocess.run([tmux, "-S", sock, "capture-pane", "-p", "-t", session],
                              capture_output=True, text=True).stdout

    def wait_for(text: str) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            shown = screen()
            if text in shown:
                return shown
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared:\n{screen()}")

    subprocess.run([tmux, "-S", sock, "new-session", "-d", "-s", session, "-x", "91", "-y", "27",
                    command], check=True)
    try:
        wait_for("#")  # the container shell's prompt
        subprocess.run([tmux, "-S", sock, "send-keys", "-t", session,
                        "stty size; echo typed-$((40+2))", "Enter"], check=True)
        shown = wait_for("typed-42")
        assert "27 91" in shown
        subprocess.run([tmux, "-S", sock, "send-keys", "-t", session, "exit 5", "Enter"],
                       check=True)
        wait_for("EXIT=5")
    finally:
        subprocess.run([tmux, "-S", sock, "kill-server"], capture_output=True)
