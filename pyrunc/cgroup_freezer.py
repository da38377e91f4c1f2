"""Whether a container is paused, from its state.json alone: what `state`, `list` and `kill`
need of its cgroups.

Apart from cgroups.py, which imports these (one implementation), because those commands would
otherwise load that whole module (~56 KB of code, five classes: ~1 M instructions, a tenth of
our share of a `state`) for one small read.
"""

from __future__ import annotations

from pyrunc import lightos as os  # os minus its import cost: see lightos.py


def layout_of(keys: set[str]) -> str:
    """"v2" (pure unified), "hybrid" (v1 controllers + a cgroup2 mount) or "v1", from the
    hierarchy keys ("" for cgroup2)."""
    if keys == {""}:
        return "v2"
    return "hybrid" if "" in keys else "v1"


def state_layout(data: dict) -> str:
    """The layout a state.json's "cgroup" object was made for (older files lack "layout")."""
    return data.get("layout") or layout_of(set(data.get("paths", {})) or {""})


def freezer_of(kind: str, paths: dict[str, str]) -> tuple[str, str] | None:
    """(key, dir) of the hierarchy that freezes, None when there is none: cgroup2's
    cgroup.freeze on a pure v2 host, else the v1 freezer hierarchy."""
    if kind == "v2":
        if "" in paths and os.path.exists(os.path.join(paths[""], "cgroup.freeze")):
            return "", paths[""]
        return None
    for key, path in paths.items():
        if "freezer" in key.split(","):
            return key, path
    return None


def read_small(path: str) -> bytes:
    """A cgroup file's whole content in one read (these are a line), without io's layers."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def frozen(key: str, path: str) -> bool:
    try:
        if key == "":
            return read_small(os.path.join(path, "cgroup.freeze")).strip() == b"1"
        return read_small(os.path.join(path, "freezer.state")).strip() != b"THAWED"
    except FileNotFoundError:
        return False


def paused(data: dict) -> bool:
    """CgroupManager.from_state(data).is_paused(), without cgroups.py."""
    where = freezer_of(state_layout(data), dict(data.get("paths", {})))
    return where is not None and frozen(*where)
