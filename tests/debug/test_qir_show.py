"""`qir show`: the graph as Graphviz dot text (always), svg/png (with Graphviz)."""

from __future__ import annotations

import re
import shutil

import pytest

from qir.cli import main
from qir.graphviz import to_dot

HAVE_DOT = shutil.which("dot") is not None


@pytest.mark.parametrize("name", ["resnet_style", "bert_style"])
def test_dot_text(name, quantized_zoo, capsys):
    q = quantized_zoo(name)
    assert main(["show", str(q.model)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digraph qir {") and out.rstrip().endswith("}")
    fn = q.module.main
    nodes = re.findall(r"^  (op\d+) \[", out, re.M)
    assert len(nodes) == len(fn.ops)
    edges = re.findall(r"^  (\w+) -> (\w+) \[", out, re.M)
    assert len(edges) == sum(len(op.operands) for op in fn.ops) + len(fn.outputs)
    # values on edges: name, shape and quantization; per-channel lists summarised
    rq = next(op for op in fn.ops if op.name == "qir.requantize")
    q8 = rq.result.type.quant
    assert f"%{rq.result.name}\\n" in out and f"s={q8.scale:.4g}" in out
    assert re.search(r"axis 0: \d+ scales in \[", out)
    assert max(len(line) for line in out.splitlines()) < 400
    assert main(["show", str(q.model), "--no-params"]) == 0
    assert "param \\\"" not in capsys.readouterr().out


def test_dot_escapes_and_functions(tmp_path, capsys):
    path = tmp_path / "m.qir"
    path.write_text('func @main(%x: tensor<2xf32>) -> (tensor<2xf32>) {\n'
                    '  %y = qir.relu %x : tensor<2xf32>  loc("a\\"b")\n  return %y\n}\n')
    text = to_dot(__import__("qir").load(path))
    assert '@a\\\"b' in text
    assert main(["show", str(path), "--function", "nope"]) == 1
    assert "no function @nope (functions: @main)" in capsys.readouterr().err


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("name", ["small_cnn", "mlp"])
def test_svg_and_png_with_graphviz(name, quantized_zoo, tmp_path, capsys):
    q = quantized_zoo(name)
    svg = tmp_path / "g.svg"
    assert main(["show", str(q.model), "-o", str(svg)]) == 0  # format from the suffix
    text = svg.read_text()
    assert "<svg" in text and ("qconv2d" in text or "qlinear" in text)
    png = tmp_path / "g.png"
    assert main(["show", str(q.model), "--format", "png", "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_svg_without_graphviz_writes_dot_and_fails(quantized_zoo, tmp_path, capsys,
                                                   monkeypatch):
    import qir.graphviz

    monkeypatch.setattr(qir.graphviz.shutil, "which", lambda name: None)
    q = quantized_zoo("mlp")
    out = tmp_path / "g.svg"
    assert main(["show", str(q.model), "--format", "svg", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Graphviz's `dot` program is not installed" in err
    assert "apt-get install graphviz" in err and str(tmp_path / "g.dot") in err
    assert not out.exists()
    assert (tmp_path / "g.dot").read_text().startswith("digraph qir {")
    assert main(["show", str(q.model), "--format", "dot"]) == 0  # dot text needs nothing
