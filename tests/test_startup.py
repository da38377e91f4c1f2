"""The start-up machinery of the installed launcher: lightos (os without its import cost) and
pyrunc.bundle (every module's code in one file, preloaded per command). Structural, not timed.
"""

from __future__ import annotations

import json
import marshal
import os
import posixpath
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrunc import _bundle, lightos

# Path-like strings built from the parts that make normpath/join interesting.
PATHS = st.lists(st.sampled_from(["", "/", "//", "///", ".", "..", "a", "b.c", "..x", " ", "é"]),
                 max_size=8).map("/".join)


@settings(max_examples=400, deadline=None)
@given(PATHS, st.lists(PATHS, max_size=3))
def test_lightos_path_matches_posixpath(first: str, rest: list[str]) -> None:
    p = lightos.path
    assert p.join(first, *rest) == posixpath.join(first, *rest)
    assert p.normpath(first) == posixpath.normpath(first)
    assert p.dirname(first) == posixpath.dirname(first)
    assert p.basename(first) == posixpath.basename(first)
    assert p.isabs(first) == posixpath.isabs(first)
    assert p.abspath(first) == posixpath.abspath(first)


def test_lightos_is_os_where_it_matters(tmp_path: Path) -> None:
    assert lightos.open is os.open and lightos.O_CLOEXEC == os.O_CLOEXEC
    assert lightos._exit is os._exit
    assert lightos.environ is os.environ          # the str mapping, not posix's bytes one
    assert lightos.makedirs is os.makedirs        # through the fallback to the real os
    assert lightos.path.realpath is posixpath.realpath
    assert lightos.path.exists(str(tmp_path)) and lightos.path.isdir(str(tmp_path))
    assert not lightos.path.exists(str(tmp_path / "nope")) and not lightos.path.isdir(__file__)
    assert lightos.path.join(b"/a", b"b") == b"/a/b"  # bytes go to posixpath


def _installed(tmp_path: Path) -> Path:
    """A copy of the package plus its bundle, laid out as `make install` does."""
    lib = tmp_path / "lib"
    shutil.copytree(REPO / "pyrunc", lib / "pyrunc", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "spec", lib / "spec")
    subprocess.run(["/usr/bin/python3", "-I", "-S", str(REPO / "pyrunc" / "_bundle.py"), str(lib),
                    str(lib)], check=True)
    return lib


def _python(code: str) -> str:
    """stdout of code run by the launcher's interpreter under -I -S (failing the test if it fails)."""
    return subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", code], capture_output=True,
                          text=True, check=True).stdout


def _boot(lib: Path, *argv: str) -> list[str]:
    """Run _boot.load_bundle for argv in a fresh -I -S interpreter: the modules it loaded."""
    code = (f"import sys; sys.path[:0] = [{str(lib)!r}]; sys.argv = ['pyrunc', *{list(argv)!r}]; "
            f"from pyrunc import _boot; ok = _boot.load_bundle({str(lib)!r}); "
            "import pyrunc.cli; "
            "print(ok, ' '.join(sorted(m for m in sys.modules if m.startswith('pyrunc') or m == 'os')),"
            " pyrunc.cli.__file__, (lambda l: getattr(l, '__name__', type(l).__name__))(pyrunc.cli.__spec__.loader))")
    out = _python(code).split()
    return out


def test_bundle_preloads_per_command_without_os(tmp_path: Path) -> None:
    lib = _installed(tmp_path)
    out = _boot(lib, "--root", "/run/x", "state", "c1")
    assert out[0] == "True"
    assert {"pyrunc.lifecycle", "pyrunc.state", "pyrunc.cli"} <= set(out[1:-2])
    assert "pyrunc.create" not in out and "os" not in out   # state needs neither
    assert out[-2] == str(lib / "pyrunc" / "cli.py") and out[-1] == "BundleFinder"
    assert "pyrunc.create" in _boot(lib, "--log", "x", "create", "c1")


