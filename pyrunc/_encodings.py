"""The `encodings` package of the installed launcher's interpreter (make install copies this file
to LIBDIR/interp/encodings/__init__.py; pyrunc/_interp.py puts that directory first on the
interpreter's path, in python3._pth).

CPython imports `encodings` during its own start-up, before any of our code runs, for one
question: the codec of the file system and of stdio, UTF-8 under -X utf8. Answered by the
standard library's package, that costs ~1 ms of every pyrunc call here (~12% of the bare
interpreter's start): the import lists the stdlib directory (~210 entries) and the encodings
directory (~125), reads three .pyc files, and builds the ~340-name alias table of aliases.py.
Even the `codecs` module it imports, the base classes of every codec, is ~0.8 M instructions
(~0.4 ms) of class building.

So this package answers that start-up question without `codecs`: a codec record for UTF-8
made of the C functions the standard encodings.utf_8 uses, with incremental encoder and
decoder classes that do what its classes do (codecs' IncrementalEncoder and
BufferedIncrementalDecoder, written out for UTF-8). The interpreter caches what a lookup
returns, so that record is what codecs.lookup("utf-8") gives for the process's life: the same
attributes and behaviour as the standard CodecInfo (tests/test_interp.py compares them), though
not a codecs.CodecInfo instance, nor its classes subclasses of codecs' (its stream classes are
the standard ones, built on first use). Every other codec name, alias and attribute of
`encodings` is the standard package's, loaded whole on first need with the standard directory
on our __path__ (`import encodings.idna`, `encodings.aliases`).
"""

import _codecs
import sys
from _frozen_importlib_external import SourceFileLoader  # frozen, loaded before us: no cost

# __path__ is what makes this module a package; the standard directory second on it serves
# the standard submodules (the standard package's own `from . import aliases` included).
_STDLIB_DIR = sys._stdlib_dir + "/encodings"  # type: ignore[attr-defined]
__path__.append(_STDLIB_DIR)  # type: ignore[name-defined]  # noqa: F821

_standard = None   # the standard package, once loaded


def _decode(input, errors="strict"):
    return _codecs.utf_8_decode(input, errors, True)


class _StartupEncoder:
    """encodings.utf_8.IncrementalEncoder's behaviour (UTF-8 is stateless: no buffer kept)."""

    def __init__(self, errors="strict"):
        self.errors = errors
        self.buffer = ""

    def encode(self, input, final=False):
        return _codecs.utf_8_encode(input, self.errors)[0]

    def reset(self):
        pass

    def getstate(self):
        return 0

    def setstate(self, state):
        pass


class _StartupDecoder:
    """encodings.utf_8.IncrementalDecoder's: the bytes of an incomplete sequence wait in
    buffer for the next call (or, with final, are decoded under the error handler)."""

    def __init__(self, errors="strict"):
        self.errors = errors
        self.buffer = b""

    def decode(self, input, final=False):
        data = self.buffer + input
        result, consumed = _codecs.utf_8_decode(data, self.errors, final)
        self.buffer = data[consumed:]
        return result

    def reset(self):
        self.buffer = b""

    def getstate(self):
        return (self.buffer, 0)

    def setstate(self, state):
        self.buffer = state[0]


def _standard_utf_8():
    """The standard library's CodecInfo for UTF-8 (encodings/utf_8.py)."""
    from . import utf_8
    return utf_8.getregentry()


class _StartupCodec(tuple):
    """What codecs.lookup("utf-8") returns: a 4-tuple (all the interpreter checks) with
    CodecInfo's attributes. The stream classes, which start-up never asks for,
    are the standard ones, built on first use."""

    name = "utf-8"
    encode = staticmethod(_codecs.utf_8_encode)
    decode = staticmethod(_decode)
    incrementalencoder = _StartupEncoder
    incrementaldecoder = _StartupDecoder
    streamreader = property(lambda self: _standard_utf_8().streamreader)
    streamwriter = property(lambda self: _standard_utf_8().streamwriter)


_UTF_8 = _StartupCodec((_codecs.utf_8_encode, _decode, None, None))


def _standard_package():
    """The standard library's encodings package, run in a module of its own whose __path__ is
    ours (its relative imports resolve against sys.modules["encodings"], this package). It
    registers its own search function as it always does; ours asks it first anyway."""
    global _standard
    if _standard is None:
        module = type(sys)("encodings")
        module.__path__ = __path__  # type: ignore[name-defined]  # noqa: F821
        module.__package__ = "encodings"
        module.__file__ = _STDLIB_DIR + "/__init__.py"
        # The loader the standard path finder would use: it reads the cached .pyc when fresh.
        code = SourceFileLoader("encodings", module.__file__).get_code("encodings")
        _standard = module   # before running it: its imports may come back through __getattr__
        exec(code, module.__dict__)  # noqa: S102  (the standard library's own package code)
    return _standard


def search_function(encoding):
    # codecs.lookup() has normalized the name already: lower case, "-" and " " become "_".
    if encoding in ("utf_8", "utf8"):
        return _UTF_8
    return _standard_package().search_function(encoding)


def __getattr__(name):
    """Anything else the standard package defines (normalize_encoding, aliases,
    CodecRegistryError, ...)."""
    if not name.startswith("__"):
        standard = _standard_package()
        if name in standard.__dict__:
            return standard.__dict__[name]
    raise AttributeError(f"module 'encodings' has no attribute {name!r}")


_codecs.register(search_function)
