"""`os` for the short commands, without os's import cost: `from pyrunc import lightos as os`.

Importing os costs ~4.4 M instructions (1.5-2 ms, a third of runc's whole `state`): it imports
_collections_abc (dozens of ABC classes) to build os.environ. Without -S, site.py would pay it
before us; with -I -S, nothing on the path of state, kill, delete or start needs it. This module
is posix (where os gets its functions: the same objects) plus the os.path functions those
commands use, written over posix.stat. Any other name (os.environ, os.makedirs, os.walk, ...)
is taken from the real os on first use (PEP 562), so code written for os keeps working here.
"""

from posix import *  # noqa: F403 - os re-exports exactly these: same functions, same constants
from posix import _exit  # noqa: F401 - os._exit

import posix as _posix

del environ  # noqa: F821 - posix's is bytes-keyed; os.environ (str) comes through __getattr__

_S_IFMT = 0o170000
_S_IFDIR = 0o040000


def __getattr__(name: str) -> object:
    import os
    return getattr(os, name)


class _PosixpathFallback(type):
    def __getattr__(cls, name: str) -> object:
        import posixpath
        return getattr(posixpath, name)


class path(metaclass=_PosixpathFallback):  # noqa: N801 - stands for the os.path module
    """posixpath's semantics for str arguments; other types and other functions (realpath,
    getsize, ...) go to the real posixpath."""

    @staticmethod
    def join(first: str, *rest: str) -> str:
        if type(first) is not str or any(type(part) is not str for part in rest):
            import posixpath
            return posixpath.join(first, *rest)
        out = first
        for part in rest:
            if part.startswith("/"):
                out = part
            elif not out or out.endswith("/"):
                out += part
            else:
                out += "/" + part
        return out

    @staticmethod
    def exists(name: str) -> bool:
        try:
            _posix.stat(name)
        except (OSError, ValueError):
            return False
        return True

    @staticmethod
    def isdir(name: str) -> bool:
        try:
            return _posix.stat(name).st_mode & _S_IFMT == _S_IFDIR
        except (OSError, ValueError):
            return False

    @staticmethod
    def isabs(name: str) -> bool:
        if type(name) is not str:
            import posixpath
            return posixpath.isabs(name)
        return name.startswith("/")

    @staticmethod
    def dirname(name: str) -> str:
        if type(name) is not str:
            import posixpath
            return posixpath.dirname(name)
        head = name[:name.rfind("/") + 1]
        if head and head != "/" * len(head):
            head = head.rstrip("/")
        return head

    @staticmethod
    def basename(name: str) -> str:
        if type(name) is not str:
            import posixpath
            return posixpath.basename(name)
        return name[name.rfind("/") + 1:]

    @staticmethod
    def normpath(name: str) -> str:
        """Lexical: '.' and empty parts go, '..' eats the part before it (never the root's).
        POSIX keeps exactly two leading slashes as they are; three or more become one."""
        if type(name) is not str:
            import posixpath
            return posixpath.normpath(name)
        if not name:
            return "."
        lead = 0
        if name.startswith("/"):
            lead = 2 if name.startswith("//") and not name.startswith("///") else 1
        parts: list[str] = []
        for part in name.split("/"):
            if part in ("", "."):
                continue
            if part == ".." and parts and parts[-1] != "..":
                parts.pop()
            elif part != ".." or not lead:
                parts.append(part)
        return "/" * lead + "/".join(parts) or "."

    @staticmethod
    def abspath(name: str) -> str:
        if type(name) is not str:
            import posixpath
            return posixpath.abspath(name)
        if not name.startswith("/"):
            name = path.join(_posix.getcwd(), name)
        return path.normpath(name)
