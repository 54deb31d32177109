"""Makes tvm_helpers (and the numpy backend's numpy_helpers) importable from the TVM
backend's tests (any import mode)."""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _path in (_HERE, _HERE.parent / "numpy"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
