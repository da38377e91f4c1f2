"""runc's command line, parsed by a small table (argparse costs more to import than runc's `state`).

This module only turns argv into calls; it knows nothing of containers. Errors of every command
end up in main(), which writes them the way engines expect (log.py) and picks the exit status.
"""

from __future__ import annotations

import sys

from pyrunc import errors
from pyrunc import lightos as os  # os minus its import cost: see lightos.py

TYPE_CHECKING = False  # typing costs a short command more than its own code
if TYPE_CHECKING:
    from typing import Any

# flag name -> (destination, kind); kind: "bool", "str", "int", "list" (repeatable)
Flags = dict[str, tuple[str, str]]

GLOBAL_FLAGS: Flags = {
    "--root": ("root", "str"), "--log": ("log", "str"), "--log-format": ("log_format", "str"),
    "--debug": ("debug", "bool"), "--systemd-cgroup": ("systemd_cgroup", "bool"),
    "--rootless": ("rootless", "str"), "--criu": ("criu", "str"),
    "--help": ("help", "bool"), "-h": ("help", "bool"),
    "--version": ("version", "bool"), "-v": ("version", "bool"),
}
_CREATE_FLAGS: Flags = {
    "--bundle": ("bundle", "str"), "-b": ("bundle", "str"),
    "--console-socket": ("console_socket", "str"), "--pid-file": ("pid_file", "str"),
    "--no-pivot": ("no_pivot", "bool"), "--no-new-keyring": ("no_new_keyring", "bool"),
    "--preserve-fds": ("preserve_fds", "int"),
}
COMMANDS: dict[str, tuple[Flags, str, str]] = {
    # name: (flags, usage of positionals, one-line description)
    "create": ({**_CREATE_FLAGS, "--shim": ("shim", "bool")}, "<container-id>",
               "create a container (--shim: watched by pyrunc-shim, for use without an engine)"),
    "run": ({**_CREATE_FLAGS, "--detach": ("detach", "bool"), "-d": ("detach", "bool"),
             "--keep": ("keep", "bool")},
            "<container-id>", "create and run a container"),
    "start": ({}, "<container-id>", "executes the user defined process in a created container"),
    "state": ({}, "<container-id>", "output the state of a container"),
    "list": ({"--format": ("format", "str"), "-f": ("format", "str"),
              "--quiet": ("quiet", "bool"), "-q": ("quiet", "bool")},
             "", "lists containers started by pyrunc with the given root"),
    "logs": ({"--follow": ("follow", "bool"), "-f": ("follow", "bool")}, "<container-id>",
             "print the output of a container started by run -d or create --shim"),
    "kill": ({"--all": ("all", "bool"), "-a": ("all", "bool")}, "<container-id> [signal]",
             "kill sends the specified signal (default: SIGTERM) to the container's init process"),
    "delete": ({"--force": ("force", "bool"), "-f": ("force", "bool")}, "<container-id>",
               "delete any resources held by the container"),
    "spec": ({"--bundle": ("bundle", "str"), "-b": ("bundle", "str"),
              "--rootless": ("rootless", "bool")}, "", "create a new specification file"),
    "exec": ({"--process": ("process", "str"), "-p": ("process", "str"),
              "--console-socket": ("console_socket", "str"), "--cwd": ("cwd", "str"),
              "--env": ("env", "list"), "-e": ("env", "list"), "--tty": ("tty", "bool"),
              "-t": ("tty", "bool"), "--user": ("user", "str"), "-u": ("user", "str"),
              "--additional-gids": ("additional_gids", "list"), "-g": ("additional_gids", "list"),
              "--cap": ("cap", "list"), "-c": ("cap", "list"),
              "--no-new-privs": ("no_new_privs", "bool"), "--apparmor": ("apparmor", "str"),
              "--process-label": ("process_label", "str"), "--detach": ("detach", "bool"),
              "-d": ("detach", "bool"), "--pid-file": ("pid_file", "str"),
              "--preserve-fds": ("preserve_fds", "int"), "--ignore-paused": ("ignore_paused", "bool"),
              "--cgroup": ("cgroup", "list")},
             "<container-id> <command> [args...]", "execute new process inside the container"),
    "ps": ({"--format": ("format", "str"), "-f": ("format", "str")}, "<container-id> [ps options]",
           "ps displays the processes running inside a container"),
    "pause": ({}, "<container-id>", "pause suspends all processes inside the container"),
    "resume": ({}, "<container-id>", "resumes all processes that have been previously paused"),
    "update": ({"--resources": ("resources", "str"), "-r": ("resources", "str"),
                "--memory": ("memory", "str"), "--memory-swap": ("memory_swap", "str"),
                "--memory-reservation": ("memory_reservation", "str"),
                "--kernel-memory": ("kernel_memory", "str"),
                "--kernel-memory-tcp": ("kernel_memory_tcp", "str"),
                "--cpu-shares": ("cpu_shares", "str"), "--cpu-quota": ("cpu_quota", "str"),
                "--cpu-period": ("cpu_period", "str"), "--cpu-rt-runtime": ("cpu_rt_runtime", "str"),
                "--cpu-rt-period": ("cpu_rt_period", "str"), "--cpu-idle": ("cpu_idle", "str"),
                "--cpuset-cpus": ("cpuset_cpus", "str"), "--cpuset-mems": ("cpuset_mems", "str"),
                "--pids-limit": ("pids_limit", "str"), "--blkio-weight": ("blkio_weight", "str"),
                "--l3-cache-schema": ("l3_cache_schema", "str"),
                "--mem-bw-schema": ("mem_bw_schema", "str")},
               "<container-id>", "update container resource constraints"),
    "events": ({"--interval": ("interval", "str"), "--stats": ("stats", "bool")}, "<container-id>",
               "display container events such as OOM notifications, and resource stats"),
    "features": ({}, "", "show the enabled features"),
    "checkpoint": ({}, "<container-id>", "checkpoint a running container (needs CRIU)"),
    "restore": ({}, "<container-id>", "restore a container from a previous checkpoint"),
}
# Filled in by subsequent issues; until then each answers clearly that it is not there yet.
NOT_YET = {"restore"}


