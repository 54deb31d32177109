"""Generated parts of the docs: the op reference and the grammar in docs/ir.md.

`python -m qir.docgen` rewrites the text between the `<!-- BEGIN name -->` and
`<!-- END name -->` markers; a test fails when the checked-in docs are stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from qir.registry import REQUIRED, all_ops

DOCS = Path(__file__).resolve().parents[1] / "docs"


def op_reference() -> str:
    lines = []
    by_cat: dict[str, list] = {}
    for opdef in all_ops().values():
        if not opdef.name.startswith("qir."):
            continue  # user dialects (tests register some) are not qir's reference
        by_cat.setdefault(opdef.category, []).append(opdef)
    titles = {"core": "Core", "float": "Float compute",
              "any": "Float or integer (shape, data movement, elementwise)",
              "quant": "Quantization and integer compute"}
    for cat in ("core", "float", "any", "quant"):
        lines.append(f"### {titles[cat]}\n")
        lines.append("| op | operands | attributes (default) | meaning |")
        lines.append("|---|---|---|---|")
        for d in by_cat.get(cat, []):
            attrs = ", ".join(f"`{k}`: {a.kind}" + ("" if a.default is REQUIRED else
                                                    f" ({_fmt(a.default)})")
                              for k, a in d.attrs.items()) or "—"
            operands = ", ".join(f"`{o}`" for o in d.operands) or "—"
            lines.append(f"| `{d.name}` | {operands} | {attrs} | {d.doc} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _fmt(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def grammar() -> str:
    text = (Path(__file__).with_name("grammar.lark")).read_text()
    return f"```\n{text.rstrip()}\n```\n"


SECTIONS = {"ops": op_reference, "grammar": grammar}


def render(text: str) -> str:
    for name, fn in SECTIONS.items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", re.S)
        text = pattern.sub(lambda m: m.group(1) + fn() + m.group(2), text)
    return text


def main() -> int:
    path = DOCS / "ir.md"
    path.write_text(render(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
