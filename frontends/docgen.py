"""`python -m frontends.docgen`: regenerate the generated tables of docs/frontend.md (the
supported ops and the Core ATen coverage, between their `<!-- BEGIN ... -->` markers;
tests fail when they are stale). `make docs` runs it with qir's own generator."""

from __future__ import annotations

import sys
from pathlib import Path

from frontends import core_aten, supported_ops_markdown
from qir.docgen import render

DOC = Path(__file__).resolve().parents[1] / "docs" / "frontend.md"


def main() -> int:
    DOC.write_text(render(DOC.read_text(), {"supported-ops": supported_ops_markdown,
                                            "core-aten": core_aten.markdown}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
