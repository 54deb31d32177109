"""pytest collector for FileCheck-style (LLVM lit / MLIR) compiler tests.

Loaded from ``tests/conftest.py``. Every ``*.qir`` file that lies in a directory
named ``filecheck`` (normally ``tests/filecheck/**``) is a test file::

    // RUN: qir opt %s -p canonicalize | filecheck %s
    // RUN: not qir verify %s 2>&1 | filecheck %s --check-prefix=ERR

    // CHECK-LABEL: func @main
    // CHECK: qir.relu
    func @main(%x: tensor<2xf32>) -> (tensor<2xf32>) { ... }

    // -----

    // CHECK-LABEL: func @other
    ...

Conventions (a subset of lit + MLIR's ``--split-input-file``):

RUN lines
    Every ``// RUN: <cmd>`` line anywhere in the file is a shell pipeline; a line
    ending in ``\\`` continues on the next ``// RUN:`` line. Each pipeline runs,
    in file order, as ``bash -o pipefail -c <cmd>`` with cwd = the pytest rootdir
    (the repo root), stdin = /dev/null and a timeout of 60 s (env var
    ``QIR_FILECHECK_TIMEOUT`` overrides; on timeout the whole process group is
    killed). The first one that exits non-zero fails the test; later ones are
    not run. A file with no RUN line fails.

Substitutions (in RUN lines)
    ``%s``  the test input: the ``.qir`` file itself, or for a split file the
            current case's file (see below); always an absolute path
    ``%S``  the directory of the original source file (for sibling inputs)
    ``%t``  a per-case temporary path (not created; use as file or ``mkdir %t``)
    ``%%``  a literal ``%`` (e.g. ``printf '%%s'``)
    Paths are shell-quoted only when they need it.

PATH
    ``tests/bin`` (provides ``not``) and the directory of ``sys.executable``
    (the venv: ``qir``, ``filecheck``, ``python``) are prepended to ``$PATH``.
    ``not CMD`` exits 0 iff CMD exits non-zero; it fails if CMD is missing or
    killed by a signal (``not --crash CMD`` expects a signal).

Split files
    Lines that are exactly ``// -----`` (surrounding whitespace ignored) split
    the file into cases; each case is its own pytest item, ``<file>::case0``,
    ``<file>::case1``, ... (a file without separators is one item, ``case0``).
    For each case the plugin writes a temporary copy of the file, with the same
    basename, that contains only that case's lines *at their original line
    numbers* (everything else is blanked), so ``file:line:col`` diagnostics and
    ``[[# @LINE]]`` agree with the original file. ``%s`` points to that copy, so
    the compiler sees only the case, and FileCheck, given ``%s`` as its check
    file, only sees that case's CHECK lines. All RUN lines (normally in the
    header, i.e. case 0) apply to every case. A case made only of blank and RUN
    lines (e.g. a header-only first chunk) is not collected; the remaining cases
    keep their positional numbers.

Failures are reported without a Python traceback: the RUN line before and after
substitution, the exit code, stdout and stderr (truncated unless ``-vv``), the
case's location in the source file and a command to reproduce it by hand.
Every item carries the ``filecheck`` marker (``-m "not filecheck"`` skips them).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

SPLIT_MARKER = "// -----"
DEFAULT_TIMEOUT_S = 60.0
TIMEOUT_ENV = "QIR_FILECHECK_TIMEOUT"
TEST_SUFFIX = ".qir"
TEST_DIR_NAME = "filecheck"
MARKER = "filecheck"

_TESTS_DIR = Path(__file__).resolve().parent
_BIN_DIR = _TESTS_DIR / "bin"

_RUN_RE = re.compile(r"^\s*//\s*RUN:(.*)$")
_SUBST_RE = re.compile(r"%[%sSt]")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Output truncation (disabled with -vv).
_MAX_LINES = 120
_HEAD_LINES = 40
_MAX_LINE_CHARS = 400


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class RunLine:
    lineno: int  # 1-based line of the first physical `// RUN:` line
    command: str


@dataclass(frozen=True)
class Case:
    index: int
    first_line: int  # 1-based, inclusive
    last_line: int  # 1-based, inclusive
    text: str  # file text with everything but this case blanked (same line numbers)


class RunParseError(Exception):
    pass


def _split_lines(text: str) -> list[str]:
    # Only "\n" counts as a line break (like the compiler's line:col), not \f, \v, ...
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def parse_run_lines(lines: list[str]) -> list[RunLine]:
    runs: list[RunLine] = []
    pending: list[str] = []
    pending_line = 0
    for i, line in enumerate(lines, start=1):
        m = _RUN_RE.match(line)
        if m is None:
            if pending:
                raise RunParseError(
                    f"line {pending_line}: RUN line ends with '\\' but line {i} "
                    "is not a '// RUN:' continuation"
                )
            continue
        part = m.group(1).strip()
        if not pending:
            pending_line = i
        if part.endswith("\\"):
            pending.append(part[:-1].strip())
            continue
        pending.append(part)
        command = " ".join(p for p in pending if p)
        if not command:
            raise RunParseError(f"line {pending_line}: empty RUN line")
        runs.append(RunLine(pending_line, command))
        pending = []
    if pending:
        raise RunParseError(f"line {pending_line}: RUN line continued ('\\') at end of file")
    return runs


def split_cases(lines: list[str]) -> list[Case]:
    """Split at `// -----` lines. Returns every chunk (including trivial ones)."""
    seps = [i for i, line in enumerate(lines) if line.strip() == SPLIT_MARKER]
    bounds = []
    start = 0
    for s in seps:
        bounds.append((start, s))
        start = s + 1
    bounds.append((start, len(lines)))
    cases = []
    for index, (a, b) in enumerate(bounds):
        text = "\n" * a + "".join(line + "\n" for line in lines[a:b])
        cases.append(Case(index, a + 1, b, text))
    return cases


def _is_trivial(lines: list[str], case: Case) -> bool:
    """True if the case holds nothing but blank lines and RUN lines."""
    body = lines[case.first_line - 1 : case.last_line]
    return all(not line.strip() or _RUN_RE.match(line) for line in body)


def substitute(command: str, subs: dict[str, str]) -> str:
    return _SUBST_RE.sub(lambda m: subs[m.group(0)], command)


# --------------------------------------------------------------------------- running


@dataclass
class RunResult:
    run: RunLine
    command: str  # after substitution
    returncode: int | None  # None: timed out
    stdout: str
    stderr: str
    timeout: float


def _decode(data: bytes | None) -> str:
    if not data:
        return ""
    return _ANSI_RE.sub("", data.decode("utf-8", errors="replace"))


def _run_shell(command: str, cwd: Path, env: dict[str, str], timeout: float, run: RunLine):
    bash = shutil.which("bash") or "/bin/bash"
    proc = subprocess.Popen(
        [bash, "-o", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # own process group, so a timeout kills the whole pipeline
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a daemonised grandchild holds the pipes
            proc.kill()
            out, err = b"", b""
        rc = None
    return RunResult(run, command, rc, _decode(out), _decode(err), timeout)


def _timeout() -> float:
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return DEFAULT_TIMEOUT_S
    try:
        return float(value)
    except ValueError:
        raise pytest.UsageError(f"{TIMEOUT_ENV}={value!r} is not a number") from None


_bin_dir_cache: str | None = None


def _bin_dir() -> str:
    """tests/bin, or an executable copy of it if the checkout lost the exec bits."""
    global _bin_dir_cache
    if _bin_dir_cache is None:
        tool = _BIN_DIR / "not"
        if os.access(tool, os.X_OK):
            _bin_dir_cache = str(_BIN_DIR)
        else:
            copy_dir = Path(tempfile.mkdtemp(prefix="qir-filecheck-bin-"))
            for src in _BIN_DIR.iterdir():
                if src.is_file():
                    dst = copy_dir / src.name
                    shutil.copyfile(src, dst)
                    dst.chmod(dst.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            _bin_dir_cache = str(copy_dir)
    return _bin_dir_cache


def _tool_path_dirs() -> list[str]:
    return [_bin_dir(), os.path.dirname(sys.executable)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([*_tool_path_dirs(), env.get("PATH", "")])
    return env


# --------------------------------------------------------------------------- reporting


class FileCheckFailure(Exception):
    """Raised by FileCheckItem.runtest; rendered by repr_failure without a traceback."""

    def __init__(self, summary: str, details: list[str]):
        super().__init__(summary)
        self.summary = summary
        self.details = details


class _Crash:
    def __init__(self, path: str, lineno: int, message: str):
        self.path = path
        self.lineno = lineno
        self.message = message


class FileCheckRepr:
    """Minimal TerminalRepr look-alike: plain text plus a one-line `reprcrash` message
    (used by the short test summary and junitxml). Serialised as str() under xdist."""

    def __init__(self, lines: list[str], crash: _Crash):
        self.lines = lines
        self.reprcrash = crash
        self.sections: list[tuple[str, str, str]] = []

    def toterminal(self, tw) -> None:
        for line in self.lines:
            if line.startswith("==> "):
                tw.line(line, bold=True, red=True)
            elif line.startswith("--- ") or line.startswith("$ "):
                tw.line(line, bold=True)
            else:
                tw.line(line)

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _truncate(text: str, full: bool) -> list[str]:
    lines = text.rstrip("\n").split("\n") if text.strip() else []
    if full:
        return lines
    lines = [
        line if len(line) <= _MAX_LINE_CHARS else line[:_MAX_LINE_CHARS] + " [...]"
        for line in lines
    ]
    if len(lines) <= _MAX_LINES:
        return lines
    tail = _MAX_LINES - _HEAD_LINES
    omitted = len(lines) - _MAX_LINES
    return [
        *lines[:_HEAD_LINES],
        f"[... {omitted} lines omitted, run with -vv to see everything ...]",
        *lines[-tail:],
    ]


def _first_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower():
            return line
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------- collection


def _is_filecheck_test(file_path: Path, rootpath: Path) -> bool:
    if file_path.suffix != TEST_SUFFIX:
        return False
    try:
        parts = file_path.relative_to(rootpath).parent.parts
    except ValueError:
        parts = file_path.parent.parts
    return TEST_DIR_NAME in parts


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: FileCheck-style .qir test collected by tests/filecheck_plugin.py"
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if _is_filecheck_test(file_path, parent.config.rootpath):
        return FileCheckFile.from_parent(parent, path=file_path)
    return None


class FileCheckFile(pytest.File):
    def collect(self):
        text = self.path.read_text(encoding="utf-8")
        lines = _split_lines(text)
        error: str | None = None
        runs: list[RunLine] = []
        try:
            runs = parse_run_lines(lines)
        except RunParseError as e:
            error = f"malformed RUN line: {e}"
        if error is None and not runs:
            error = "no '// RUN:' line in the file"
        cases = split_cases(lines)
        split = len(cases) > 1
        if split:
            kept = [c for c in cases if not _is_trivial(lines, c)]
            cases = kept or cases[:1]
        for case in cases:
            item = FileCheckItem.from_parent(
                self, name=f"case{case.index}", case=case, runs=runs, split=split, error=error
            )
            item.add_marker(MARKER)
            yield item


class FileCheckItem(pytest.Item):
    def __init__(
        self,
        *,
        case: Case,
        runs: list[RunLine],
        split: bool,
        error: str | None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.case = case
        self.runs = runs
        self.split = split
        self.error = error

    # -- helpers
    @property
    def _relpath(self) -> str:
        return self.nodeid.split("::", 1)[0]

    @property
    def _location_str(self) -> str:
        c = self.case
        return f"{self._relpath}:{c.first_line}-{c.last_line} (case {c.index})"

    def _make_tmpdir(self) -> Path:
        name = re.sub(r"[^\w.-]", "_", f"{self.path.stem}-case{self.case.index}")[:40]
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None:
            try:
                return factory.mktemp(name, numbered=True)
            except Exception:  # pragma: no cover - fall back to a plain temp dir
                pass
        return Path(tempfile.mkdtemp(prefix=f"{name}-"))

    # -- pytest API
    def runtest(self) -> None:
        if self.error:
            raise FileCheckFailure(self.error, [f"==> {self._relpath}: {self.error}"])

        tmpdir = self._make_tmpdir()
        if self.split:
            input_path = tmpdir / self.path.name
            input_path.write_text(self.case.text, encoding="utf-8")
        else:
            input_path = self.path.resolve()
        subs = {
            "%s": shlex.quote(str(input_path)),
            "%S": shlex.quote(str(self.path.resolve().parent)),
            "%t": shlex.quote(str(tmpdir / f"{self.path.name}.tmp")),
            "%%": "%",
        }
        env = _env()
        cwd = self.config.rootpath
        timeout = _timeout()
        done: list[RunResult] = []
        for run in self.runs:
            result = _run_shell(substitute(run.command, subs), cwd, env, timeout, run)
            if result.returncode != 0:
                raise self._failure(result, done, input_path, subs, cwd)
            done.append(result)

    def _failure(self, res, done, input_path, subs, cwd) -> FileCheckFailure:
        full = self.config.getoption("verbose", 0) >= 2
        nruns = len(self.runs)
        k = self.runs.index(res.run) + 1
        if res.returncode is None:
            status = f"timed out after {res.timeout:g} s"
        else:
            status = f"exited with code {res.returncode}"
        summary = f"RUN line {k}/{nruns} {status}"
        err = _first_error_line(res.stderr).replace(str(input_path), self._relpath)
        if err:
            summary += f": {err}"
        out: list[str] = [
            f"==> {self._location_str}: RUN line {k} of {nruns} {status}",
            f"RUN line ({self._relpath}:{res.run.lineno}):  {res.run.command}",
            f"$ {res.command}",
        ]
        if self.split:
            out.append(
                f"%s = case {self.case.index} only (lines {self.case.first_line}-"
                f"{self.case.last_line}, other lines blank): {input_path}"
            )
        for prev in done:
            out.append(f"(passed) RUN line {self.runs.index(prev.run) + 1}: {prev.command}")
        for name, text in (("stdout", res.stdout), ("stderr", res.stderr)):
            body = _truncate(text, full)
            nlines = len(text.splitlines())
            out.append(f"--- {name} ({nlines} lines) ---" if body else f"--- {name}: (empty)")
            out.extend(body)
        path_dirs = os.pathsep.join(_tool_path_dirs())
        out.append("--- reproduce ---")
        out.append(
            f"cd {shlex.quote(str(cwd))} && PATH={shlex.quote(path_dirs)}:$PATH "
            f"bash -o pipefail -c {shlex.quote(res.command)}"
        )
        return FileCheckFailure(summary, out)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, FileCheckFailure):
            e = excinfo.value
            return FileCheckRepr(e.details, _Crash(str(self.path), self.case.first_line, e.summary))
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, self.case.first_line - 1, f"{self._relpath}::{self.name}"
