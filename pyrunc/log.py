"""--log / --log-format / --debug: runc's logging contract, without the logging module.

Engines parse what we write: podman json.Unmarshal's the whole --log file after a failed create
(so exactly one error object), go-runc takes the last level=error object of the stream.
"""

from __future__ import annotations

import sys

from pyrunc import lightos as os  # os minus its import cost: see lightos.py
from pyrunc.jsonlite import dumps
from pyrunc.state import now_rfc3339


class Log:
    path: str | None = None
    fmt: str = "text"
    debug_enabled: bool = False

    @classmethod
    def _write(cls, level: str, msg: str) -> None:
        if cls.fmt == "json":
            line = dumps({"level": level, "msg": msg, "time": now_rfc3339()}, spaced=True)
        else:
            line = f'time="{now_rfc3339()}" level={level} msg={dumps(msg)}'
        if cls.path:
            fd = os.open(cls.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        else:
            sys.stderr.write(line + "\n")

    @classmethod
    def error(cls, msg: str) -> None:
        if cls.path:
            cls._write("error", msg)
        # A plain copy for the person (or conmon) reading stderr.
        sys.stderr.write(msg + "\n" if msg.startswith("pyrunc") else f"pyrunc: {msg}\n")
        sys.stderr.flush()

    @classmethod
    def warning(cls, msg: str) -> None:
        # stderr only: a warning line in --log would make podman's single json.Unmarshal of
        # that file fail if the call later fails too.
        sys.stderr.write(f"pyrunc: warning: {msg}\n")

    @classmethod
    def debug(cls, msg: str) -> None:
        if cls.debug_enabled:
            cls._write("debug", msg)
