"""Self-tests for tests/filecheck_plugin.py (the .qir FileCheck collector).

They run the collector on small temporary .qir files whose RUN lines only use
coreutils, `not` and `filecheck` -- never the `qir` command.
"""

from __future__ import annotations

import textwrap

import pytest

import filecheck_plugin

pytest_plugins = ["pytester"]


def _write(pytester: pytest.Pytester, name: str, text: str):
    path = pytester.path / "filecheck" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "-rA", *args, plugins=[filecheck_plugin])


# `grep -v '//'` drops the comment lines, so CHECK lines cannot match themselves.
PASSING = """
    // RUN: grep -v '//' %s | sed -e 's/apple/banana/' | filecheck %s
    // CHECK: banana pie
    // CHECK-NEXT: {{[0-9]+}} slices
    apple pie
    12 slices
"""


def test_passing_case(pytester: pytest.Pytester) -> None:
    _write(pytester, "ok.qir", PASSING)
    res = _run(pytester)
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["PASSED filecheck/ok.qir::case0"])


def test_wrong_check_fails_with_readable_report(pytester: pytest.Pytester) -> None:
    _write(pytester, "bad.qir", PASSING.replace("CHECK: banana pie", "CHECK: cherry pie"))
    res = _run(pytester)
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    src = str(pytester.path / "filecheck" / "bad.qir")
    # location, raw and substituted RUN line, exit code, filecheck's stderr
    assert "filecheck/bad.qir:1-5 (case 0)" in out
    assert "RUN line 1 of 1 exited with code 1" in out
    assert "RUN line (filecheck/bad.qir:1):  grep -v '//' %s |" in out
    assert f"$ grep -v '//' {src} | sed -e 's/apple/banana/' | filecheck {src}" in out
    assert "--- stderr" in out and "cherry pie" in out
    assert "--- reproduce ---" in out
    # short summary line carries the message; no Python traceback anywhere
    res.stdout.fnmatch_lines(["FAILED filecheck/bad.qir::case0 - RUN line 1/1 exited with code 1*"])
    assert "Traceback" not in out
    assert "filecheck_plugin.py" not in out
    assert "def runtest" not in out


def test_not(pytester: pytest.Pytester) -> None:
    _write(pytester, "not_ok.qir", "// RUN: not false\n// RUN: not not true\n")
    _write(pytester, "not_true.qir", "// RUN: not true\n")
    _write(pytester, "not_missing.qir", "// RUN: not this-command-does-not-exist-qir\n")
    _write(pytester, "not_crash.qir", "// RUN: not bash -c 'kill -SEGV $$'\n")
    _write(pytester, "not_crash_ok.qir", "// RUN: not --crash bash -c 'kill -SEGV $$'\n")
    res = _run(pytester)
    res.assert_outcomes(passed=2, failed=3)
    res.stdout.fnmatch_lines_random(
        [
            "PASSED filecheck/not_ok.qir::case0",
            "PASSED filecheck/not_crash_ok.qir::case0",
            "FAILED filecheck/not_true.qir::case0*",
            "FAILED filecheck/not_missing.qir::case0*",
            "FAILED filecheck/not_crash.qir::case0*",
        ]
    )
    assert "not: command not found: this-command-does-not-exist-qir" in res.stdout.str()


SPLIT = """
    // RUN: grep -n '^marker' %s | filecheck %s
    // RUN: test "$(basename %s)" = split.qir

    // CHECK-NOT: marker-b
    // CHECK: 6:marker-a
    marker-a
    // CHECK-NOT: marker

    // -----

    // CHECK-NOT: marker-a
    // CHECK: 13:marker-b
    marker-b
    // CHECK-NOT: marker-c

    // -----
    // CHECK: 19:marker-c
    // CHECK-NOT: marker
    marker-c
"""


def test_split_cases_are_items_with_original_line_numbers(pytester: pytest.Pytester) -> None:
    path = _write(pytester, "split.qir", SPLIT)
    lines = path.read_text().splitlines()
    assert lines[5] == "marker-a" and lines[12] == "marker-b" and lines[18] == "marker-c"

    res = _run(pytester, "--collect-only", "-q")
    res.stdout.fnmatch_lines(
        ["filecheck/split.qir::case0", "filecheck/split.qir::case1", "filecheck/split.qir::case2"]
    )

    res = _run(pytester)
    res.assert_outcomes(passed=3)

    # one case can be selected by node id
    res = _run(pytester, "filecheck/split.qir::case1")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["PASSED filecheck/split.qir::case1"])


def test_split_case_failure_only_affects_that_case(pytester: pytest.Pytester) -> None:
    _write(pytester, "split.qir", SPLIT.replace("CHECK: 13:marker-b", "CHECK: 12:marker-b"))
    res = _run(pytester)
    res.assert_outcomes(passed=2, failed=1)
    res.stdout.fnmatch_lines(["FAILED filecheck/split.qir::case1 - *"])
    assert "filecheck/split.qir:10-15 (case 1)" in res.stdout.str()


