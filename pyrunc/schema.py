"""Validation of config.json and state JSON against our own schema files in spec/.

Why not jsonschema: importing it costs ~70 ms, more than three whole `runc run`s, and every `create`
validates. This evaluator knows exactly the keywords spec/*.json use and walks the schema as parsed:
one process validates one document, so any up-front compilation (we measured one) costs more than it
saves. A keyword without a handler raises as soon as a document reaches its node, and the tests walk every
node, so no part of a schema is ever skipped in silence. jsonschema stays the oracle in tests/test_schema.py.

One deliberate deviation from JSON Schema: "integer" means a number written without fraction or exponent
(a Python int). JSON Schema accepts 1.0, but Go's decoder (runc) rejects it and our code would hand a
float to the kernel.
"""

from __future__ import annotations

import sys

from pyrunc import jsonlite
from pyrunc import lightos as os  # os minus its import cost: see lightos.py

from .errors import ConfigError

TYPE_CHECKING = False  # importing typing costs ~4 ms, twice this module's whole budget
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Node = dict[str, Any]  # a schema object
    # [message, key_n, ..., key_1]: keys are appended while unwinding, so success allocates nothing.
    Failure = list[Any]
    Handler = Callable[["_Evaluator", Any, Node, Any], Failure | None]

_PY_TYPES = {"object": (dict,), "array": (list,), "string": (str,), "integer": (int,),
             "number": (int, float), "boolean": (bool,), "null": (type(None),)}
_KIND = {dict: "object", list: "array", str: "string", int: "integer", float: "number",
         bool: "boolean", type(None): "null"}
# Annotations, and keywords read by another keyword's handler.
_PASSIVE = frozenset({"$schema", "$id", "$comment", "$defs", "title", "description", "default",
                      "examples", "deprecated", "readOnly", "writeOnly", "then", "else"})
_NUMBERS = (int, float)
_MAX_SHOWN = 60
_CONTROL: dict[int, str] = {}  # C0 controls -> \xNN: made by _describe (~76 K instructions)
_SPEC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "spec")


class SchemaError(ConfigError):
    """A document does not match its schema; str() is one line naming the JSON pointer."""


def _cut(text: str, limit: int = _MAX_SHOWN) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _shown(value: Any) -> str:
    """Quote a value for a message, cut so one huge string cannot flood the error line."""
    try:
        return _cut(jsonlite.dumps(value, spaced=True))
    except (TypeError, ValueError):
        return _cut(repr(value))
    except RecursionError:
        return f"(deeply nested {_kind(value)})"


def _kind(x: Any) -> str:
    return _KIND.get(type(x)) or type(x).__name__


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _same(a: Any, b: Any) -> bool:
    """JSON equality: Python's True == 1 and [1] == [True] must not count as equal."""
    ta, tb = type(a), type(b)
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if ta in _NUMBERS and tb in _NUMBERS:
        return bool(a == b)
    if ta is not tb:
        return False
    if ta is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if ta is dict:
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _describe(failure: Failure) -> str:
    if not _CONTROL:
        _CONTROL.update({c: f"\\x{c:02x}" for c in range(32)})
    pointer = "".join("/" + _cut(str(k).replace("~", "~0").replace("/", "~1")) for k in reversed(failure[1:]))
    message: str = failure[0]
    return ((pointer + ": " if pointer else "") + message).translate(_CONTROL)


# Handlers: (evaluator, the keyword's value, its schema node, instance) -> Failure or None.
# Each ignores instance types its keyword does not apply to, as JSON Schema requires.

def _type(ev: _Evaluator, names: Any, node: Node, x: Any) -> Failure | None:
    if type(names) is str:
        if type(x) in _PY_TYPES[names]:
            return None
    elif any(type(x) in _PY_TYPES[n] for n in names):
        return None
    return [f"expected {names if type(names) is str else ' or '.join(names)}, got {_kind(x)}"]


def _enum(ev: _Evaluator, values: list[Any], node: Node, x: Any) -> Failure | None:
    if (x in values) if type(x) is str else any(_same(x, v) for v in values):
        return None
    listed = _cut(", ".join(v if type(v) is str else _shown(v) for v in values), 2 * _MAX_SHOWN)
    return [f"{_shown(x)} is not one of {listed}"]


