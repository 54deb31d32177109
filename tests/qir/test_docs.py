"""The generated sections of docs/ir.md match the code."""

from qir.docgen import DOCS, render


def test_ir_doc_is_current():
    text = (DOCS / "ir.md").read_text()
    assert render(text) == text, "docs/ir.md is stale: run `python -m qir.docgen`"
