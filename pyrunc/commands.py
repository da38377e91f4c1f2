"""Each subcommand to the module that runs it, positional arguments checked. Only dispatch and
one_id here: every command loads this module (create's, list's and ps's own parts are in
create_cmd.py and listing.py)."""

from __future__ import annotations

import sys

from pyrunc import errors


def one_id(command: str, pos: list[str], extra: int = 0) -> str:
    if not pos:
        raise errors.PyruncError(f'"{command}" requires a container id (pyrunc {command} --help)')
    if len(pos) > 1 + extra:
        raise errors.PyruncError(f'"{command}" got unexpected arguments: {" ".join(pos[1 + extra:])}')
    return pos[0]


def dispatch(command: str, root: str, opts: dict, pos: list[str]) -> int:
    if command == "state":
        from pyrunc import lifecycle
        sys.stdout.write(lifecycle.state_json(root, one_id(command, pos)) + "\n")
        return 0
    if command in ("create", "run"):
        from pyrunc import create_cmd
        return create_cmd.create_or_run(command, root, opts, pos)
    if command == "start":
        from pyrunc import lifecycle_start
        lifecycle_start.start(root, one_id(command, pos))
        return 0
    if command == "kill":
        from pyrunc import lifecycle
        cid = one_id(command, pos, extra=1)
        sig = lifecycle.parse_signal(pos[1] if len(pos) > 1 else "SIGTERM")
        lifecycle.kill(root, cid, sig, bool(opts.get("all")))
        return 0
    if command == "delete":
        from pyrunc import lifecycle_delete
        lifecycle_delete.delete(root, one_id(command, pos), bool(opts.get("force")))
        return 0
    if command == "list":
        from pyrunc import listing
        return listing.list_command(root, opts)
    if command == "logs":
        from pyrunc import lifecycle
        return lifecycle.logs(root, one_id(command, pos), bool(opts.get("follow")))
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
        lifecycle.pause(root, one_id(command, pos), command == "pause")
        return 0
    if command == "update":
        from pyrunc import update
        return update.update(root, one_id(command, pos), opts)
    if command == "ps":
        from pyrunc import listing
        return listing.ps_command(root, opts, pos)
    if command == "events":
        from pyrunc import events
        return events.events(root, one_id(command, pos), opts)
    if command == "features":
        from pyrunc import features, jsonlite
        sys.stdout.write(jsonlite.dumps_indent(features.features(), "    ") + "\n")
        return 0
    if command == "checkpoint":
        raise errors.PyruncError("checkpoint needs CRIU, which does not work on this host; "
                          "pyrunc does not implement checkpoint/restore")
    raise errors.NotSupported(f"{command}: not supported yet")