def _const(ev: _Evaluator, value: Any, node: Node, x: Any) -> Failure | None:
    return None if _same(x, value) else [f"must be {_shown(value)}, got {_shown(x)}"]


def _all_of(ev: _Evaluator, subs: list[Any], node: Node, x: Any) -> Failure | None:
    for sub in subs:
        failure = ev.check(sub, x)
        if failure is not None:
            return failure
    return None


def _any_of(ev: _Evaluator, subs: list[Any], node: Node, x: Any, exactly_one: bool = False) -> Failure | None:
    failures, passed = [], 0
    for sub in subs:
        failure = ev.check(sub, x)
        if failure is None:
            if not exactly_one:
                return None
            passed += 1
        else:
            failures.append(failure)
    if passed == 1:
        return None
    if passed:
        return [f"matches {passed} of the oneOf alternatives, expected exactly one"]
    # The branch that got deepest into the value is most likely the one the author meant.
    best = max(failures, key=len)
    return [" or ".join(dict.fromkeys(f[0] for f in failures))] if len(best) == 1 else best


def _required(ev: _Evaluator, names: list[Any], node: Node, x: Any) -> Failure | None:
    if type(x) is dict:
        for name in names:
            if name not in x:
                return [f"required property {_shown(name)} is missing"]
    return None


def _dependent_required(ev: _Evaluator, deps: dict[str, list[str]], node: Node, x: Any) -> Failure | None:
    if type(x) is dict:
        for name, needed in deps.items():
            if name in x:
                for other in needed:
                    if other not in x:
                        return [f"property {_shown(name)} needs {_shown(other)}, which is missing"]
    return None


def _properties(ev: _Evaluator, named: Node, node: Node, x: Any) -> Failure | None:
    """properties, patternProperties and additionalProperties interact, so one pass does all three."""
    if type(x) is not dict:
        return None
    patterns = node.get("patternProperties", ())
    extra = node.get("additionalProperties", True)
    for key, value in x.items():
        sub = named.get(key)
        failure = None if sub is None else ev.check(sub, value)
        covered = sub is not None
        for pattern in patterns:
            if failure is None and ev.regex(pattern).search(key):
                covered, failure = True, ev.check(patterns[pattern], value)
        if failure is None and not covered and extra is not True:
            if extra is False:
                return [f"unexpected property {_shown(key)}"]
            failure = ev.check(extra, value)
        if failure is not None:
            failure.append(key)
            return failure
    return None


def _property_names(ev: _Evaluator, sub: Any, node: Node, x: Any) -> Failure | None:
    if type(x) is dict:
        for key in x:
            failure = ev.check(sub, key)
            if failure is not None:
                return [f"property name {_shown(key)}: {failure[0]}"]
    return None


def _items(ev: _Evaluator, each: Any, node: Node, x: Any) -> Failure | None:
    if type(x) is not list:
        return None
    prefix = node.get("prefixItems", ())
    for i, sub in enumerate(prefix[:len(x)]):
        failure = ev.check(sub, x[i])
        if failure is not None:
            failure.append(i)
            return failure
    if type(each) is dict and len(each) == 1 and type(each.get("type")) is str:
        allowed = _PY_TYPES[each["type"]]  # arrays of plain strings: 400 seccomp names, env, args
        for i in range(len(prefix), len(x)):
            if type(x[i]) not in allowed:
                return [f"expected {each['type']}, got {_kind(x[i])}", i]
        return None
    for i in range(len(prefix), len(x)):
        failure = ev.check(each, x[i])
        if failure is not None:
            failure.append(i)
            return failure
    return None


def _unique_items(ev: _Evaluator, flag: bool, node: Node, x: Any) -> Failure | None:
    if flag and type(x) is list:
        for i in range(1, len(x)):
            for j in range(i):
                if _same(x[i], x[j]):
                    return [f"items {j} and {i} are equal"]
    return None


def _pattern(ev: _Evaluator, pattern: str, node: Node, x: Any) -> Failure | None:
    if type(x) is str and ev.regex(pattern).search(x) is None:
        return [f"{_shown(x)} does not match {_cut(pattern)}"]
    return None


