"""The installed launchers' interpreter (pyrunc/_interp.py): the system Python under LIBDIR/python3
with a python3._pth beside it, and pyrunc/_encodings.py as its start-up `encodings` package.
What must hold: the path and flags the launcher had with -I -S, no standard encodings package
at start-up (the reason for all this), and every codec behaving exactly as the standard
library's, which the second half checks against the system interpreter, codec by codec."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, pyrunc_binary

SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def interp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree laid out by _interp.py, as make install does (DIR and LIBDIR the same here)."""
    tree = tmp_path_factory.mktemp("interp")
    subprocess.run([SYSTEM_PYTHON, "-I", "-S", str(REPO / "pyrunc" / "_interp.py"), str(tree), str(tree)],
                   check=True)
    return tree


def _run(python: str, code: str, *flags: str) -> str:
    return subprocess.run([python, *flags, "-c", code], capture_output=True, text=True, check=True,
                          env={}).stdout


def test_path_and_flags_are_those_of_isolated_no_site(interp: Path) -> None:
    code = ("import sys, json; print(json.dumps([sys.path, sys.flags.isolated, sys.flags.no_site, "
            "sys.flags.ignore_environment, sys.flags.safe_path]))")
    ours = json.loads(_run(str(interp / "python3"), code))
    standard = json.loads(_run(SYSTEM_PYTHON, code, "-I", "-S"))
    assert ours[0][0] == str(interp / "interp")
    assert ours[0][1:] == [p for p in standard[0] if os.path.isdir(p)]
    assert ours[1:] == standard[1:] == [1, 1, 1, True]


def test_start_up_imports_no_standard_encodings_package(interp: Path) -> None:
    code = ("import sys; at_start = sorted(m for m in sys.modules if 'codecs' in m or "
            "m.startswith('encodings')); import encodings, os, json; print(json.dumps(["
            "encodings.__file__, at_start, os.__file__, os.path.isfile(os.__file__), sys.executable]))")
    enc_file, modules, os_file, os_exists, executable = json.loads(_run(str(interp / "python3"), code))
    assert enc_file == str(interp / "interp" / "encodings" / "__init__.py")
    assert modules == ["_codecs", "encodings"]   # no encodings.aliases or .utf_8, no codecs
    assert os_exists, os_file                # frozen modules' __file__: lib/python3.X links the stdlib
    assert executable == str(interp / "python3")


# Every codec name the standard library knows, and a text with something for each to do.
CODEC_PROBE = r"""
import codecs, encodings, encodings.aliases, json, sys
names = sorted(set(encodings.aliases.aliases) | set(encodings.aliases.aliases.values())
               | {"UTF-8", "Utf 8", "utf8", "U8", "utf-8-sig", "utf_16", "idna", "punycode",
                  "rot13", "hex", "base64", "unicode_escape", "raw_unicode_escape", "nope"})
text, blob = "h\xe9llo \u20ac \U0001f600 \udc80", "h\xe9llo".encode("utf-8") + b"\xff\xe2\x82"
out = {}
for name in names:
    try:
        info = codecs.lookup(name)
    except LookupError:
        out[name] = "LookupError"
        continue
    row = [info.name]
    for fn, arg in ((info.encode, text), (info.decode, blob)):
        try:
            row.append(repr(fn(arg, "replace")))
        except Exception as e:
            row.append(type(e).__name__)
    row.append(all(callable(getattr(info, a)) for a in
                   ("incrementalencoder", "incrementaldecoder", "streamreader", "streamwriter")))
    out[name] = row
dec = codecs.getincrementaldecoder("utf-8")()
split = [dec.decode(b"\xe2\x82"), dec.getstate(), dec.decode(b"\xac", final=True)]
moved = codecs.getincrementaldecoder("utf-8")()
moved.decode(b"a\xe2")
resumed = codecs.getincrementaldecoder("utf-8")()
resumed.setstate(moved.getstate())
split += [resumed.decode(b"\x82\xac"), codecs.getincrementalencoder("utf-8")().getstate()]
try:
    codecs.getincrementaldecoder("utf-8")().decode(b"\xe2\x82", final=True)
    strict = "no error"
except UnicodeDecodeError as e:
    strict = e.reason
import io
stream = io.BytesIO()
codecs.getwriter("utf-8")(stream).write(text[:-1])
extra = [split, strict, codecs.getincrementalencoder("utf-8")("replace").encode("a\udc80"),
         codecs.getincrementaldecoder("utf-8")("replace").decode(b"a\xff", final=True), codecs.getreader("UTF8")(io.BytesIO(stream.getvalue())).read() == text[:-1],
         encodings.normalize_encoding("Latin 1"), encodings.search_function("latin_1").name,
         issubclass(encodings.CodecRegistryError, LookupError), hasattr(encodings, "nope")]
print(json.dumps([out, repr(extra)]))
"""


def test_every_codec_behaves_as_the_standard_librarys(interp: Path) -> None:
    ours = json.loads(_run(str(interp / "python3"), CODEC_PROBE, "-Xutf8"))
    standard = json.loads(_run(SYSTEM_PYTHON, CODEC_PROBE, "-I", "-S", "-Xutf8"))
    assert len(ours[0]) > 300              # the whole alias table was probed
    assert ours == standard


# stdin and stdout are made at start-up with the start-up codec's incremental classes: a
# character split across TextIOWrapper's 8 KB reads, invalid bytes (surrogateescape, UTF-8
# mode's stdio handler), and tell/seek on a text file opened afterwards.
STDIO_PROBE = r"""
import sys, tempfile
text = sys.stdin.read()
sys.stdout.write(repr(text[-12:]) + " " + str(len(text)) + "\n")
sys.stdout.write(text[-6:] + "\n")
with tempfile.TemporaryFile("w+", encoding="utf-8") as f:
    f.write("a\u20acb\n\xe9\n")
    f.seek(0)
    first = f.readline()
    where = f.tell()
    rest = f.read()
    f.seek(where)
    print(repr(first), repr(rest), f.read() == rest)
"""
STDIO_INPUT = b"x" * 8191 + "\u20ac".encode() + b" ok \xff\xfe\n"


def test_stdio_decodes_and_encodes_as_the_standard_librarys(interp: Path) -> None:
    def run(python: str, *flags: str) -> bytes:
        return subprocess.run([python, *flags, "-c", STDIO_PROBE], input=STDIO_INPUT, check=True,
                              capture_output=True, env={}).stdout
    ours = run(str(interp / "python3"), "-Xutf8")
    assert ours == run(SYSTEM_PYTHON, "-I", "-S", "-Xutf8")
    assert b" 8199\n" in ours and b"\xff\xfe" in ours   # the whole input, invalid bytes kept


def test_installed_launchers_use_it() -> None:
    launcher = Path(pyrunc_binary())
    first = launcher.read_text().splitlines()[0]
    shim_first = (launcher.parent / "pyrunc-shim").read_text().splitlines()[0]
    interpreter = first[2:].split()[0]
    assert interpreter.endswith("/lib/pyrunc/python3") and shim_first.startswith(f"#!{interpreter} ")
    assert os.path.realpath(interpreter) == os.path.realpath(SYSTEM_PYTHON)
    assert Path(interpreter + "._pth").read_text().splitlines()[0] == str(Path(interpreter).parent / "interp")
    code = "import sys; print(sorted(m for m in sys.modules if m.startswith('encodings')))"
    assert _run(interpreter, code, "-ISXutf8").strip() == "['encodings']"
