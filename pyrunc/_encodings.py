"""The `encodings` package of the installed launcher's interpreter (make install copies this file
to LIBDIR/interp/encodings/__init__.py; pyrunc/_interp.py puts that directory first on the
interpreter's path, in python3._pth).

CPython imports `encodings` during its own start-up, before any of our code runs, for one
question: the codec of the file system and of stdio, UTF-8 under -X utf8. Answered by the
standard library's package, that costs ~1 ms of every pyrunc call here (~12% of the bare
interpreter's start): the import lists the stdlib directory (~210 entries) and the encodings
directory (~125), reads three .pyc files, and builds the ~340-name alias table of aliases.py.

This package answers "utf-8" itself, with the C codec functions the standard encodings.utf_8
uses, and hands every other name to the standard package. That one is loaded whole on first
need, from its own file, so every other codec, alias and attribute of `encodings` is the
standard library's: `import encodings.idna` and `encodings.aliases` find the standard
submodules through __path__, and module attributes come from the standard package.
"""

import codecs
import sys
from _frozen_importlib_external import SourceFileLoader  # frozen, loaded before us: no cost

# __path__ is what makes this module a package; the standard directory second on it serves
# the standard submodules (the standard package's own `from . import aliases` included).
_STDLIB_DIR = sys._stdlib_dir + "/encodings"  # type: ignore[attr-defined]
__path__.append(_STDLIB_DIR)  # type: ignore[name-defined]  # noqa: F821

_standard = None   # the standard package, once loaded


def _decode(input, errors="strict"):
    return codecs.utf_8_decode(input, errors, True)


class IncrementalEncoder(codecs.IncrementalEncoder):
    def encode(self, input, final=False):
        return codecs.utf_8_encode(input, self.errors)[0]


# The C functions as class attributes, as the standard encodings.utf_8 has them (builtins do not
# bind as methods: self is not passed). typeshed types these attributes as methods, hence the
# ignores.
class IncrementalDecoder(codecs.BufferedIncrementalDecoder):
    _buffer_decode = codecs.utf_8_decode  # type: ignore[assignment]


class StreamWriter(codecs.StreamWriter):
    encode = codecs.utf_8_encode  # type: ignore[assignment]


class StreamReader(codecs.StreamReader):
    decode = codecs.utf_8_decode  # type: ignore[assignment]


_UTF_8 = codecs.CodecInfo(
    name="utf-8", encode=codecs.utf_8_encode, decode=_decode,
    incrementalencoder=IncrementalEncoder, incrementaldecoder=IncrementalDecoder,
    streamreader=StreamReader, streamwriter=StreamWriter)


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


codecs.register(search_function)