def _bound(kinds: tuple[type, ...], size: bool, low: bool, strict: bool, words: str) -> Handler:
    """minimum, maximum, exclusive*, min/maxLength and min/maxItems differ only in what they compare."""
    def check(ev: _Evaluator, n: Any, node: Node, x: Any) -> Failure | None:
        if type(x) in kinds:
            v = len(x) if size else x
            if (v < n or strict and v == n) if low else (v > n or strict and v == n):
                return [words.format(x=_shown(x), n=n, v=v, s=_s(n))]
        return None
    return check


_HANDLERS: dict[str, Handler] = {
    "type": _type, "enum": _enum, "const": _const,
    "$ref": lambda ev, target, node, x: ev.check(ev.resolve(target), x),
    "allOf": _all_of, "anyOf": _any_of,
    "oneOf": lambda ev, subs, node, x: _any_of(ev, subs, node, x, exactly_one=True),
    "not": lambda ev, sub, node, x: None if ev.check(sub, x) else ["matches a schema it must not match"],
    "if": lambda ev, sub, node, x: ev.check(node.get("then" if ev.check(sub, x) is None else "else", True), x),
    "required": _required, "dependentRequired": _dependent_required, "propertyNames": _property_names,
    "properties": _properties,
    "patternProperties": lambda ev, v, node, x: None if "properties" in node else _properties(ev, {}, node, x),
    "additionalProperties": lambda ev, v, node, x: (
        None if "properties" in node or "patternProperties" in node else _properties(ev, {}, node, x)),
    "items": _items,
    "prefixItems": lambda ev, v, node, x: None if "items" in node else _items(ev, True, node, x),
    "uniqueItems": _unique_items, "pattern": _pattern,
    "minimum": _bound(_NUMBERS, False, True, False, "{x} is less than the minimum {n}"),
    "maximum": _bound(_NUMBERS, False, False, False, "{x} is greater than the maximum {n}"),
    "exclusiveMinimum": _bound(_NUMBERS, False, True, True, "{x} is not greater than {n}"),
    "exclusiveMaximum": _bound(_NUMBERS, False, False, True, "{x} is not less than {n}"),
    "minLength": _bound((str,), True, True, False, "{x} is shorter than {n} character{s}"),
    "maxLength": _bound((str,), True, False, False, "{x} is longer than {n} character{s}"),
    "minItems": _bound((list,), True, True, False, "expected at least {n} item{s}, got {v}"),
    "maxItems": _bound((list,), True, False, False, "expected at most {n} item{s}, got {v}"),
}
# Where subschemas sit, for the walk that checks a whole schema's keywords up front.
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMAS = ("not", "if", "then", "else", "additionalProperties", "propertyNames", "items")


class _CharClass:
    """A pattern of the form ^[abc]*$, matched with a set instead of the re module."""

    def __init__(self, chars: str) -> None:
        self.chars = frozenset(chars)

    def search(self, text: str) -> _CharClass | None:
        return self if set(text) <= self.chars else None


