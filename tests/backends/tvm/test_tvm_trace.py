"""Kernels trace back to the qir ops they compute (backends/tvm/trace.py): the compiled
signature's `kernels`, and the last column of `qir bench --profile`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backends.tvm import build
from tests.backends.tvm.test_tvm_cpu_schedule import _int8_module
from tests.zoo import ZOO

ANCHORS = ("qir.qconv2d", "qir.qlinear", "qir.qmatmul")


@pytest.fixture(scope="module", params=["resnet_style", "gpt_style"])
def compiled(request):
    module = _int8_module(request.param)
    return request.param, module, build(module, "llvm")


def test_every_kernel_called_names_its_ops(compiled):
    name, module, c = compiled
    rows = c.profile([t.numpy() for t in ZOO[name].example_inputs(0)], repeat=1)
    kernels = c.signature.kernels
    called = [n for n, _, _ in rows if not n.startswith("vm.builtin.")]
    assert called and all(kernels.get(n) for n in called), \
        [n for n in called if not kernels.get(n)]
    traced = [o["value"] for ops in kernels.values() for o in ops]
    # every op that computes something is in some kernel (constants fold into them)
    computing = [op.results[0].name for op in module.main.ops
                 if op.name not in ("qir.param", "qir.constant")]
    assert [v for v in computing if v not in traced] == []
    for op in module.main.ops:  # each integer product is the anchor of its own kernel
        if op.name in ANCHORS:
            assert any(ops[0]["value"] == op.result.name and ops[0]["op"] == op.name
                       and "zoo.py:" in ops[0]["loc"] for ops in kernels.values()), op


def test_a_kernel_shared_by_several_ops_lists_each(compiled):
    """TVM compiles one kernel for every op of the same shape: the attention products of
    both layers (gpt_style) or the same-shaped convs (resnet_style, only when their
    requantize constants match) call one PrimFunc, whose entry names every op."""
    name, module, c = compiled
    if name != "gpt_style":
        pytest.skip("the shared kernel checked is gpt_style's attention matmul")
    matmuls = [op.result.name for op in module.main.ops if op.name == "qir.qmatmul"]
    assert len(matmuls) == 4
    (bmm,) = [k for k in c.signature.kernels if k.startswith("qir_bmm")]
    assert [o["value"] for o in c.signature.kernels[bmm]] == matmuls


def test_the_signature_keeps_the_trace_through_export(compiled, tmp_path):
    from backends.tvm import load

    _, _, c = compiled
    loaded = load(c.export_library(str(tmp_path / "m.so")))
    assert loaded.signature.kernels == c.signature.kernels


def test_qir_bench_profile_names_op_and_source(tmp_path, capsys):
    from qir.cli import main

    entry = ZOO["resnet_style"]
    torch.export.save(torch.export.export(entry.build(), entry.example_inputs(0)),
                      tmp_path / "m.pt2")
    np.savez(tmp_path / "calib.npz", x=torch.stack([entry.example_inputs(i)[0]
                                                 for i in range(4)]).numpy())
    out = tmp_path / "out"
    assert main(["compile", str(tmp_path / "m.pt2"), "--int8", "--calib",
                 str(tmp_path / "calib.npz"), "-o", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["bench", str(out), "--repeat", "3", "--profile", "--json"]) == 0
    text = capsys.readouterr().out
    report = json.loads(text.strip().splitlines()[-1])
    rows = report["profile"]
    assert rows[-1]["kernel"] == "(VM and launch overhead)" and rows[-1]["ops"] == []
    convs = [r for r in rows if r["ops"] and r["ops"][0]["op"] == "qir.qconv2d"]
    assert len(convs) == sum(1 for ops in [r["ops"] for r in rows]
                             for o in ops if o["op"] == "qir.qconv2d")  # one conv a kernel
    first = convs[0]["ops"][0]
    # the table's last column: the op, and its torch module and source line
    line = next(ln for ln in text.splitlines() if ln.startswith(convs[0]["kernel"][:40]))
    assert f"%{first['value']} qir.qconv2d" in line and "at zoo.py:" in line