def test_lazy_imports_come_from_the_bundle(tmp_path: Path) -> None:
    lib = _installed(tmp_path)
    (lib / "pyrunc" / "specgen.py").write_text("raise ImportError('read from disk')\n")
    out = _boot(lib, "state", "c1")
    code = (f"import sys; sys.path[:0] = [{str(lib)!r}]; from pyrunc import _boot; "
            f"_boot.load_bundle({str(lib)!r}); from pyrunc import specgen; print(specgen.default_spec()['ociVersion'])")
    assert out[0] == "True"
    assert _python(code).strip()


def _schema_from_boot(lib: Path, command: str = "create") -> tuple[dict, bool]:
    """schema.load_schema("config") after _boot.load_bundle, and whether the JSON file was read."""
    code = (f"import sys, json; sys.path[:0] = [{str(lib)!r}]; sys.argv = ['pyrunc', {command!r}, 'c1']; "
            f"from pyrunc import _boot; _boot.load_bundle({str(lib)!r}); from pyrunc import schema; "
            "import builtins, posix; opened = []; real = builtins.open; "
            "builtins.open = lambda f, *a, **k: opened.append(f) or real(f, *a, **k); "
            "real_open = posix.open; bundle = []; "
            "posix.open = lambda f, *a: bundle.append(f) or real_open(f, *a); "
            "doc = schema.load_schema('config'); "
            "print(json.dumps([doc, bool(opened), bool(bundle)]))")
    out = _python(code)
    doc, opened, reread = json.loads(out)
    # create and run carry the parsed schema in their pack: no second read of the bundle
    assert reread == (not opened and command not in ("create", "run")), (command, reread)
    return doc, opened


def test_a_command_without_the_schema_in_its_pack_reads_it_from_the_bundle(tmp_path: Path) -> None:
    lib = _installed(tmp_path)
    doc, opened = _schema_from_boot(lib, "exec")
    assert doc == json.loads((lib / "spec" / "config-schema.json").read_bytes()) and not opened


def test_schemas_come_parsed_from_the_bundle_unless_edited_since(tmp_path: Path) -> None:
    lib = _installed(tmp_path)
    spec = lib / "spec" / "config-schema.json"
    doc, opened = _schema_from_boot(lib)
    assert doc == json.loads(spec.read_bytes()) and not opened    # the bundle's parsed copy
    edited = json.loads(spec.read_bytes())
    edited["description"] = "edited after make install"
    spec.write_text(json.dumps(edited))
    doc, opened = _schema_from_boot(lib)
    assert doc == edited and opened                               # stale: the file wins
    spec.unlink()
    (lib / "pyrunc.bundle").unlink()
    shutil.copytree(REPO / "spec", lib / "spec", dirs_exist_ok=True)
    doc, opened = _schema_from_boot(lib)
    assert doc == json.loads((REPO / "spec" / "config-schema.json").read_bytes()) and opened


def test_a_bundle_from_another_interpreter_is_ignored(tmp_path: Path) -> None:
    lib = _installed(tmp_path)
    bundle = lib / "pyrunc.bundle"
    data = bytearray(bundle.read_bytes())
    data[0] ^= 0xFF                       # another magic number: another bytecode format
    bundle.write_bytes(bytes(data))
    out = _boot(lib, "state", "c1")
    assert out[0] == "False" and out[-1] == "SourceFileLoader"


def test_bundle_preload_lists_follow_module_level_imports() -> None:
    deps = {name: _bundle.top_level_imports(str(REPO / "pyrunc" / f)) for f in os.listdir(REPO / "pyrunc")
            if f.endswith(".py") and (name := _bundle.module_name(f))}
    order = _bundle.preload_order(["pyrunc.lifecycle"], deps)
    assert order[0] == "pyrunc"
    for i, name in enumerate(order):                  # every dependency comes before its user
        assert set(deps[name]) & set(deps) <= set(order[:i]) | {name}
    assert "pyrunc.state" in order and "pyrunc.create" not in order
    # TYPE_CHECKING imports are not run, so they are not followed.
    assert _bundle.top_level_imports(str(REPO / "pyrunc" / "schema.py")) == [
        "pyrunc.jsonlite", "pyrunc.lightos", "pyrunc.errors"]


