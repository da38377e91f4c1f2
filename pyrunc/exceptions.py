"""pyrunc's exception classes, made when first needed: import them from errors.py, which
loads this module on the first lookup of one of them (see errors.py for why)."""

from __future__ import annotations


class PyruncError(Exception):
    """A failure the user must see as one line; the CLI exits 1 with it."""


class ConfigError(PyruncError):
    """config.json (or a process/resources file) is malformed or asks for something impossible."""


class ContainerNotFound(PyruncError):
    """Engines match the text "container does not exist" (go-runc, podman), so keep it."""

    def __init__(self, container_id: str) -> None:
        super().__init__("container does not exist")
        self.container_id = container_id


class ContainerExists(PyruncError):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container with id exists: {container_id}")


class InvalidState(PyruncError):
    """An operation not allowed in the container's current status (e.g. start twice)."""


class NotSupported(PyruncError):
    """A flag or field we know of but do not implement yet: said loudly, never ignored."""


class CorruptState(PyruncError):
    """state.json exists but cannot be what we wrote: `delete --force` still cleans up."""

    def __init__(self, path: str) -> None:
        super().__init__(f"state file {path} is corrupt (`delete --force` removes the container)")


class JSONError(ValueError):
    """Malformed JSON (jsonlite.loads), with the character offset where reading stopped."""
