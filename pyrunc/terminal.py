"""process.terminal: a pty from the container's own devpts, handed out as runc hands it out.

The init opens the pty (so it belongs to the container's devpts instance, not the host's), makes
the peer its controlling terminal and binds it over /dev/console; the master goes to the parent
over the sync socket, and from there either to the engine's --console-socket (SCM_RIGHTS) or,
for a foreground `run` with no socket, into a relay with the user's own terminal.
"""

from __future__ import annotations

import _socket
import _struct as struct  # not `struct`: it only re-exports _struct (~0.25 M instructions)
import fcntl

from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc import linux, saferoot

TIOCSWINSZ = 0x5414
TIOCGWINSZ = 0x5413
TIOCSCTTY = 0x540E
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441


def open_container_pty(console_size: dict | None, uid: int, gid: int) -> tuple[int, int]:
    """(master, peer) from /dev/ptmx inside the container; the peer comes from TIOCGPTPEER so
    no /dev/pts/N path (which the container could swap) is ever opened."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    peer = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    os.fchown(peer, uid, gid)
    if console_size:
        set_size(master, int(console_size.get("height", 0)), int(console_size.get("width", 0)))
    return master, peer


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def bind_console(peer: int) -> None:
    """/dev/console inside the container is the pty, as with runc."""
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        target = saferoot.ensure_target(root, "/dev/console", is_dir=False)
    finally:
        os.close(root)
    try:
        tree = linux.open_tree(peer, "", linux.OPEN_TREE_CLONE | linux.OPEN_TREE_CLOEXEC
                               | linux.AT_EMPTY_PATH)
        try:
            linux.move_mount(tree, "", target, "", linux.MOVE_MOUNT_F_EMPTY_PATH
                             | linux.MOVE_MOUNT_T_EMPTY_PATH)
        finally:
            os.close(tree)
    finally:
        os.close(target)


def make_controlling(peer: int) -> None:
    """stdio becomes the pty, and the pty the session's controlling terminal (init did setsid)."""
    fcntl.ioctl(peer, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(peer, fd)
    os.close(peer)


def send_to_socket(path: str, master: int) -> None:
    """The engine's console socket gets the master with SCM_RIGHTS, as runc sends it."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
        sock.sendmsg([b"/dev/ptmx"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                       struct.pack("i", master))])
    finally:
        sock.close()
