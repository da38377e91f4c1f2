#!/usr/bin/env python3
"""Run an externally built OCI runtime-tools validation tree against one runtime binary.

runtime-tools is not part of this repository and nothing here builds it (conformance/README.md
says how to build it yourself). The validation programs find the runtime through the RUNTIME
environment variable, and expect to run from the tree's root: they untar
rootfs-<arch>.tar.gz and copy ./runtimetest from the current directory into each bundle. So
each program runs with cwd = the tree, RUNTIME = the runtime, one after the other (they create
containers with fixed ids, so two at a time would collide).

The output is one row per program (ok, not ok, skipped, plan, verdict) and the totals; a
"test point" is one TAP `ok`/`not ok` line. A program passes when it exits 0, its plan is
complete and none of its points is `not ok` (a `# TODO` point does not count against it).
`--json FILE` writes the same numbers for comparing runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def parse_tap(text: str) -> dict:
    """Count a TAP stream's points; runtime-tools prints plain TAP 13 from tap-go.

    Some programs print several streams (one "TAP version" and plan each): the plans add up.
    Programs that check one lifecycle (hooks, poststart, ...) report a failure only as a YAML
    diagnostic with an "error" key before any test point, then plan 1..0: such an orphan
    error counts against the program (`orphan_errors`), though it is no test point.
    """
    ok = not_ok = skip = todo = 0
    plan = None
    bail = False
    failures: list[str] = []
    orphan_errors: list[str] = []
    points_in_stream = 0  # test points since the last "TAP version" line
    in_yaml = False
    yaml_orphan = False
    for line in text.splitlines():
        s = line.strip()
        if in_yaml:
            if s == "...":
                in_yaml = False
            elif yaml_orphan and s.startswith('"error":') and s not in ('"error": "",',
                                                                         '"error": ""'):
                orphan_errors.append(s[:300])
            continue
        if s == "---":
            in_yaml, yaml_orphan = True, points_in_stream == 0
            continue
        if s.startswith("TAP version"):
            points_in_stream = 0
        elif s.startswith(("ok", "not ok")):
            points_in_stream += 1
        if s.startswith("1.."):
            try:
                n = int(s[3:].split()[0]) if s[3:].split() else 0
                plan = n if plan is None else plan + n
            except ValueError:
                pass
        elif s.startswith("Bail out!"):
            bail = True
        elif s.startswith("not ok"):
            directive = s.partition("#")[2].strip().upper()
            if directive.startswith("TODO"):
                todo += 1
            else:
                not_ok += 1
                failures.append(s)
        elif s.startswith("ok"):
            ok += 1
            if s.partition("#")[2].strip().upper().startswith("SKIP"):
                skip += 1
    return {"ok": ok, "not_ok": not_ok, "skip": skip, "todo": todo, "plan": plan,
            "bail": bail, "failures": failures + orphan_errors, "orphan_errors": orphan_errors}


def programs(tree: Path) -> list[str]:
    """The built validation programs, by name, in a stable order."""
    names = []
    for d in sorted((tree / "validation").iterdir()):
        if (d / f"{d.name}.t").is_file() and os.access(d / f"{d.name}.t", os.X_OK):
            names.append(d.name)
    return names


def run_one(tree: Path, runtime: str, name: str, timeout: float) -> dict:
    """Run one program from the tree root; a hung program counts as failed, not as the end."""
    env = dict(os.environ, RUNTIME=runtime)
    t0 = time.monotonic()
    try:
        p = subprocess.run([f"validation/{name}/{name}.t"], cwd=tree, env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           errors="replace", timeout=timeout)
        out, err, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err, rc = f"timed out after {timeout:.0f}s", -1
    res = parse_tap(out)
    res.update(name=name, rc=rc, seconds=round(time.monotonic() - t0, 1),
               stdout=out, stderr=err[-4000:])
    points = res["ok"] + res["not_ok"] + res["todo"]
    # No TAP at all is how the *_fail programs pass: they only exit 1 (util.Fatal) on failure.
    complete = res["plan"] == points if res["plan"] is not None else points == 0
    res["passed"] = (rc == 0 and complete and res["not_ok"] == 0 and not res["bail"]
                     and not res["orphan_errors"])
    return res


def table(results: list[dict], runtime: str) -> str:
    """A fixed-width table and the totals line."""
    w = max([len(r["name"]) for r in results] + [7])
    lines = [f"runtime: {runtime}",
             f"{'program':<{w}}  {'ok':>5}  {'not ok':>6}  {'skip':>4}  {'plan':>5}  {'rc':>3}  result"]
    for r in results:
        plan = "-" if r["plan"] is None else str(r["plan"])
        lines.append(f"{r['name']:<{w}}  {r['ok']:>5}  {r['not_ok']:>6}  {r['skip']:>4}  {plan:>5}  "
                     f"{r['rc']:>3}  {'pass' if r['passed'] else 'FAIL'}")
    ok = sum(r["ok"] for r in results)
    nok = sum(r["not_ok"] for r in results)
    passed = sum(r["passed"] for r in results)
    lines.append(f"total: {ok} ok, {nok} not ok, {passed}/{len(results)} programs pass")
    return "\n".join(lines)


def rescore(results: list[dict]) -> list[dict]:
    """Re-derive every count and verdict from the saved TAP (old --json files stay comparable)."""
    for r in results:
        r.update(parse_tap(r["stdout"]))
        points = r["ok"] + r["not_ok"] + r["todo"]
        complete = r["plan"] == points if r["plan"] is not None else points == 0
        r["passed"] = (r["rc"] == 0 and complete and r["not_ok"] == 0 and not r["bail"]
                       and not r["orphan_errors"])
    return results


def compare(files: list[Path]) -> str:
    """A markdown table: one row per program, `ok/not ok` and the verdict per runtime."""
    runs = []
    for f in files:
        data = json.loads(f.read_text())
        runs.append((Path(data["runtime"]).name, {r["name"]: r for r in rescore(data["results"])}))
    names = sorted({n for _, res in runs for n in res})
    lines = ["| program | " + " | ".join(name for name, _ in runs) + " |",
             "|---|" + "---|" * len(runs)]
    for n in names:
        cells = []
        for _, res in runs:
            r = res.get(n)
            cells.append("-" if r is None else
                         f"{r['ok']}/{r['not_ok']} {'pass' if r['passed'] else 'FAIL'}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    totals = []
    for _, res in runs:
        rs = res.values()
        totals.append(f"{sum(r['ok'] for r in rs)}/{sum(r['not_ok'] for r in rs)}, "
                      f"{sum(r['passed'] for r in rs)} pass")
    lines.append("| **total** (ok/not ok, programs passing) | " + " | ".join(totals) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tree", type=Path, nargs="?", help="a runtime-tools work tree after "
                    "`make runtimetest validation-executables`")
    ap.add_argument("--compare", type=Path, nargs="+", metavar="JSON",
                    help="print a markdown table comparing earlier --json results, and exit")
    ap.add_argument("--runtime", default=os.environ.get("RUNTIME", "pyrunc"),
                    help="runtime binary (default: $RUNTIME, else pyrunc on PATH)")
    ap.add_argument("--only", nargs="*", default=None, help="run just these programs")
    ap.add_argument("--skip", nargs="*", default=[], help="leave these programs out")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per program")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print each program's not-ok lines and stderr tail")
    a = ap.parse_args(argv)
    if a.compare:
        print(compare(a.compare))
        return 0
    if a.tree is None:
        ap.error("the runtime-tools tree is required")
    tree = a.tree.resolve()
    if not (tree / "runtimetest").is_file():
        print(f"runtime_tools: {tree}/runtimetest missing: build the tree first "
              "(make runtimetest validation-executables)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("runtime_tools: the validation programs need root", file=sys.stderr)
        return 2
    runtime = a.runtime if "/" in a.runtime else (
        next((str(Path(d) / a.runtime) for d in os.environ.get("PATH", "").split(":")
              if (Path(d) / a.runtime).is_file()), a.runtime))
    names = [n for n in (a.only or programs(tree)) if n not in a.skip]
    results = []
    for n in names:
        r = run_one(tree, runtime, n, a.timeout)
        results.append(r)
        print(f"{n}: {r['ok']} ok, {r['not_ok']} not ok, {'pass' if r['passed'] else 'FAIL'} "
              f"({r['seconds']}s)", file=sys.stderr, flush=True)
        if a.verbose and not r["passed"]:
            for f in r["failures"][:20]:
                print("   ", f, file=sys.stderr)
            for line in r["stderr"].strip().splitlines()[-5:]:
                print("    stderr:", line, file=sys.stderr)
    print(table(results, runtime))
    if a.json:
        a.json.write_text(json.dumps({"runtime": runtime, "results": results}, indent=1))
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
