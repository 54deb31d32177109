"""The house rule of docs/architecture.md, checked on the source: qir/ imports none of
frontends/, passes/, backends/ (its CLI excepted, which imports them lazily); a backend
imports no pass; neither backend imports the other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package, forbidden", [
    ("qir", ("frontends", "passes", "backends")),
    ("backends/numpy", ("passes", "backends.tvm")),
    ("backends/tvm", ("passes", "backends.numpy")),
])
def test_imports_flow_one_way(package, forbidden):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if package == "qir" and "cli" in path.parts or path.name == "demo.py":
            continue  # the CLI and the demo sit on top of everything
        for name in imported_packages(path):
            if name.split(".")[0] in forbidden or any(name.startswith(f + ".") or name == f
                                                       for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)
