"""`create` and `run` from the command line: their flags (and systemd's socket activation fds) to
create.CreateOptions. Apart from commands.py, which every command loads, for the others' sake."""

from __future__ import annotations

from posix import environ as _environ  # bytes keys; os.environ would import os (lightos.py)

from pyrunc import errors
from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.commands import one_id


def create_or_run(command: str, root: str, opts: dict, pos: list[str]) -> int:
    from pyrunc import create
    cid = one_id(command, pos)
    copts = create.CreateOptions(
        bundle=opts.get("bundle") or os.getcwd(), pid_file=opts.get("pid_file"),
        console_socket=opts.get("console_socket"), no_pivot=bool(opts.get("no_pivot")),
        no_new_keyring=bool(opts.get("no_new_keyring")),
        preserve_fds=int(opts.get("preserve_fds") or 0), command=command)
    if copts.preserve_fds < 0:
        raise errors.PyruncError("--preserve-fds must not be negative")
    copts.rootless_cgroups = opts.get("rootless_cgroups")
    copts.listen_fds = socket_activation_fds()
    copts.preserve_fds += copts.listen_fds
    if command == "create":
        if opts.get("shim"):
            from pyrunc import detached
            return detached.launch(root, cid, copts, start=False)
        create.create(root, cid, copts)
        return 0
    from pyrunc import run
    return run.run(root, cid, copts, detach=bool(opts.get("detach")), keep=bool(opts.get("keep")))


def socket_activation_fds() -> int:
    """systemd socket activation (sd_listen_fds): fds 3.. are ours to pass when LISTEN_FDS is
    set and LISTEN_PID names this very process; they go first, before --preserve-fds."""
    count = _environ.get(b"LISTEN_FDS", b"").decode("utf-8", "surrogateescape")
    owner = _environ.get(b"LISTEN_PID", b"").decode("utf-8", "surrogateescape")
    if not count.isdigit() or owner != str(os.getpid()):
        return 0
    return int(count)
