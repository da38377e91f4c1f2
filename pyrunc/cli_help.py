"""--help and --version texts: apart from cli.py, which every command loads, for the others' sake."""

from __future__ import annotations

from pyrunc import OCI_VERSION, __version__
from pyrunc.cli import COMMANDS, GLOBAL_FLAGS


def usage(command: str | None = None) -> str:
    if command:
        flags, pos, desc = COMMANDS[command]
        names = sorted({k for k in flags if k.startswith("--")})
        lines = [f"NAME:\n   pyrunc {command} - {desc}", f"\nUSAGE:\n   pyrunc {command} [command options] {pos}".rstrip()]
        if names:
            lines.append("\nOPTIONS:")
            for n in names:
                lines.append(f"   {n}" + ("" if flags[n][1] == "bool" else " value"))
        return "\n".join(lines) + "\n"
    lines = ["NAME:\n   pyrunc - an OCI runtime-spec container runtime with runc's command line",
             "\nUSAGE:\n   pyrunc [global options] command [command options] [arguments...]",
             "\nCOMMANDS:"]
    lines += [f"   {name:<11}{desc}" for name, (_, _, desc) in COMMANDS.items()]
    lines.append("\nGLOBAL OPTIONS:")
    lines += [f"   {n}" for n in GLOBAL_FLAGS if n.startswith("--")]
    return "\n".join(lines) + "\n"


def version_text() -> str:
    try:
        from pyrunc._build import COMMIT  # written by `make install`
    except ImportError:
        COMMIT = "unknown"
    return f"pyrunc version {__version__}\ncommit: {COMMIT}\nspec: {OCI_VERSION}\n"
