"""Small checks several test files share."""

from __future__ import annotations

from pathlib import Path


def one_line(text: str) -> str:
    """The only line of text (an error message pyrunc must keep to one line)."""
    lines = text.splitlines()
    assert len(lines) == 1, f"expected exactly one line, got {text!r}"
    assert lines[0].strip(), "the one line is empty"
    return lines[0]


def alive(pid: int) -> bool:
    """Whether pid runs: a zombie has exited, only its parent has not reaped it yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def create_refused(rt, bundle) -> bytes:
    """`create` of the bundle fails with exit 1 and leaves no state directory: its stderr."""
    cid = rt.new_id()
    res = rt("create", "--bundle", str(bundle.path), cid)
    assert res.returncode == 1
    assert not (rt.root / cid).exists()
    return res.stderr
