"""JSON through the C accelerator alone: the json package imports re and enum (~10 ms).

Every pyrunc command reads or writes JSON, and for `state`, `kill` and `delete` that import
alone would cost more than runc's whole command. _json's scanner and encoder are what json
itself uses underneath; only the glue is here. Output matches json.dumps (ensure_ascii).
"""

from __future__ import annotations

import _json

from pyrunc import errors  # JSONError (a ValueError), made on first use: see errors.py

TYPE_CHECKING = False  # typing costs milliseconds to import
if TYPE_CHECKING:
    from typing import Any

_WS = " \t\n\r"


def _constant(name: str) -> float:
    return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


# The scanner reads these settings as attributes of any object: a module object, since creating
# a class costs ~0.1 M instructions (as much as this module's other work) on every command.
_context: Any = type(_json)("pyrunc.jsonlite.context")
_context.strict = True
_context.object_hook = None
_context.object_pairs_hook = None
_context.parse_float = float
_context.parse_int = int
_context.parse_constant = _constant
_context.memo = {}  # the scanner's, cleared after every loads()

# typeshed wants json's own scanner and a default() callable; the C code reads only the
# attributes above, and with no default() it raises TypeError as json.dumps does.
_scan = _json.make_scanner(_context)  # type: ignore[arg-type]
_esc = _json.encode_basestring_ascii
_compact = _json.make_encoder(None, None, _esc, None, ":", ",", False, False,  # type: ignore[arg-type]
                              True)
_spaced = _json.make_encoder(None, None, _esc, None, ": ", ", ", False, False,  # type: ignore[arg-type]
                             True)


def loads(data: bytes | str) -> Any:
    text = data.decode() if isinstance(data, bytes) else data
    start = 0
    while start < len(text) and text[start] in _WS:
        start += 1
    try:
        obj, end = _scan(text, start)
    except (StopIteration, ValueError, SystemError):
        # The C scanner reports most syntax errors by importing json.decoder, which it only
        # looks up among loaded modules (SystemError otherwise). On this error path the
        # import is free to pay: let json itself phrase the problem.
        raise errors.JSONError(_explain(text)) from None
    except RecursionError:
        raise errors.JSONError("nested too deeply") from None
    finally:
        _context.memo.clear()
    rest = text[end:].strip(_WS)
    if rest:
        raise errors.JSONError(f"extra data at line {text.count(chr(10), 0, end) + 1}")
    return obj


def _explain(text: str) -> str:
    import json
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return "malformed JSON"


def dumps(obj: object, spaced: bool = False) -> str:
    """Like json.dumps(obj) (spaced=True) or json.dumps(obj, separators=(",", ":"))."""
    return "".join((_spaced if spaced else _compact)(obj, 0))


def dumps_indent(obj: object, indent: str = "  ", level: int = 0) -> str:
    """json.dumps(obj, indent=...) for the state and list output people read."""
    pad = indent * (level + 1)
    if isinstance(obj, dict) and obj:
        items = [f"{pad}{_esc(str(k))}: {dumps_indent(v, indent, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent * level + "}"
    if isinstance(obj, list) and obj:
        items = [pad + dumps_indent(v, indent, level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + indent * level + "]"
    return dumps(obj, spaced=True)


def clone(obj: Any) -> Any:
    """A deep copy of parsed JSON (dicts, lists and immutable scalars): copy.deepcopy without
    its import (copy, weakref, copyreg: ~3 M instructions, 1 ms on every exec)."""
    if isinstance(obj, dict):
        return {k: clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clone(v) for v in obj]
    return obj
