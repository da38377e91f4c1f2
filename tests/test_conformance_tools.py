"""The conformance runners' own logic (pure): TAP counting and program verdicts of
conformance/runtime_tools.py, on output shaped like runtime-tools' programs."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "conformance"))
import runtime_tools as rt


def _verdict(stdout: str, rc: int = 0) -> dict:
    return rt.rescore([{"name": "p", "rc": rc, "stdout": stdout}])[0]


def test_points_plans_and_skips_are_counted():
    r = _verdict("TAP version 13\nok 1 - a\nnot ok 2 - b\n# expect: 1\nok 3 # SKIP no\n1..3\n")
    assert (r["ok"], r["not_ok"], r["skip"], r["plan"]) == (2, 1, 1, 3)
    assert not r["passed"] and r["failures"] == ["not ok 2 - b"]


def test_several_streams_add_their_plans():
    r = _verdict("TAP version 13\nok 1 - a\n1..1\nTAP version 13\nok 1 - b\nok 2 - c\n1..2\n")
    assert r["plan"] == 3 and r["ok"] == 3 and r["passed"]


def test_error_diagnostic_before_any_point_fails_the_program():
    # hooks/prestart style: the only sign of failure is a YAML "error" and plan 1..0
    r = _verdict('TAP version 13\n  ---\n  {\n    "error": "Hooks MUST be called in order"\n'
                 "  }\n  ...\n1..0\n")
    assert r["ok"] == r["not_ok"] == 0 and not r["passed"]
    assert r["orphan_errors"]


def test_error_diagnostic_of_a_passing_point_does_not_count():
    # state style: an ok point, a continuation line, then a YAML block that records the
    # (expected) error of the runtime call
    r = _verdict('TAP version 13\nok 1 - state MUST error\nRefer to: x\n  ---\n  {\n'
                 '    "error": "exit status 1",\n    "reference": "y"\n  }\n  ...\n1..1\n')
    assert r["passed"] and not r["orphan_errors"]


def test_no_output_and_exit_0_passes_but_exit_1_fails():
    # the *_fail programs print nothing when the runtime refuses the config as it must
    assert _verdict("")["passed"]
    assert not _verdict("", rc=1)["passed"]
    assert not _verdict("TAP version 13\nok 1 - a\n1..2\n")["passed"]  # incomplete plan