@pytest.mark.parametrize("name", ["cli", "state"])
def test_bundle_code_drops_the_future_import_not_its_effect(name: str) -> None:
    code = _bundle.compile_module(str(REPO / "pyrunc" / f"{name}.py"), "x.py")
    assert "__future__" not in code.co_names
    assert code.co_flags & _bundle._ANNOTATIONS_FLAG
    marshal.dumps(code)


def test_bundle_code_has_no_docstrings_but_the_same_line_numbers(tmp_path: Path) -> None:
    """The bundle's code leaves docstrings out (-OO's half; asserts stay), and a traceback
    through it still names the right lines."""
    src = tmp_path / "m.py"
    src.write_text('"""Module doc."""\n\nclass C:\n    """Class doc."""\n\n\n'
                   'def only_doc():\n    """Nothing else."""\n\n\n'
                   'def boom(x):\n    """Doc."""\n    assert x, "kept"\n    return 1 / x\n')
    code = _bundle.compile_module(str(src), str(src))
    ns: dict = {"__name__": "m"}
    exec(code, ns)  # noqa: S102  (our own code, compiled as the bundle does)
    assert "__doc__" not in ns and ns["C"].__doc__ is None and ns["boom"].__doc__ is None
    assert ns["only_doc"]() is None
    with pytest.raises(AssertionError, match="kept") as info:
        ns["boom"](0)
    assert info.traceback[-1].lineno + 1 == 13        # pytest's entries count from 0
    state = _bundle.compile_module(str(REPO / "pyrunc" / "state.py"), "state.py")
    assert not any(isinstance(c, str) and len(c) > 200 for c in state.co_consts)


def test_bundle_code_has_no_annotations_but_the_same_values(tmp_path: Path) -> None:
    """Type hints are left out of the bundle's code (only a type checker reads them); an
    annotated assignment keeps its value, a bare declaration binds nothing, as before."""
    src = tmp_path / "m.py"
    src.write_text("from __future__ import annotations\n\nLIMIT: int = 3\nDECLARED: str\n\n\n"
                   "class C:\n    size: int = 2\n    name: str\n\n"
                   "    def f(self, a: int, *rest: str, k: bool = True, **kw: float) -> list[int]:\n"
                   "        local: int = a + self.size\n        return [local, LIMIT]\n")
    code = _bundle.compile_module(str(src), str(src))
    ns: dict = {"__name__": "m"}
    exec(code, ns)  # noqa: S102  (our own code, compiled as the bundle does)
    assert ns["LIMIT"] == 3 and "DECLARED" not in ns and "__annotations__" not in ns
    assert ns["C"].size == 2 and not hasattr(ns["C"], "name")
    assert "__annotations__" not in ns["C"].__dict__
    assert ns["C"].f.__annotations__ == {} and ns["C"]().f(1) == [3, 3]
    assert ns["C"].f.__code__.co_firstlineno == 11        # the same line numbers


def test_nothing_reads_annotations_at_run_time() -> None:
    """What makes dropping them from the bundle safe (see _bundle.strip_annotations)."""
    for path in sorted((REPO / "pyrunc").glob("*.py")):
        text = path.read_text()
        for word in ("__annotations__", "get_type_hints", "inspect.signature", "dataclass"):
            assert word not in text or path.name == "_bundle.py", f"{path.name}: {word}"


