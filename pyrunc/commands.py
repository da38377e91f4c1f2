"""One function per subcommand: positional arguments checked, then the library called."""

from __future__ import annotations

import sys
from posix import environ as _environ  # bytes keys; os.environ would import os (lightos.py)

from pyrunc import errors
from pyrunc import lightos as os  # os minus its import cost: see lightos.py


def _one_id(command: str, pos: list[str], extra: int = 0) -> str:
    if not pos:
        raise errors.PyruncError(f'"{command}" requires a container id (pyrunc {command} --help)')
    if len(pos) > 1 + extra:
        raise errors.PyruncError(f'"{command}" got unexpected arguments: {" ".join(pos[1 + extra:])}')
    return pos[0]


def dispatch(command: str, root: str, opts: dict, pos: list[str]) -> int:
    if command == "state":
        from pyrunc import lifecycle
        sys.stdout.write(lifecycle.state_json(root, _one_id(command, pos)) + "\n")
        return 0
    if command in ("create", "run"):
        return create_or_run(command, root, opts, pos)
    if command == "start":
        from pyrunc import lifecycle_start
        lifecycle_start.start(root, _one_id(command, pos))
        return 0
    if command == "kill":
        from pyrunc import lifecycle
        cid = _one_id(command, pos, extra=1)
        sig = lifecycle.parse_signal(pos[1] if len(pos) > 1 else "SIGTERM")
        lifecycle.kill(root, cid, sig, bool(opts.get("all")))
        return 0
    if command == "delete":
        from pyrunc import lifecycle_delete
        lifecycle_delete.delete(root, _one_id(command, pos), bool(opts.get("force")))
        return 0
    if command == "list":
        return list_command(root, opts)
    if command == "logs":
        from pyrunc import lifecycle
        return lifecycle.logs(root, _one_id(command, pos), bool(opts.get("follow")))
    if command == "spec":
        from pyrunc import specgen
        specgen.write_spec(opts.get("bundle") or ".", bool(opts.get("rootless")))
        return 0
    if command == "exec":
        from pyrunc import execute
        if not pos:
            raise errors.PyruncError('"exec" requires a container id (pyrunc exec --help)')
        return execute.exec_command(root, pos[0], pos[1:], opts)
    if command in ("pause", "resume"):
        from pyrunc import lifecycle
        lifecycle.pause(root, _one_id(command, pos), command == "pause")
        return 0
    if command == "update":
        from pyrunc import update
        return update.update(root, _one_id(command, pos), opts)
    if command == "ps":
        return ps_command(root, opts, pos)
    if command == "events":
        from pyrunc import events
        return events.events(root, _one_id(command, pos), opts)
    if command == "features":
        from pyrunc import features, jsonlite
        sys.stdout.write(jsonlite.dumps_indent(features.features(), "    ") + "\n")
        return 0
    if command == "checkpoint":
        raise errors.PyruncError("checkpoint needs CRIU, which does not work on this host; "
                          "pyrunc does not implement checkpoint/restore")
    raise errors.NotSupported(f"{command}: not supported yet")


def create_or_run(command: str, root: str, opts: dict, pos: list[str]) -> int:
    from pyrunc import create
    cid = _one_id(command, pos)
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


def _exit_text(item: dict) -> str:
    if "exitStatus" not in item:
        return ""
    text = str(item["exitStatus"])
    return f"{text} ({item['exitSignal']})" if item.get("exitSignal") else text


def socket_activation_fds() -> int:
    """systemd socket activation (sd_listen_fds): fds 3.. are ours to pass when LISTEN_FDS is
    set and LISTEN_PID names this very process; they go first, before --preserve-fds."""
    count = _environ.get(b"LISTEN_FDS", b"").decode("utf-8", "surrogateescape")
    owner = _environ.get(b"LISTEN_PID", b"").decode("utf-8", "surrogateescape")
    if not count.isdigit() or owner != str(os.getpid()):
        return 0
    return int(count)


def list_command(root: str, opts: dict) -> int:
    from pyrunc import lifecycle
    items = lifecycle.list_containers(root)
    fmt = opts.get("format") or "table"
    if opts.get("quiet"):
        sys.stdout.write("".join(f"{c['id']}\n" for c in items))
    elif fmt == "json":
        from pyrunc.jsonlite import dumps_indent
        sys.stdout.write(dumps_indent(items) + "\n")
    elif fmt == "table":
        # runc's columns, then how a stopped container ended (when pyrunc-shim saw it end).
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER", "EXIT")]
        rows += [(c["id"], str(c["pid"]), c["status"], c["bundle"], c["created"], c["owner"],
                  _exit_text(c)) for c in items]
        widths = [max(len(r[i]) for r in rows) for i in range(7)]
        for r in rows:
            sys.stdout.write("   ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")
    else:
        raise errors.PyruncError(f"invalid format option: {fmt}")
    return 0


def ps_command(root: str, opts: dict, pos: list[str]) -> int:
    """`ps --format json`: a bare JSON array of host pids (go-runc reads stdout+stderr together,
    so nothing else may be printed); `--format table`: ps(1) with the extra args, our rows only."""
    from pyrunc import lifecycle
    if not pos:
        raise errors.PyruncError('"ps" requires a container id (pyrunc ps --help)')
    pids = lifecycle.container_pids(root, pos[0])
    fmt = opts.get("format") or "table"
    if fmt == "json":
        sys.stdout.write("[" + ",".join(str(p) for p in pids) + "]\n")
        return 0
    if fmt != "table":
        raise errors.PyruncError(f"invalid format option: {fmt}")
    import subprocess
    ps_args = pos[1:] or ["-ef"]
    try:
        out = subprocess.run(["ps", *ps_args], capture_output=True, check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise errors.PyruncError(f"ps {' '.join(ps_args)}: {exc}") from None
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise errors.PyruncError("ps output has no PID column; pass options that print one")
    column = header.index("PID")
    wanted = set(pids)
    sys.stdout.write(lines[0] + "\n")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in wanted:
            sys.stdout.write(line + "\n")
    return 0
