"""Build pyrunc.bundle at install time: `python3 -I -S pyrunc/_bundle.py DIR LIBDIR` (make install
writes the tree in DIR, which it then renames to LIBDIR: the paths the code objects carry).

Layout: the interpreter's magic number; the length of the head (4 bytes, little-endian); the
head, a marshal'ed (orders, tables, data); then the blobs, each unmarshal'ed only if used (see
_boot.py for why); offsets are from the end of the head. orders maps each command to the
(offset, length) of its pack: one blob holding (the modules to preload, in dependency order;
the interpreter's built-in modules (sys.builtin_module_names: gc, fcntl, _socket, ... on
Debian's static build) they import at top level, which _boot.py creates first; their code, a
tuple; the parsed spec files the command reads in any case (SPECS), by file name). tables is
the (offset, length) of the index, which _boot.py loads only when a lazy import asks: it maps
each pyrunc module to the (offset, length) of its marshal'ed code. data maps each spec/*.json
file to (offset, length, the file's size, its mtime in ns) of its parsed form, marshal'ed
(schema.load_schema: a marshal load is half the cost of parsing the JSON, and the size and
mtime tell a file edited since).
It must be built by the interpreter the launcher runs: _boot.py ignores a bundle whose magic
number is not its own, and imports from disk instead.

The preload lists start from ENTRIES (the modules commands.dispatch imports for each command)
and follow every module-level `import`/`from` of a pyrunc module, recursively.
"""

from __future__ import annotations

import ast
import json
import marshal
import os
import sys
from importlib.util import MAGIC_NUMBER, cache_from_source
from types import CodeType

_CORE = ["pyrunc.cli", "pyrunc.commands"]
# Not in create's and run's lists: what only the parent needs after the init's fork (cgroup_resources
# for the limits, lifecycle for run): the finder serves those from the bundle then, while the init
# works on the other core (see run._after_fork), instead of before that fork. (supervise is in
# run's, through run.py's own import: run holds signals back from its first line.)
# Nor seccomp, hooks or terminal: only a config with a filter, hooks or a terminal needs them,
# and create imports them then, before the fork (init._module).
_CREATE = [*_CORE, "pyrunc.create", "pyrunc.config", "pyrunc.schema", "pyrunc.capabilities",
           "pyrunc.lsm", "pyrunc.log", "pyrunc.exceptions", "pyrunc.create_cmd"]
# command -> the modules it imports in any case (its lazy imports included); "" = anything else.
ENTRIES: dict[str, list[str]] = {
    "": _CORE,
    "create": [*_CREATE, "pyrunc.cgroups"],
    # No log.py for run: engines create (with --log), a user's run logs only an error.
    "run": [*(m for m in _CREATE if m != "pyrunc.log"), "pyrunc.cgroups", "pyrunc.run"],
    # No exceptions.py: errors.py makes its classes on first use, and a successful exec raises
    # none (its modules name them errors.X at the raise sites). cgroup_freezer: the paused check
    # (state.status), for which the finder would open the bundle again.
    "exec": [*_CORE, "pyrunc.execute", "pyrunc.supervise", "pyrunc.log", "pyrunc.cgroup_freezer"],
    **{cmd: [*_CORE, "pyrunc.lifecycle", "pyrunc.log", "pyrunc.cgroups", "pyrunc.exceptions"]
       for cmd in ("pause", "resume", "logs")},
    "ps": [*_CORE, "pyrunc.lifecycle", "pyrunc.log", "pyrunc.cgroups", "pyrunc.exceptions",
           "pyrunc.listing"],
    # The paused check only (cgroup_freezer.py); a stopped container's delete needs nothing but
    # its own module: cgroups.py, when needed (kill --all, a process left), comes from the finder.
    # No log.py: cli.main imports it for --log, --log-format, --debug or an error only.
    "state": [*_CORE, "pyrunc.lifecycle", "pyrunc.cgroup_freezer"],
    "kill": [*_CORE, "pyrunc.lifecycle"],   # no status() without --all: no paused check
    "list": [*_CORE, "pyrunc.lifecycle", "pyrunc.cgroup_freezer", "pyrunc.listing"],
    "delete": [*_CORE, "pyrunc.lifecycle_delete"],
    "start": [*_CORE, "pyrunc.lifecycle_start"],   # no cgroups (lifecycle.cgroups_of)
}
_LAZY_DEPENDENCY = "pyrunc.exceptions"   # see preload_order
# command -> built-in modules that functions import (not a module's top level) in any case:
# fcntl for the container's lock (state.Container.lock), which state and list never take.
LAZY_BUILTINS: dict[str, tuple[str, ...]] = {
    cmd: ("fcntl",) for cmd in ENTRIES if cmd not in ("", "state", "list")}
