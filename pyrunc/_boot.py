"""The installed launcher's body: `from pyrunc_boot import start; start(LIBDIR)` (make install
copies this file to LIBDIR/pyrunc_boot.py).

It lives here, byte-compiled, because the launcher script itself is compiled from source on
every call (~0.5 ms for twenty lines). What it adds to a plain `from pyrunc.cli import main`:

- pyrunc.bundle (built by _bundle.py at install): importlib spends ~0.2 M instructions
  (50-80 us) on every module it finds on disk (path scans, stat and open of .py and .pyc, locks,
  spec objects), and `create` imports ~35 of ours, more than runc's whole `state`. The bundle
  holds every module's code; the modules a command imports at start-up go straight into
  sys.modules, in dependency order, and a meta-path finder serves the rest (lazy imports) from
  the same bundle. Correctness never depends on the preload lists: a module missing from them
  is imported through the finder when first needed, one preloaded needlessly costs its body.
  A bundle that is absent, or was built by another interpreter (magic number), is ignored.
- Parsed JSON too: the schema files' parsed form (schema.load_schema asks BundleFinder.prebuilt),
  in the pack of a command that reads one in any case (create's and run's config schema).
- With the bundle in place, the standard library's directories go first on sys.path: every
  import of a stdlib module then stops at its own directory instead of stat'ing ours first
  (nothing in LIBDIR or its vendor/ has a stdlib module's name; pyrunc comes from the bundle).
- No garbage collection during start-up: imports create ~6000 objects and no cycles worth a
  pass (the passes cost ~2.5 M instructions); a long-running command still collects.
- No interpreter teardown (module GC, several ms): flush stdio and _exit.
"""

import _imp
import marshal
import posix  # not os: see lightos.py
import sys
from _frozen_importlib import BuiltinImporter as _BuiltinImporter
from _frozen_importlib_external import MAGIC_NUMBER, ExtensionFileLoader

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_ModuleSpec = type(sys.__spec__)
_Module = type(sys)
_VALUE_FLAGS = ("--root", "--log", "--log-format", "--criu", "--rootless")
_EXTENSIONS = ("_json",)   # the C extensions every command imports (jsonlite)
# ... and the one create, run and exec import (linux.py): by path (the path finder would list
# lib-dynload first: ~0.25 M instructions before create's fork).
_LINUX_EXTENSIONS = ("_ctypes",)


# The bundle's meta-path finder and loader: a namespace of functions, not a class (creating a
# class costs ~0.1 M instructions, as much as the functions themselves; a module object does not).
BundleFinder: "Any" = _Module("BundleFinder", "Meta-path finder and loader for the modules in the bundle.")
BundleFinder.path = ""      # of the bundle
BundleFinder.base = 0       # offset of the code blobs in it
BundleFinder.index = None   # module name -> (offset from base, length) of its marshal'ed code
BundleFinder.fd = -1        # open while preloading; lazy imports reopen the file
BundleFinder.data = {}      # spec file name -> (offset, length, size, mtime_ns) of its parsed form
BundleFinder.parsed = {}    # spec file name -> its parsed form, from the command's pack
BundleFinder.tables = None  # (offset, length) of the index: loaded on its first use (_tables)
BundleFinder.pack = None    # the command's unmarshal'ed pack (see _preload_pack)


def _tables():
    """The index, unmarshal'ed when first asked for: a command that imports nothing lazily
    never needs it (~80 names, ~60 K instructions)."""
    if BundleFinder.index is None:
        if BundleFinder.tables is None:
            return {}
        BundleFinder.index = _load(*BundleFinder.tables)
    return BundleFinder.index


def _find_spec(name, path=None, target=None):
    if not name.startswith("pyrunc"):   # the stdlib's and vendor/'s imports pass straight by
        return None
    try:
        if name not in _tables():
            return None
        code = _code(name)
    except OSError:     # e.g. after pivot_root: let the other finders fail as they would
        return None
    return _spec(name, code)


def _spec(name, code):
    is_pkg = name == "pyrunc"
    libdir = BundleFinder.path.rpartition("/")[0]
    origin = libdir + ("/pyrunc/__init__.py" if is_pkg else f"/{name.replace('.', '/')}.py")
    spec = _ModuleSpec(name, BundleFinder, origin=origin, is_package=is_pkg)
    spec.loader_state = code
    if is_pkg:
        spec.submodule_search_locations = [libdir + "/pyrunc"]
    spec.has_location = True
    return spec


def _create_module(spec):
    return None


def _exec_module(module):
    module.__file__ = module.__spec__.origin
    exec(module.__spec__.loader_state, module.__dict__)


def _code(name):
    return _load(*BundleFinder.index[name])