def test_builtin_modules_are_made_directly_and_tables_only_when_asked(tmp_path: Path) -> None:
    """The built-in modules a command's pack imports (fcntl for kill's lock, on an interpreter
    that has it built in; not for state, which takes no lock) are created before the pack, as
    BuiltinImporter would; the index of lazy imports is unmarshal'ed only when one happens."""
    lib = _installed(tmp_path)
    code = (f"import sys; sys.path[:0] = [{str(lib)!r}]; sys.argv = ['pyrunc', 'kill', 'c1']; "
            f"from pyrunc import _boot; _boot.load_bundle({str(lib)!r}); "
            "import fcntl; from _frozen_importlib import BuiltinImporter as B; "
            "lazy = _boot.BundleFinder.index is None; _boot.load_builtin('_json_not_builtin'); "
            "import pyrunc.specgen; "
            "print(fcntl.__loader__ is B, fcntl.__spec__.origin, callable(fcntl.flock), lazy, "
            "'pyrunc.specgen' in _boot.BundleFinder.index, '_json_not_builtin' in sys.modules)")
    out = _python(code).split()
    assert out == ["True", "built-in", "True", "True", "True", "False"]
    head = (lib / "pyrunc.bundle").read_bytes()
    orders, _index, _data = marshal.loads(head[8:8 + int.from_bytes(head[4:8], "little")])
    base = 8 + int.from_bytes(head[4:8], "little")
    packs = {}
    for command in ("kill", "state"):
        offset, length = orders[command]
        packs[command] = marshal.loads(head[base + offset:base + offset + length])
    names, builtins, codes, _parsed = packs["kill"]
    assert "pyrunc.state" in names and len(codes) == len(names)
    if "fcntl" in sys.builtin_module_names:   # our venv's interpreter may differ from /usr/bin's
        assert "fcntl" in builtins
    assert "fcntl" not in packs["state"][1]


def test_short_commands_never_import_os() -> None:
    """state, kill, delete, start, list: os (via _collections_abc) would cost ~1.5-2 ms each."""
    code = (f"import sys; sys.path[:0] = [{str(REPO)!r}]; "
            "import pyrunc.cli, pyrunc.commands, pyrunc.lifecycle, pyrunc.state, pyrunc.log; "
            "print(' '.join(sorted(sys.modules)))")
    out = _python(code).split()
    assert "os" not in out and "_collections_abc" not in out


def test_create_path_never_imports_os() -> None:
    """create and run: os would cost ~1.5 ms before the init's fork, and the init itself could
    not import it after pivot_root (what it needs of os.path, relpath included, is lightos')."""
    code = (f"import sys; sys.path[:0] = [{str(REPO)!r}]; "
            "import pyrunc.cli, pyrunc.commands, pyrunc.create, pyrunc.run, pyrunc.config, "
            "pyrunc.schema, pyrunc.init, pyrunc.log; "
            "print(' '.join(sorted(sys.modules)))")
    out = _python(code).split()
    assert "pyrunc.init" in out
    assert not set(out) & {"os", "_collections_abc", "posixpath"}, out


def test_lightos_relpath_matches_posixpath() -> None:
    for name, start in [("/a/b/proc", "/a/b"), ("/a/b", "/a/b"), ("/a/x", "/a/b/c"), ("/", "/a"),
                        ("//a/./b/../c", "/a"), ("/a", "/"), ("/a/b/", "/a//b/c/..")]:
        assert lightos.path.relpath(name, start) == posixpath.relpath(name, start), (name, start)
    assert lightos.path.relpath("x/y") == posixpath.relpath("x/y")
    with pytest.raises(ValueError):
        lightos.path.relpath("")


def test_exec_path_imports_neither_os_nor_ctypes() -> None:
    """exec's modules: os ~3 ms, ctypes ~2 ms (linux.py uses _ctypes; seccomp.py imports ctypes
    for a filter only), resource and python-prctl ~0.5 ms (prlimit and capset in linux.py)."""
    code = (f"import sys; sys.path[:0] = [{str(REPO)!r}]; "
            "import pyrunc.cli, pyrunc.commands, pyrunc.execute, pyrunc.init, pyrunc.supervise; "
            "print(' '.join(sorted(sys.modules)))")
    out = _python(code).split()
    assert "pyrunc.init" in out and "_ctypes" in out
    assert not set(out) & {"os", "_collections_abc", "ctypes", "resource", "_prctl"}, out