# command -> the spec files it parses in any case (config.load_bundle validates config.json):
# carried in its pack, they cost no second open and read of the bundle before the init's fork.
SPECS: dict[str, tuple[str, ...]] = {"create": ("config-schema.json",),
                                     "run": ("config-schema.json",)}
_FUTURE = "from __future__ import annotations"
_ANNOTATIONS_FLAG = 0x1000000  # __future__.annotations.compiler_flag (CO_FUTURE_ANNOTATIONS)


def module_name(filename: str) -> str:
    stem = filename[:-3]
    return "pyrunc" if stem == "__init__" else f"pyrunc.{stem}"


def compile_module(path: str, filename: str) -> CodeType:
    """The module's code; `from __future__ import annotations` becomes a compiler flag (the
    statement would import __future__ from disk at run time) and a blank line (same numbers);
    without docstrings (strip_docstrings)."""
    with open(path, encoding="utf-8") as f:
        source = f.read()
    flags = 0
    lines = source.split("\n")
    for i, line in enumerate(lines):
        if line.strip() == _FUTURE:
            lines[i] = ""
            flags = _ANNOTATIONS_FLAG
    tree = ast.parse("\n".join(lines), filename)
    strip_docstrings(tree)
    strip_annotations(tree)
    return compile(tree, filename, "exec", flags=flags, dont_inherit=True)


def strip_docstrings(tree: ast.Module) -> None:
    """Drop the docstrings of the module, its classes and functions, as -OO would (but keep
    asserts): for `state` they are ~10% of the code unmarshal'ed on every call (~9 KB, ~75 K
    instructions, 6 page faults; create's ~45 KB), and nothing reads __doc__ (help() would show
    none). Line numbers, and so tracebacks, are unchanged: the nodes keep their positions."""
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            if len(body) > 1:
                del body[0]
            else:
                body[0] = ast.copy_location(ast.Pass(), body[0])


def strip_annotations(tree: ast.Module) -> None:
    """Drop the type hints of functions, and those of module and class variables (`x: T = v`
    becomes `x = v`; a bare `x: T` nothing; an `if TYPE_CHECKING:` block nothing), as the type
    checker alone reads them: each annotated function carries a tuple of strings through
    marshal and MAKE_FUNCTION, and a class or module with annotated names builds an
    __annotations__ dict. For `run`'s pack
    that is ~17 KB and ~0.5 M instructions of unmarshal; nothing here reads __annotations__
    (tests/test_startup.py checks the source for that)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            args = node.args
            for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
                if arg is not None:
                    arg.annotation = None
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list):
                body[:] = [_unannotated(stmt) for stmt in body]


def _unannotated(stmt: ast.stmt) -> ast.stmt:
    if isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Name) \
            and stmt.test.id == "TYPE_CHECKING" and not stmt.orelse:
        return ast.copy_location(ast.Pass(), stmt)   # never runs: the type checker's alone
    if not isinstance(stmt, ast.AnnAssign):
        return stmt
    if stmt.value is None:      # a declaration only: at module or class level it binds nothing
        return ast.copy_location(ast.Pass(), stmt)
    return ast.copy_location(ast.Assign(targets=[stmt.target], value=stmt.value), stmt)


def top_level_imports(path: str, others: list[str] | None = None) -> list[str]:
    """pyrunc modules imported by the module's body (not inside functions or classes); the
    other modules it imports there are appended to others."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found: list[str] = []
    rest: list[str] = [] if others is None else others

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.extend(a.name for a in node.names if a.name.startswith("pyrunc."))
                rest.extend(a.name for a in node.names if not a.name.startswith("pyrunc"))
            elif isinstance(node, ast.ImportFrom):
                base = "pyrunc" if node.level == 1 and not node.module else (
                    f"pyrunc.{node.module}" if node.level == 1 else node.module or "")
                if base == "pyrunc":
                    found.extend(f"pyrunc.{a.name}" for a in node.names)
                elif base.startswith("pyrunc."):
                    found.append(base)
                elif base not in ("", "__future__"):
                    rest.append(base)
            elif isinstance(node, ast.If) and not (isinstance(node.test, ast.Name)
                                                   and node.test.id == "TYPE_CHECKING"):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
    visit(tree.body)
    return found


