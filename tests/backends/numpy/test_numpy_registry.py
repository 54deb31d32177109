"""The numpy backend implements every declared op and stays pure numpy."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import qir
from backends.numpy import numpy_impl, numpy_impls
from qir import QirError

BACKEND_DIR = Path(__file__).resolve().parents[3] / "backends" / "numpy"


_COVERAGE = """
import json, qir, backends.numpy
print(json.dumps(sorted(set(qir.all_ops()) - set(backends.numpy.numpy_impls()))))
"""


def test_every_op_has_a_numpy_implementation():
    # In a fresh interpreter: other tests may declare throwaway ops in this process.
    proc = subprocess.run([sys.executable, "-c", _COVERAGE], capture_output=True, text=True,
                          check=True)
    missing = json.loads(proc.stdout)
    assert not missing, f"ops without a numpy implementation: {', '.join(missing)}"
    assert set(numpy_impls()) >= {n for n in qir.all_ops() if n.startswith("qir.")}


def test_no_implementation_for_undeclared_ops():
    unknown = sorted(set(numpy_impls()) - set(qir.all_ops()))
    assert not unknown, f"numpy implementations of undeclared ops: {', '.join(unknown)}"


def test_registering_twice_is_an_error():
    with pytest.raises(QirError, match="qir.relu already has a numpy implementation"):
        numpy_impl("qir.relu")(lambda op, x: x)


def test_backend_imports_neither_torch_nor_scipy():
    sources = sorted(BACKEND_DIR.glob("*.py"))
    assert sources
    pattern = re.compile(r"^\s*(import|from)\s+(torch|scipy)\b", re.MULTILINE)
    offenders = [p.name for p in sources if pattern.search(p.read_text())]
    assert not offenders, f"backends/numpy must be pure numpy: {offenders}"
