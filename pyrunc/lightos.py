"""`os` for the short commands, without os's import cost: `from pyrunc import lightos as os`.

Importing os costs ~4.4 M instructions (1.5-2 ms, a third of runc's whole `state`): it imports
_collections_abc (dozens of ABC classes) to build os.environ. Without -S, site.py would pay it
before us; with -I -S, nothing on the path of state, kill, delete, start, exec, create or run
needs it (create's init could not import it after pivot_root anyway). A name is
looked up on first use (PEP 562) and kept: posix's (where os gets its functions: the same
objects), or for anything posix lacks (os.environ, os.makedirs, os.walk, ...) the real os's.
`path` holds the os.path functions those commands use, written over posix.stat; its other
names come from the real posixpath.
"""

import posix as _posix

# What every command uses, bound now: a name's first use through __getattr__ costs ~7 K
# instructions (the module's own lookup raises an AttributeError before calling it), a name
# imported here ~1 K. The short commands use most of these; create and run bind more below.
from posix import (  # noqa: F401
    O_CLOEXEC,
    O_DIRECTORY,
    O_NONBLOCK,
    O_RDONLY,
    O_WRONLY,
    W_OK,
    access,
    close,
    fstat,
    geteuid,
    listdir,
    open,
    read,
    rmdir,
    unlink,
    write,
)

_S_IFMT = 0o170000
_S_IFDIR = 0o040000
_FROM_OS = frozenset({"environ"})   # posix.environ is bytes-keyed; os.environ is the str one


def __getattr__(name: str) -> object:
    if name.startswith("__"):        # importlib's probes (__path__, ...) must not import os
        raise AttributeError(name)
    if name in _FROM_OS or not hasattr(_posix, name):
        import os
        value = getattr(os, name)
    else:
        value = getattr(_posix, name)
    globals()[name] = value
    return value


# The names create's parent and its init use besides (~40 __getattr__ calls in one `run`); exec's
# child too (execchild.prepare binds them before its fork).
_CONTAINER_NAMES = (
    "MFD_ALLOW_SEALING", "MFD_CLOEXEC", "O_CREAT", "O_NOFOLLOW", "O_PATH", "O_RDWR", "O_TRUNC",
    "WEXITSTATUS", "WIFEXITED", "X_OK", "chdir", "chown", "execve", "fchdir", "fchmod", "fspath",
    "getpid", "makedev", "memfd_create", "mkdir", "mkfifo", "mknod", "readlink", "rename",
    "set_inheritable", "setgroups", "setresgid", "setresuid", "setsid", "stat", "strerror",
    "symlink", "umask", "uname", "waitpid")


def bind_container_names() -> None:
    """Bind _CONTAINER_NAMES now (create.py, at import): before the init's fork, so that it
    inherits them too, at ~1.5 K instructions a name instead of ~7 K each on first use."""
    names = globals()
    for name in _CONTAINER_NAMES:
        names[name] = getattr(_posix, name)


# posixpath's semantics for str arguments; other types go to the real posixpath.

def _join(first: str, *rest: str) -> str:
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

def _exists(name: str) -> bool:
    try:
        _posix.stat(name)
    except (OSError, ValueError):
        return False
    return True

def _isdir(name: str) -> bool:
    try:
        return _posix.stat(name).st_mode & _S_IFMT == _S_IFDIR
    except (OSError, ValueError):
        return False

def _isabs(name: str) -> bool:
    if type(name) is not str:
        import posixpath
        return posixpath.isabs(name)
    return name.startswith("/")

def _dirname(name: str) -> str:
    if type(name) is not str:
        import posixpath
        return posixpath.dirname(name)
    head = name[:name.rfind("/") + 1]
    if head and head != "/" * len(head):
        head = head.rstrip("/")
    return head

def _basename(name: str) -> str:
    if type(name) is not str:
        import posixpath
        return posixpath.basename(name)
    return name[name.rfind("/") + 1:]

def _normpath(name: str) -> str:
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

def _abspath(name: str) -> str:
    if type(name) is not str:
        import posixpath
        return posixpath.abspath(name)
    if not name.startswith("/"):
        name = _join(_posix.getcwd(), name)
    return _normpath(name)


def _relpath(name: str, start: str | None = None) -> str:
    """posixpath.relpath for str arguments: mounts.guard_proc runs it in the init, which must
    not import os (the parent no longer does before the fork, and after pivot_root it cannot)."""
    if type(name) is not str or (start is not None and type(start) is not str) or not name:
        import posixpath
        return posixpath.relpath(name, start)
    start_parts = [p for p in _abspath(start or ".").split("/") if p]
    name_parts = [p for p in _abspath(name).split("/") if p]
    common = 0
    for a, b in zip(start_parts, name_parts):
        if a != b:
            break
        common += 1
    parts = [".."] * (len(start_parts) - common) + name_parts[common:]
    return "/".join(parts) if parts else "."


def _posixpath(name: str) -> object:
    if name.startswith("__"):
        raise AttributeError(name)
    import posixpath
    return getattr(posixpath, name)


path = type(_posix)("pyrunc.lightos.path", "os.path's functions the short commands use")
path.join, path.exists, path.isdir, path.isabs = _join, _exists, _isdir, _isabs
path.dirname, path.basename, path.normpath, path.abspath = _dirname, _basename, _normpath, _abspath
path.relpath = _relpath
path.__getattr__ = _posixpath
