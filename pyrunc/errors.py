"""One exception hierarchy; the CLI turns it into runc-style messages and exit codes in one place."""

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


def runc_wording(strerror: str) -> str:
    """An errno's text as runc prints it ("No such file" -> "no such file"); engines match
    on runc's lower-case substrings (DESIGN.md section 7). Acronyms ("ENOENT") stay as they are."""
    if strerror[:1].isupper() and not strerror[1:2].isupper():
        return strerror[0].lower() + strerror[1:]
    return strerror