class _Evaluator:
    """One schema document: where its $refs point, and its regexes, compiled on first use."""

    def __init__(self, root: Any, name: str) -> None:
        self.root, self.name = root, name
        self.defs = root.get("$defs", {}) if type(root) is dict else {}
        self.regexes: dict[str, Any] = {}
        self.refs: dict[str, Any] = {}   # $ref -> its node, once resolved

    def regex(self, pattern: str) -> Any:
        # Compiled on first use: a complex pattern takes ~0.5 ms to compile, a third of our budget,
        # and importing re at all costs ~8 ms, so the simple `^[chars]*$` shape skips it.
        rx = self.regexes.get(pattern)
        if rx is None:
            inner = pattern[2:-3]
            if (pattern.startswith("^[") and pattern.endswith("]*$") and inner
                    and not any(c in inner for c in "\\^-[]")):
                rx = _CharClass(inner)
            else:
                import re
                rx = re.compile(pattern)
            self.regexes[pattern] = rx
        return rx

    def resolve(self, target: str) -> Any:
        sub = self.defs.get(target[8:]) if target[:8] == "#/$defs/" else self.root if target == "#" else None
        if sub is None:
            raise NotImplementedError(f"{self.name}: $ref {target!r}: only #/$defs/<name> is supported")
        self.refs[target] = sub
        return sub

    def check(self, node: Any, x: Any) -> Failure | None:
        if type(node) is not dict:
            if node is True or node is False:
                return None if node else ["no value is allowed here"]
            raise NotImplementedError(f"{self.name}: a schema must be an object or a boolean, not {_shown(node)}")
        for key, value in node.items():
            if key == "$ref":   # the commonest keywords (~130 nodes each), without a handler call
                failure = self.check(self.refs.get(value) or self.resolve(value), x)
                if failure is not None:
                    return failure
                continue
            if key == "type" and type(value) is str:
                if type(x) in _PY_TYPES[value]:
                    continue
                return [f"expected {value}, got {_kind(x)}"]
            handler = _HANDLERS.get(key)
            if handler is None:
                if key in _PASSIVE:
                    continue
                raise NotImplementedError(f"{self.name}: keyword {key!r} is not implemented")
            failure = handler(self, value, node, x)
            if failure is not None:
                return failure
        return None

    def check_keywords(self, node: Any) -> None:
        """Refuse, up front, any keyword in any node that check() would refuse when reaching it."""
        if type(node) is bool:
            return
        if type(node) is not dict:
            raise NotImplementedError(f"{self.name}: a schema must be an object or a boolean, not {_shown(node)}")
        unknown = node.keys() - _HANDLERS.keys() - _PASSIVE
        if unknown:
            raise NotImplementedError(f"{self.name}: keyword {min(unknown)!r} is not implemented")
        if "$ref" in node:
            self.resolve(node["$ref"])
        types = node.get("type", ())
        for type_name in [types] if type(types) is str else types:
            if type_name not in _PY_TYPES:
                raise NotImplementedError(f"{self.name}: type {type_name!r} is not a JSON type")
        for key in _SUBSCHEMA_MAPS:
            for sub in node.get(key, {}).values():
                self.check_keywords(sub)
        for key in _SUBSCHEMA_LISTS:
            for sub in node.get(key, ()):
                self.check_keywords(sub)
        for key in _SUBSCHEMAS:
            if key in node:
                self.check_keywords(node[key])


_schemas: dict[str, Node] = {}
_evaluators: dict[str, _Evaluator] = {}


def load_schema(name: str) -> Node:
    """The parsed spec/<name>-schema.json, read once per process: from the installed bundle,
    where make install stored it parsed (unless the file changed since), else from the file."""
    schema = _schemas.get(name)
    if schema is None:
        if not name.replace("-", "").isalnum():
            raise ValueError(f"bad schema name {name!r}")
        path = os.path.join(_SPEC_DIR, f"{name}-schema.json")
        schema = _prebuilt(f"{name}-schema.json", path)
        if schema is None:
            with open(path, "rb") as f:
                schema = jsonlite.loads(f.read())
        _schemas[name] = schema
    return schema


def _prebuilt(filename: str, path: str) -> Node | None:
    """The launcher's bundle finder (_boot.py) holds the spec files parsed at install."""
    for finder in sys.meta_path:
        prebuilt = getattr(finder, "prebuilt", None)
        if prebuilt is not None:
            return prebuilt(filename, path)  # type: ignore[no-any-return]
    return None


def compile_schema(schema: Any, name: str = "schema") -> Callable[[Any], str | None]:
    """Check a whole schema's keywords now, then return its first-error function (tests, other schemas)."""
    ev = _Evaluator(schema, name)
    ev.check_keywords(schema)
    return lambda instance: _first(ev, instance)


def _first(ev: _Evaluator, instance: Any) -> str | None:
    failure = ev.check(ev.root, instance)
    return None if failure is None else _describe(failure)


def first_error(instance: Any, schema_name: str = "config") -> str | None:
    """The first problem as "/json/pointer: message", or None if the instance is valid."""
    ev = _evaluators.get(schema_name)
    if ev is None:
        ev = _evaluators[schema_name] = _Evaluator(load_schema(schema_name), f"spec/{schema_name}-schema.json")
    return _first(ev, instance)


def validate(instance: Any, schema_name: str = "config", what: str = "config.json") -> None:
    """Raise SchemaError naming the first problem; `what` names the document for the user."""
    problem = first_error(instance, schema_name)
    if problem is not None:
        raise SchemaError(f"{what}: {problem}")
