"""docs/debugging.md runs as written: its ```sh blocks run in order in one scratch
directory, and each ```text block right after one is output that block must print.

Conventions (stated in the doc too):
- ```sh blocks expect exit status 0; ```sh exit=2 expects 2 (qir diff on different files).
- A ```text block is an excerpt: its lines must appear in the output in order and
  consecutively, except that a line `...` skips any number of output lines; `...` inside
  a line matches anything (paths that differ between checkouts). Trailing spaces are
  ignored. Numbers match within 2% + 0.2: scales, multipliers and dB figures move in
  their last digits with the BLAS build and thread count, the words around them do not.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "debugging.md"
FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```\s*$", re.S | re.M)


@dataclass
class Block:
    kind: str
    info: str
    body: str
    line: int  # where the block starts in the doc


def blocks(text: str) -> list[Block]:
    return [Block(m.group(1), m.group(2).strip(), m.group(3),
                  text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]


def steps(text: str) -> list[tuple[Block, list[Block]]]:
    """Each sh block with the text blocks that follow it (before the next sh block)."""
    out: list[tuple[Block, list[Block]]] = []
    for b in blocks(text):
        if b.kind == "sh":
            out.append((b, []))
        elif b.kind == "text" and out:
            out[-1][1].append(b)
    return out


NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _line_pattern(want: str) -> tuple[re.Pattern, list[float]]:
    """A regex for one expected line: `...` matches anything, numbers match any number
    (compared afterwards with a tolerance)."""
    parts, numbers = [], []
    for chunk in want.split("..."):
        pos, pieces = 0, []
        for m in NUMBER.finditer(chunk):
            pieces.append(re.escape(chunk[pos:m.start()]))
            pieces.append(f"({NUMBER.pattern})")
            numbers.append(float(m.group()))
            pos = m.end()
        pieces.append(re.escape(chunk[pos:]))
        parts.append("".join(pieces))
    return re.compile(".*".join(parts) + r"\Z"), numbers


def _line_matches(pattern: re.Pattern, numbers: list[float], line: str) -> bool:
    m = pattern.match(line)
    if not m:
        return False
    got = [float(g) for g in m.groups()]
    return all(abs(a - b) <= 0.02 * abs(a) + 0.2 for a, b in zip(numbers, got))


def matches(expected: str, output: str) -> str | None:
    """None when `expected` (a text block) is found in `output`; else what is missing."""
    lines = [line.rstrip() for line in output.splitlines()]
    i = 0
    skipping = True  # an excerpt starts anywhere
    for want in (w.rstrip() for w in expected.splitlines()):
        if want == "...":
            skipping = True
            continue
        pattern, numbers = _line_pattern(want)
        while i < len(lines) and not _line_matches(pattern, numbers, lines[i]):
            if not skipping:
                return f"expected line {want!r}, got {lines[i]!r}"
            i += 1
        if i == len(lines):
            return f"line {want!r} not found (in order)"
        i += 1
        skipping = False
    return None


def test_walkthrough_runs_as_written(tmp_path):
    text = DOC.read_text()
    plan = steps(text)
    assert len(plan) >= 8, "the walkthrough lost its commands"
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    env.pop("NO_COLOR", None)
    for sh, outputs in plan:
        want_code = int(sh.info.split("exit=")[1]) if "exit=" in sh.info else 0
        r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", sh.body], cwd=tmp_path,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=600)
        where = f"docs/debugging.md:{sh.line}"
        assert r.returncode == want_code, f"{where}: exit {r.returncode}\n{r.stdout}"
        assert "Traceback" not in r.stdout, f"{where}:\n{r.stdout}"
        for block in outputs:
            problem = matches(block.body, r.stdout)
            assert problem is None, (f"docs/debugging.md:{block.line}: {problem}\n"
                                     f"--- actual output of {where} ---\n{r.stdout}")


def test_matching_rules():
    out = "a\nb 1.0\nc /x/y/z.py:3\nd\n"
    assert matches("a\nb 1.0", out) is None
    assert matches("b 1.0", out) is None          # an excerpt starts anywhere
    assert matches("a\n...\nd", out) is None
    assert matches("c .../z.py:3", out) is None
    assert matches("a\nc ...", out) is not None   # no skip without `...`
    assert matches("b 2.0", out) is not None
    assert matches("d\na", out) is not None       # order matters
