"""Foreground `run` with a terminal and no console socket: relay the user's terminal to the pty.

The user's terminal goes raw (the container's line discipline does the editing), its size is
copied to the pty now and on every SIGWINCH, and we exit with the container's status once the
init is reaped and its last output drained.
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum
import errno
import fcntl
import os
import select
import termios

from pyrunc import terminal
from pyrunc.supervise import exit_code


def _copy_size(src: int, master: int) -> None:
    try:
        packed = fcntl.ioctl(src, terminal.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, terminal.TIOCSWINSZ, packed)
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def relay_until_exit(master: int, pid: int) -> int:
    stdin_tty = os.isatty(0)
    saved = termios.tcgetattr(0) if stdin_tty else None
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_wakeup = signal.set_wakeup_fd(wake_w)
    previous_winch = signal.signal(signal.SIGWINCH, lambda *_: _copy_size(0, master))
    previous_chld = signal.signal(signal.SIGCHLD, lambda *_: None)
    status: int | None = None
    try:
        if stdin_tty:
            _copy_size(0, master)
            raw = termios.tcgetattr(0)
            raw[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON)
            raw[1] &= ~termios.OPOST
            raw[2] |= termios.CS8
            raw[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
            raw[6][termios.VMIN] = 1
            raw[6][termios.VTIME] = 0
            termios.tcsetattr(0, termios.TCSADRAIN, raw)
        watch = [master, wake_r, 0]
        while True:
            if status is None:
                got, raw_status = os.waitpid(pid, os.WNOHANG)
                if got == pid:
                    status = exit_code(raw_status)
            try:
                ready, _, _ = select.select(watch, [], [], 0.05 if status is not None else None)
            except InterruptedError:
                continue
            if not ready and status is not None:
                break  # the init is gone and the pty has nothing more to say
            if wake_r in ready:
                try:
                    os.read(wake_r, 256)
                except BlockingIOError:
                    pass
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    if status is not None:
                        break
                    watch = [wake_r]  # pty closed before the init was reaped
                else:
                    _write_all(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    _write_all(master, data)
                else:
                    watch = [w for w in watch if w != 0]
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved)
        signal.set_wakeup_fd(old_wakeup)
        signal.signal(signal.SIGWINCH, previous_winch)
        signal.signal(signal.SIGCHLD, previous_chld)
        os.close(wake_r)
        os.close(wake_w)
        os.close(master)
    return status
