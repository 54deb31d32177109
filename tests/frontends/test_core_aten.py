"""Core ATen coverage (frontends/core_aten.py): every Core ATen inference op of the
installed torch has a converter, is folded at import, or is a gap listed with its
reason; a listed gap that gains a converter must leave the list; the table in
docs/frontend.md is current."""

from __future__ import annotations

import re
from pathlib import Path

from frontends import core_aten

DOC = Path(__file__).resolve().parents[2] / "docs" / "frontend.md"


def test_every_core_inference_op_is_supported_or_a_listed_gap():
    unexplained = [r.target for r in core_aten.coverage()
                   if r.status == "gap" and r.target not in core_aten.GAPS]
    assert not unexplained, ("Core ATen ops with neither a converter nor a reason in "
                             f"frontends/core_aten.py GAPS: {unexplained}")


def test_the_gap_list_only_shrinks():
    status = {r.target: r.status for r in core_aten.coverage()}
    stale = [t for t in core_aten.GAPS if status.get(t) != "gap"]
    assert not stale, f"these have a converter now (or left Core ATen): drop them: {stale}"


def test_core_aten_table_is_up_to_date():
    m = re.search(r"<!-- BEGIN core-aten -->\n(.*)<!-- END core-aten -->", DOC.read_text(),
                  re.S)
    assert m, "docs/frontend.md lacks the core-aten markers"
    assert m.group(1) == core_aten.markdown(), "docs/frontend.md is stale: run make docs"
