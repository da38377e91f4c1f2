"""Give the installed tree its own interpreter entry: `python3 -I -S pyrunc/_interp.py DIR LIBDIR`
(make install, run by the interpreter the launchers will use; DIR is where the tree is being
built, LIBDIR where it will live).

It writes, in DIR:
- python3: a symlink to this interpreter's binary; the launchers name it in their #! line.
- python3._pth: CPython reads a file of that name beside the executable it was started as and
  takes sys.path from it, whole (and runs isolated, without site). Ours puts interp/ first,
  then the standard library's directories that exist: the same path `python3 -I -S` has,
  minus the absent python3XY.zip, plus interp/.
- interp/encodings/__init__.py, from pyrunc/_encodings.py: the start-up's codec lookup
  without the standard encodings package (that file says why).
- lib/pythonX.Y: a symlink to the standard library. With a ._pth file, CPython takes the
  file's directory as sys.prefix and looks for the standard library under it for what it
  derives from there (sys._stdlib_dir, the __file__ of frozen modules such as os and codecs,
  which tracebacks read their source lines from).
"""

import os
import shutil
import sys


def standard_paths() -> list[str]:
    """The directories this interpreter searches under -I -S, that exist."""
    return [path for path in sys.path if os.path.isdir(path)]


def write(tree: str, libdir: str) -> None:
    interp = os.path.join(tree, "interp", "encodings")
    os.makedirs(interp, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    shutil.copyfile(os.path.join(here, "_encodings.py"), os.path.join(interp, "__init__.py"))

    binary = os.path.realpath(sys.executable)
    link = os.path.join(tree, "python3")
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(binary, link)
    with open(link + "._pth", "w", encoding="utf-8") as pth:
        pth.write("".join(f"{path}\n" for path in [os.path.join(libdir, "interp"), *standard_paths()]))

    stdlib = sys._stdlib_dir  # type: ignore[attr-defined]
    lib = os.path.join(tree, "lib")
    os.makedirs(lib, exist_ok=True)
    stdlib_link = os.path.join(lib, os.path.basename(stdlib))
    if os.path.lexists(stdlib_link):
        os.unlink(stdlib_link)
    os.symlink(stdlib, stdlib_link)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python3 -I -S pyrunc/_interp.py DIR LIBDIR")
    write(sys.argv[1], sys.argv[2])
