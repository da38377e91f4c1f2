"""pyrunc's exception classes, made when first needed: import them from errors.py, which
loads this module on the first lookup of one of them (see errors.py for why).

Only the three that create's and run's modules import at their top are made with the module;
the others, which only a failure raises, on their first lookup (PEP 562 again): each class is
~70 K instructions, ~0.35 M before the init's fork for the five."""

from __future__ import annotations


class PyruncError(Exception):
    """A failure the user must see as one line; the CLI exits 1 with it."""


class ConfigError(PyruncError):
    """config.json (or a process/resources file) is malformed or asks for something impossible."""


class NotSupported(PyruncError):
    """A flag or field we know of but do not implement yet: said loudly, never ignored."""


def _make_ContainerNotFound() -> type:
    class ContainerNotFound(PyruncError):
        """Engines match the text "container does not exist" (go-runc, podman), so keep it."""

        def __init__(self, container_id: str) -> None:
            super().__init__("container does not exist")
            self.container_id = container_id
    return ContainerNotFound


def _make_ContainerExists() -> type:
    class ContainerExists(PyruncError):
        def __init__(self, container_id: str) -> None:
            super().__init__(f"container with id exists: {container_id}")
    return ContainerExists


def _make_InvalidState() -> type:
    class InvalidState(PyruncError):
        """An operation not allowed in the container's current status (e.g. start twice)."""
    return InvalidState


def _make_CorruptState() -> type:
    class CorruptState(PyruncError):
        """state.json exists but cannot be what we wrote: `delete --force` still cleans up."""

        def __init__(self, path: str) -> None:
            super().__init__(f"state file {path} is corrupt (`delete --force` removes the "
                             "container)")
    return CorruptState


def _make_JSONError() -> type:
    class JSONError(ValueError):
        """Malformed JSON (jsonlite.loads), with the character offset where reading stopped."""
    return JSONError


_LATER = {"ContainerNotFound": _make_ContainerNotFound, "ContainerExists": _make_ContainerExists,
          "InvalidState": _make_InvalidState, "CorruptState": _make_CorruptState,
          "JSONError": _make_JSONError}


def __getattr__(name: str) -> type[Exception]:   # all mypy needs to know of the five
    make = _LATER.get(name)
    if make is None:
        raise AttributeError(f"module 'pyrunc.exceptions' has no attribute {name!r}")
    made = make()
    made.__qualname__ = name
    globals()[name] = made
    return made
