"""The output of `list` and `ps` (table or JSON). Apart from commands.py, which every command
loads, for the others' sake."""

from __future__ import annotations

import sys

from pyrunc import errors


def _exit_text(item: dict) -> str:
    if "exitStatus" not in item:
        return ""
    text = str(item["exitStatus"])
    return f"{text} ({item['exitSignal']})" if item.get("exitSignal") else text


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
