"""One exception hierarchy; the CLI turns it into runc-style messages and exit codes in one place.

The classes live in exceptions.py and are made on their first lookup here (PEP 562), not when
this module is imported: creating a class costs ~70 K instructions, and the eight of them were
a sixth of a successful `state`'s own work, which raises none. `from pyrunc.errors import X`
works as before (and makes them); the short commands' modules write `errors.X` at the raise
and except sites instead (an except clause's class is looked up only when something was raised).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyrunc.exceptions import (
        ConfigError,
        ContainerExists,
        ContainerNotFound,
        CorruptState,
        InvalidState,
        JSONError,
        NotSupported,
        PyruncError,
    )

    __all__ = ["ConfigError", "ContainerExists", "ContainerNotFound", "CorruptState",
               "InvalidState", "JSONError", "NotSupported", "PyruncError"]


def __getattr__(name: str) -> type:
    if name.startswith("__"):   # importlib's and pickle's probes must not load the classes
        raise AttributeError(name)
    from pyrunc import exceptions
    try:
        value = getattr(exceptions, name)
    except AttributeError:
        raise AttributeError(f"module 'pyrunc.errors' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def runc_wording(strerror: str) -> str:
    """An errno's text as runc prints it ("No such file" -> "no such file"); engines match
    on runc's lower-case substrings (DESIGN.md section 7). Acronyms ("ENOENT") stay as they are."""
    if strerror[:1].isupper() and not strerror[1:2].isupper():
        return strerror[0].lower() + strerror[1:]
    return strerror


def describe(exc: BaseException) -> str:
    """One line for an exception, with no imports (the init may be past pivot_root)."""
    if isinstance(exc, OSError):
        text = runc_wording(exc.strerror or str(exc))
        if exc.filename:
            return f"{exc.filename}: {text}"
        return text
    return str(exc) or type(exc).__name__