def _launcher_imports(pyrunc, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run the installed launcher under -X importtime: its result and every module it imported."""
    cmd = ["/usr/bin/python3", "-X", "importtime", "-I", "-S", pyrunc.binary, "--root",
           str(pyrunc.root), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    names = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
             if line.startswith("import time:") and "|" in line}
    return proc, names


@pytest.mark.kernel
def test_installed_short_commands_never_import_os(pyrunc, bundle) -> None:
    """End to end, through the installed launcher: start, state, exec, list, kill and delete of a
    real container import neither os nor _collections_abc (nor ctypes), and nothing from disk but pyrunc's own
    _boot (the rest comes from the bundle)."""
    with open(pyrunc.binary, "rb") as f:
        if b"pyrunc_boot" not in f.read(4096):
            pytest.skip("PYRUNC is not an installed launcher (make install writes one)")
    bundle.config["process"]["args"] = ["sleep", "100"]
    bundle.write()
    cid = pyrunc.new_id("os")
    # Output to /dev/null, not pipes: the init would hold a pipe open and hang the call.
    pyrunc("create", "--bundle", str(bundle.path), cid, check=True, capture_output=False,
           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for args in (("start", cid), ("state", cid), ("exec", cid, "true"), ("list",),
                 ("kill", cid, "KILL"), ("delete", "--force", cid)):
        proc, names = _launcher_imports(pyrunc, *args)
        assert proc.returncode == 0, (args, proc.stderr[-500:])
        assert not names & {"os", "_collections_abc", "posixpath"}, (args, sorted(names))
        assert not names & {"ctypes", "resource", "_prctl"}, (args, sorted(names))
        assert "pyrunc.lifecycle" not in names, args    # preloaded from the bundle, not imported


@pytest.mark.kernel
def test_installed_run_never_imports_os(pyrunc, bundle) -> None:
    """A real `run` through the installed launcher, the init's imports included (its stderr is
    ours): no os before the fork, none after it, and none in the init."""
    with open(pyrunc.binary, "rb") as f:
        if b"pyrunc_boot" not in f.read(4096):
            pytest.skip("PYRUNC is not an installed launcher (make install writes one)")
    bundle.write()
    proc, names = _launcher_imports(pyrunc, "run", "--bundle", str(bundle.path), pyrunc.new_id("os"))
    assert proc.returncode == 0, proc.stderr[-500:]
    assert not names & {"os", "_collections_abc", "posixpath"}, sorted(names)


@pytest.mark.kernel
def test_prewarm_keeper_thread_moves_us_then_stops_when_reaped() -> None:
    code = (f"import sys, os, time; sys.path[:0] = [{str(REPO)!r}]; from pyrunc import cgroups; "
            "a = cgroups.prewarm_migration(); time.sleep(0.05); n = len(os.listdir('/proc/self/task')); "
            "cgroups.reap_prewarm(a); cgroups.reap_prewarm(a); time.sleep(0.05); "
            "m = len(os.listdir('/proc/self/task')); b = cgroups.prewarm_migration(); "
            "print(a, n, m, b, cgroups.prewarm_migration())")
    out = subprocess.run(["strace", "-f", "-qq", "-e", "trace=write", "-o", "/dev/stderr",
                          sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                         check=True, timeout=30)
    a, running, after, b, again = (int(x) for x in out.stdout.split())
    assert a and running == 2 and after == 1     # one thread while kept, gone once reaped
    assert b > a and again == b                  # a new one later; a running one is handed over
    moves = [line for line in out.stderr.splitlines() if ', "0", 1)' in line and line.endswith('= 1')]
    assert len(moves) >= 2   # its no-op moves of us into our own cgroup


def test_boot_pyc_is_stripped_and_taken_by_the_import_system(tmp_path: Path) -> None:
    """_bundle.compile_boot rewrites compileall's pyrunc_boot.pyc without docstrings: the launcher's
    import must take it as valid (a header it rejected would recompile, docstrings included)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(REPO / "pyrunc" / "_boot.py", lib / "pyrunc_boot.py")
    subprocess.run(["/usr/bin/python3", "-I", "-S", "-m", "compileall", "-q", str(lib)], check=True)
    pyc = _bundle.compile_boot(str(lib), str(lib))
    assert pyc is not None
    before = Path(pyc).read_bytes()
    out = _python(f"import sys; sys.dont_write_bytecode = True; sys.path[:0] = [{str(lib)!r}]; "
                  "import pyrunc_boot; print(pyrunc_boot.__doc__, pyrunc_boot.load_bundle.__doc__, "
                  "callable(pyrunc_boot.start))")
    assert out.split() == ["None", "None", "True"]
    assert Path(pyc).read_bytes() == before