def _load(offset, length):
    fd = BundleFinder.fd if BundleFinder.fd >= 0 else posix.open(BundleFinder.path,
                                                                 posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        return marshal.loads(posix.pread(fd, length, BundleFinder.base + offset))
    finally:
        if fd != BundleFinder.fd:
            posix.close(fd)


def _prebuilt(filename, path):
    """The parsed form of spec/<filename> stored at install, or None: not in the bundle, or the
    file at path no longer has the size and mtime it had then (edited since: parse it)."""
    entry = BundleFinder.data.get(filename)
    if entry is None:
        return None
    try:
        st = posix.stat(path)
    except OSError:
        return None
    if (st.st_size, st.st_mtime_ns) != entry[2:]:
        return None
    parsed = BundleFinder.parsed.pop(filename, None)   # schema.py keeps what it gets
    if parsed is not None:
        return parsed
    try:
        return _load(entry[0], entry[1])
    except OSError:
        return None


def _preload(name, code):
    """What importing name does, without importlib's machinery."""
    if name in sys.modules:
        return
    spec = _spec(name, code)
    module = _Module(name)
    module.__spec__ = spec
    module.__loader__ = BundleFinder
    module.__file__ = spec.origin
    module.__package__ = "pyrunc"
    if spec.submodule_search_locations is not None:
        module.__path__ = spec.submodule_search_locations
    sys.modules[name] = module
    try:
        exec(spec.loader_state, module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        spec.loader_state = None
    if name != "pyrunc":
        setattr(sys.modules["pyrunc"], name.rpartition(".")[2], module)


BundleFinder.find_spec, BundleFinder.create_module = _find_spec, _create_module
BundleFinder.exec_module, BundleFinder.code, BundleFinder.preload = _exec_module, _code, _preload
BundleFinder.prebuilt = _prebuilt


def load_extension(name):
    """Import a C extension of lib-dynload by its path: the path finder would list that
    directory (~100 entries) and build its cache first, ~0.25 M instructions for one module.
    Anything unexpected (no lib-dynload on sys.path, no such file) leaves it to the import
    statement, as before."""
    if name in sys.modules:
        return
    for directory in sys.path:
        if directory.endswith("/lib-dynload"):
            break
    else:
        return
    path = f"{directory}/{name}{_imp.extension_suffixes()[0]}"
    spec = _ModuleSpec(name, ExtensionFileLoader(name, path), origin=path)
    spec.has_location = True
    try:
        module = _imp.create_dynamic(spec)
    except ImportError:
        return
    _install(name, module, spec, spec.loader, _imp.exec_dynamic)


def _install(name, module, spec, loader, execute):
    """What the import system does with a module it has created: into sys.modules, then run
    its initialisation (execute), out again if that fails."""
    module.__spec__, module.__loader__ = spec, loader
    sys.modules[name] = module
    try:
        execute(module)
    except BaseException:
        del sys.modules[name]
        raise


def command_name(argv):
    """The subcommand, as cli.py will find it (only used to pick a preload list)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUE_FLAGS:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return arg
    return ""


def load_builtin(name):
    """Create a built-in module (compiled into the interpreter) as BuiltinImporter would: the
    import statement gets there after asking each meta-path finder, under a module lock, ~75 K
    instructions more per module (gc, fcntl, _socket, select, ... on Debian's static build).
    A name the interpreter does not have built in is left to the import statement."""
    if name in sys.modules or not _imp.is_builtin(name):
        return
    spec = _ModuleSpec(name, _BuiltinImporter, origin="built-in")
    _install(name, _imp.create_builtin(spec), spec, _BuiltinImporter, _imp.exec_builtin)


def _preload_pack(entry):
    """Preload a command's modules, in order, from their one blob (see _bundle.build), after
    the built-in modules they import."""
    offset, length = entry
    pack = _mapped_loads(offset, length) if length > _MAP_AT_LEAST else None
    if pack is None:
        pack = marshal.loads(posix.pread(BundleFinder.fd, length, BundleFinder.base + offset))
    names, builtins, codes, parsed = pack
    BundleFinder.parsed = parsed
    # Kept: freeing the module-level code would cost instructions before posix._exit, and before
    # run's and exec's forks dirty pages the child then copies (run: ~40 page faults).
    BundleFinder.pack = pack
    for name in builtins:
        load_builtin(name)
    for name, code in zip(names, codes):
        _preload(name, code)


_MAP_AT_LEAST = 1 << 18


def _mapped_loads(offset, length):
    """marshal.loads of a big blob (create's, run's and exec's: 0.3-0.35 MB) straight from the
    page cache. pread would copy it into fresh memory first, ~90 page faults (~0.25 ms here, at
    ~2.7 us a fault) against a few for the mapping (the kernel maps 16 cached pages per fault)
    and ~0.2 M instructions for loading mmap; for the short commands' 0.15 MB that is a loss
    (measured on `state`: -19 faults, +0.23 M). None if anything fails: pread then."""
    load_extension("mmap")
    try:
        import mmap
        mapped = mmap.mmap(BundleFinder.fd, 0, prot=mmap.PROT_READ)
    except (ImportError, OSError, ValueError):
        return None
    try:
        with memoryview(mapped) as view:
            start = BundleFinder.base + offset
            return marshal.loads(view[start:start + length])
    finally:
        mapped.close()


def load_bundle(libdir):
    """Install the bundle's finder and preload the command's modules; False if no bundle."""
    path = libdir + "/pyrunc.bundle"
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return False
    try:
        head = posix.pread(fd, 8, 0)
        if head[:4] != MAGIC_NUMBER:
            return False
        size = int.from_bytes(head[4:8], "little")
        orders, BundleFinder.tables, BundleFinder.data = marshal.loads(posix.pread(fd, size, 8))
        BundleFinder.path, BundleFinder.base = path, 8 + size
        BundleFinder.fd = fd
        sys.meta_path.insert(0, BundleFinder)
        ours = [p for p in sys.path if p == libdir or p.startswith(libdir + "/")]
        sys.path[:] = [p for p in sys.path if p not in ours] + ours
        command = command_name(sys.argv[1:])
        if command in ("create", "run", "exec"):
            for name in _LINUX_EXTENSIONS:
                load_extension(name)
        for name in _EXTENSIONS:
            load_extension(name)
        _preload_pack(orders.get(command, orders[""]))
    finally:
        BundleFinder.fd = -1
        posix.close(fd)
    return True


def start(libdir):
    load_builtin("gc")   # then the import statement finds it in sys.modules
    import gc
    gc.set_threshold(100_000)
    load_bundle(libdir)
    from pyrunc.cli import main
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    posix._exit(code)