def preload_order(entries: list[str], deps: dict[str, list[str]]) -> list[str]:
    """Depth-first, dependencies before their importers; the package itself first, then
    exceptions.py when listed: errors.py imports it on its first class lookup, which the
    first `from pyrunc.errors import X` among the preloaded modules does, and preloaded after
    them it would come through the finder (the index unmarshal'ed, importlib's whole path)."""
    order: list[str] = []
    seen: set[str] = set()

    def walk(name: str) -> None:
        if name in seen or name not in deps:
            return
        seen.add(name)
        for dep in deps[name]:
            walk(dep)
        order.append(name)
    walk("pyrunc")
    for name in sorted(entries, key=lambda n: n != _LAZY_DEPENDENCY):
        walk(name)
    return order


def build(libdir: str, final_libdir: str) -> str:
    pkg_dir = os.path.join(libdir, "pyrunc")
    codes: dict[str, CodeType] = {}
    deps: dict[str, list[str]] = {}
    builtins: dict[str, list[str]] = {}   # module -> the interpreter's built-in modules it imports
    for filename in sorted(os.listdir(pkg_dir)):
        if not filename.endswith(".py") or filename in ("_bundle.py", "_interp.py", "_encodings.py", "__main__.py"):
            continue
        path = os.path.join(pkg_dir, filename)
        name = module_name(filename)
        codes[name] = compile_module(path, os.path.join(final_libdir, "pyrunc", filename))
        others: list[str] = []
        deps[name] = top_level_imports(path, others)
        builtins[name] = [m for m in others if m in sys.builtin_module_names]
    blobs: list[bytes] = []
    offset = 0   # from the end of the head

    def add(blob: bytes) -> tuple[int, int]:
        nonlocal offset
        blobs.append(blob)
        offset += len(blob)
        return offset - len(blob), len(blob)

    index = {name: add(marshal.dumps(codes[name])) for name in sorted(codes)}
    docs = {}
    data = {}
    spec_dir = os.path.join(libdir, "spec")
    for filename in sorted(os.listdir(spec_dir)) if os.path.isdir(spec_dir) else ():
        if filename.endswith(".json"):
            path = os.path.join(spec_dir, filename)
            with open(path, "rb") as spec_file:
                docs[filename] = json.load(spec_file)
            st = os.stat(path)
            data[filename] = (*add(marshal.dumps(docs[filename])), st.st_size, st.st_mtime_ns)
    # One blob per distinct preload list: marshal writes an object met twice (a name, a
    # filename) once and refers to it after, and one load instead of ten is ~0.35 M
    # instructions less for `state`.
    orders = {}
    packs: dict[tuple[str, ...], tuple[int, int]] = {}
    for cmd, entries in ENTRIES.items():
        order = preload_order(entries, deps)
        specs = tuple(f for f in SPECS.get(cmd, ()) if f in docs)
        lazy = tuple(b for b in LAZY_BUILTINS.get(cmd, ()) if b in sys.builtin_module_names)
        key = (*order, *specs, *lazy)
        if key not in packs:
            needed = tuple(dict.fromkeys([*(b for n in order for b in builtins[n]), *lazy]))
            pack = (tuple(order), needed, tuple(codes[n] for n in order),
                    {f: docs[f] for f in specs})
            packs[key] = add(marshal.dumps(pack))
        orders[cmd] = packs[key]
    head = marshal.dumps((orders, add(marshal.dumps(index)), data))
    out = os.path.join(libdir, "pyrunc.bundle")
    with open(out + ".tmp", "wb") as f:
        f.write(MAGIC_NUMBER + len(head).to_bytes(4, "little") + head)
        f.writelines(blobs)
    os.rename(out + ".tmp", out)
    return out


def compile_boot(libdir: str, final_libdir: str) -> str | None:
    """Rewrite the launcher's pyrunc_boot.pyc (compileall's) as compile_module compiles the
    package: without docstrings and annotations, ~4 KB (~40 K instructions) less to unmarshal
    on every call. The header is compileall's (source mtime and size), so the import system
    takes it as it took that one, and recompiles in the usual way if the source changes."""
    path = os.path.join(libdir, "pyrunc_boot.py")
    if not os.path.exists(path):
        return None
    code = compile_module(path, os.path.join(final_libdir, "pyrunc_boot.py"))
    st = os.stat(path)
    header = (MAGIC_NUMBER + (0).to_bytes(4, "little")
              + (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
              + (st.st_size & 0xFFFFFFFF).to_bytes(4, "little"))
    out = cache_from_source(path)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".tmp", "wb") as f:
        f.write(header + marshal.dumps(code))
    os.rename(out + ".tmp", out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: _bundle.py DIR LIBDIR")
    build(sys.argv[1], sys.argv[2])
    compile_boot(sys.argv[1], sys.argv[2])