def test_split_header_only_chunk_is_skipped(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        "hdr.qir",
        """
        // RUN: grep -c '^x' %s | filecheck %s

        // -----
        // CHECK: {{^}}1{{$}}
        x
        // -----
        // CHECK: {{^}}2{{$}}
        x
        x
        """,
    )
    res = _run(pytester, "--collect-only", "-q")
    res.stdout.fnmatch_lines(["filecheck/hdr.qir::case1", "filecheck/hdr.qir::case2"])
    assert "hdr.qir::case0" not in res.stdout.str()
    _run(pytester).assert_outcomes(passed=2)


def test_substitutions_and_continuation(pytester: pytest.Pytester) -> None:
    path = _write(
        pytester,
        "subst.qir",
        """
        // RUN: test %s = %S/subst.qir
        // RUN: test -f %s && test -d %S && test ! -e %t
        // RUN: echo hello-%%s > %t && cat %t \\
        // RUN:   | filecheck %s
        // RUN: cat | wc -c | filecheck %s --check-prefix=STDIN
        // RUN: pwd | filecheck %s --check-prefix=CWD -DROOT=ROOTDIR
        // CHECK: {{^}}hello-%s{{$}}
        // STDIN: {{^ *0$}}
        // CWD: {{^}}ROOTDIR{{$}}
        """.replace("ROOTDIR", "{root}"),
    )
    path.write_text(path.read_text().replace("{root}", str(pytester.path)))
    _run(pytester).assert_outcomes(passed=1)


def test_no_run_line_and_bad_continuation_fail(pytester: pytest.Pytester) -> None:
    _write(pytester, "norun.qir", "// CHECK: x\n")
    _write(pytester, "cont.qir", "// RUN: echo x \\\n// CHECK: x\n")
    res = _run(pytester)
    res.assert_outcomes(failed=2)
    out = res.stdout.str()
    assert "no '// RUN:' line in the file" in out
    assert "is not a '// RUN:' continuation" in out


def test_first_failing_run_line_stops_the_case(pytester: pytest.Pytester) -> None:
    _write(
        pytester, "stop.qir", "// RUN: true\n// RUN: echo boom >&2; false\n// RUN: touch %S/ran\n"
    )
    res = _run(pytester)
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "RUN line 2 of 3 exited with code 1" in out
    assert "(passed) RUN line 1: true" in out
    assert "boom" in out
    assert not (pytester.path / "filecheck" / "ran").exists()


def test_timeout(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(filecheck_plugin.TIMEOUT_ENV, "0.5")
    _write(pytester, "slow.qir", "// RUN: sleep 30 | cat\n")
    res = _run(pytester)
    res.assert_outcomes(failed=1)
    assert "timed out after 0.5 s" in res.stdout.str()
    assert res.duration < 20


def test_only_files_under_a_filecheck_dir_are_collected(pytester: pytest.Pytester) -> None:
    (pytester.path / "inputs").mkdir()
    (pytester.path / "inputs" / "model.qir").write_text("func @f() {}\n")
    _write(pytester, "ok.qir", PASSING)
    res = _run(pytester, "--collect-only", "-q")
    res.stdout.fnmatch_lines(["filecheck/ok.qir::case0", "*1 test collected*"])


def test_parse_helpers() -> None:
    lines = ["// RUN: a \\", "//RUN:   b", "x", "  // -----  ", "y", "// -----", "z"]
    runs = filecheck_plugin.parse_run_lines(lines)
    assert runs == [filecheck_plugin.RunLine(1, "a b")]
    cases = filecheck_plugin.split_cases(lines)
    assert [(c.first_line, c.last_line) for c in cases] == [(1, 3), (5, 5), (7, 7)]
    assert cases[1].text == "\n\n\n\ny\n"
    assert cases[2].text.splitlines()[6] == "z"
    subs = {"%s": "IN", "%S": "DIR", "%t": "TMP", "%%": "%"}
    assert filecheck_plugin.substitute("%s %S %t %%s %%%s", subs) == "IN DIR TMP %s %IN"


def test_truncate() -> None:
    text = "\n".join(f"line{i}" for i in range(1000)) + "\n"
    short = filecheck_plugin._truncate(text, full=False)
    assert len(short) == filecheck_plugin._MAX_LINES + 1
    assert short[0] == "line0" and short[-1] == "line999"
    assert "880 lines omitted" in short[filecheck_plugin._HEAD_LINES]
    assert len(filecheck_plugin._truncate(text, full=True)) == 1000
    assert filecheck_plugin._truncate("", full=False) == []
