"""The method passes and named pipelines: registered with typed options, usable from
pipeline strings, and their results compile with the TVM backend where it supports the
types (per-group int4 weights)."""

from __future__ import annotations

import numpy as np
import pytest
from method_models import ffn_inputs, feeds, run_custom

from backends.numpy import run
from passes import PIPELINES, PipelineError, all_passes, parse_pipeline

METHOD_PASSES = {
    "bias-correction": {"weights"},
    "equalize": {"iterations", "tolerance"},
    "smoothquant": {"alpha", "search", "threshold"},
    "weight-only": {"bits", "group-size", "gptq", "damp", "awq", "format", "levels"},
    "fp8": {"format", "granularity"},
    "dynamic-quant": {"granularity", "weights"},
    "quantize-bias": set(),
    "kv-int8": {"margin"},
    "mixed-precision": {"min-sqnr", "max-float", "outliers"},
}
METHOD_PIPELINES = {"w4a16": "weight-only", "w8a16": "weight-only", "nf4": "weight-only",
                    "fp8-e4m3": "fp8",
                    "int8-smooth": "smoothquant", "int8-dynamic": "dynamic-quant",
                    "int8-dfq": "equalize", "int8-qat": "quantize-bias"}


def test_method_passes_are_registered_with_typed_options():
    passes = all_passes()
    for name, options in METHOD_PASSES.items():
        assert set(passes[name].options) == options, name
    steps = parse_pipeline("weight-only{bits=8,group-size=64,gptq=true,damp=1%}")
    assert steps[0].options == {"bits": 8, "group-size": 64, "gptq": True, "damp": 0.01}
    assert parse_pipeline("smoothquant{alpha=0.7,search=false}")[0].options["alpha"] == 0.7
    with pytest.raises(PipelineError, match="one of 4, 8"):
        parse_pipeline("weight-only{bits=3}")
    with pytest.raises(PipelineError, match="e4m3, e5m2"):
        parse_pipeline("fp8{format=e3m4}")


@pytest.mark.parametrize("name", sorted(METHOD_PIPELINES))
def test_named_pipelines_expand(name):
    steps = [s.name for s in parse_pipeline(name)]
    assert METHOD_PIPELINES[name] in steps
    assert name in PIPELINES and steps[-1] == "canonicalize"


def test_fp8_pass_and_pipeline_names_differ():
    """`fp8` is the pass; the pipeline around it is `fp8-e4m3`, so `fp8` inside a
    pipeline string never expands into a second calibration."""
    assert [s.name for s in parse_pipeline("insert-observers,calibrate,fp8")][-1] == "fp8"


def test_w4a16_compiles_with_tvm():
    pytest.importorskip("tvm")
    from backends.tvm import build

    _, module, _ = run_custom("ffn", "w4a16")
    feed = feeds(module, [ffn_inputs(5)])[0]
    want = list(run(module, feed).values())[0]
    got = list(build(module, "llvm").run(feed).values())[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