# Parsed flags by destination; a flag not given is absent. Values are str, bool, int or
# list[str] as the flag's table entry says. A plain dict, not a dict subclass with attribute
# access: every command would create that class (~55 K instructions) for nothing.
if TYPE_CHECKING:
    Args = dict[str, Any]


def parse_flags(argv: list[str], flags: Flags, stop_at_positional: bool) -> tuple[Args, list[str]]:
    """Both `--flag value` and `--flag=value`; bools take an optional `=true|false`."""
    out: Args = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i + 1:])
            break
        if not arg.startswith("-") or arg == "-":
            if stop_at_positional:
                rest.extend(argv[i:])
                break
            rest.append(arg)
            i += 1
            continue
        name, eq, value = arg.partition("=")
        if name not in flags and not name.startswith("--") and len(name) > 2 and not eq:
            # Combined short booleans, e.g. -fq.
            shorts = [f"-{c}" for c in name[1:]]
            if all(s in flags and flags[s][1] == "bool" for s in shorts):
                for s in shorts:
                    out[flags[s][0]] = True
                i += 1
                continue
        if name not in flags:
            raise errors.PyruncError(f"flag provided but not defined: {name}")
        dest, kind = flags[name]
        if kind == "bool":
            if eq and value.lower() not in ("true", "false", "1", "0"):
                raise errors.PyruncError(f"invalid boolean value {value!r} for {name}")
            out[dest] = (value.lower() in ("true", "1")) if eq else True
        else:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise errors.PyruncError(f"flag needs an argument: {name}")
                value = argv[i]
            if kind == "int":
                try:
                    out[dest] = int(value)
                except ValueError:
                    raise errors.PyruncError(f"invalid value {value!r} for flag {name}") from None
            elif kind == "list":
                out.setdefault(dest, []).append(value)
            else:
                out[dest] = value
        i += 1
    return out, rest


def default_root() -> str:
    if os.geteuid() != 0 and os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "pyrunc")
    return "/run/pyrunc"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        gopts, rest = parse_flags(argv, GLOBAL_FLAGS, stop_at_positional=True)
        get = gopts.get
        if get("log") or get("log_format") or get("debug"):
            # log.py only when asked for (or for an error, below): its class and code are
            # ~0.1 M instructions a successful short command does not need.
            from pyrunc.log import Log
            if log_path := get("log"):
                Log.path = os.path.abspath(log_path)
            if log_format := get("log_format"):
                if log_format not in ("text", "json"):
                    raise errors.PyruncError(f"invalid log-format: {log_format}")
                Log.fmt = log_format
            Log.debug_enabled = bool(get("debug"))
        if get("version"):
            from pyrunc.cli_help import version_text
            sys.stdout.write(version_text())
            return 0
        if not rest or get("help"):
            from pyrunc.cli_help import usage
            sys.stdout.write(usage())
            if get("help"):
                return 0
            raise errors.PyruncError("no command given (the usage above lists them)")
        command, cargs = rest[0], rest[1:]
        if command not in COMMANDS:
            raise errors.PyruncError(f"no such command: {command}")
        flags, _, _ = COMMANDS[command]
        if "--help" in cargs[:1] or "-h" in cargs[:1] or (command != "exec" and "--help" in cargs):
            from pyrunc.cli_help import usage
            sys.stdout.write(usage(command))
            return 0
        if get("rootless") not in (None, "", "auto", "1", "t", "T", "TRUE", "true", "True",
                                  "0", "f", "F", "FALSE", "false", "False"):
            raise errors.PyruncError(f"--rootless: invalid value {get('rootless')!r} (want true, false "
                              "or auto)")
        if get("systemd_cgroup"):
            raise errors.PyruncError("systemd not running on this host, cannot use systemd cgroups "
                              "manager (--systemd-cgroup)")
        opts, pos = parse_flags(cargs, flags, stop_at_positional=(command in ("exec", "ps")))
        opts["rootless_cgroups"] = get("rootless")  # None: auto (rootless when not root)
        root_flag = get("root")
        root = os.path.abspath(root_flag) if root_flag else default_root()
        from pyrunc import commands
        return commands.dispatch(command, root, opts, pos)
    except errors.PyruncError as exc:
        from pyrunc.log import Log
        Log.error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        from pyrunc.log import Log
        Log.error(errors.describe(exc))  # not init.py's copy: that loaded the create path
        return 1
    except Exception as exc:  # noqa: BLE001 - a user sees one line, never a traceback
        from pyrunc.log import Log
        if Log.debug_enabled:
            import traceback
            traceback.print_exc()
        Log.error(f"internal error: {type(exc).__name__}: {exc}")
        return 1
