"""Before/after numbers of every quantization method in docs/methods.md, on the models the
method tests use (tests/methods/method_models.py) and the zoo.

    .venv/bin/python bench/methods.py            # about a minute on one CPU core

SQNR is the output signal-to-quantization-noise ratio in dB against the float model over
held-out inputs (higher is better); cos the output cosine similarity; mean|err| the mean
over output channels of |mean error| (the bias of the error).
"""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "methods")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from method_models import (BIAS_CORRECTION, EQUALIZE, STATIC_KEEP, TAIL, clone,  # noqa: E402
                           gptq_experiment,
                           image_inputs, imported, per_tensor_weight_sqnr, qat_eager_model,
                           qat_fx_reference, qat_inputs, run, run_custom, run_zoo,
                           torch_dynamic_sqnr, unbalanced_cnn, weight_bytes)

from passes import PassManager  # noqa: E402

FRONT = "canonicalize,fold-batchnorm,fuse-activations,"


def row(label: str, m: dict, extra: str = "") -> None:
    print(f"  {label:<44} SQNR {m['sqnr']:6.1f} dB   cos {m['cos']:.5f}   "
          f"mean|err| {m['mean_err']:.4f}{extra}")


def bias_correction() -> None:
    print("bias-correction: SkewedMLP (row 0 of each weight 40x the others, inputs with "
          "mean 2), per-tensor int8 weights")
    row("int8, weights per-tensor", run_custom("skewed_mlp", BIAS_CORRECTION.format(bc=""))[0])
    row("bias-correction + int8, weights per-tensor", run_custom(
        "skewed_mlp", BIAS_CORRECTION.format(bc="bias-correction{weights=per-tensor},"))[0])


def equalize() -> None:
    print("equalize: UnbalancedCNN (channel scales spread over 1e-2..1e1, conv / depthwise "
          "/ pointwise), per-tensor int8 weights")
    before = imported(unbalanced_cnn(), image_inputs(0))
    after = clone(before)
    PassManager("canonicalize,equalize").run(after)
    x = {"x": image_inputs(7)[0].numpy()}
    a, b = list(run(before, x).values())[0], list(run(after, x).values())[0]
    print(f"  per-tensor int8 weight SQNR, mean over layers: {per_tensor_weight_sqnr(before):.1f}"
          f" -> {per_tensor_weight_sqnr(after):.1f} dB; float output change "
          f"{np.abs(a - b).max() / np.abs(a).max():.1e} (relative)")
    row("int8, weights per-tensor", run_custom("unbalanced_cnn", EQUALIZE.format(eq=""))[0])
    row("equalize + int8, weights per-tensor",
        run_custom("unbalanced_cnn", EQUALIZE.format(eq="equalize,"))[0])
    row("int8 (per-channel weights), for reference", run_custom("unbalanced_cnn", "int8")[0])
    row("int8-dfq (equalize + bias-correction)", run_custom("unbalanced_cnn", "int8-dfq")[0])


def smoothquant() -> None:
    for name in ("bert_style", "gpt_style"):
        print(f"smoothquant: {name} (3 outlier channels ~40x the median), W8A8 = "
              "quantize{outliers=keep}")
        row("W8A8", run_zoo(name, STATIC_KEEP.format(sq=""))[0])
        row("smoothquant (alpha 0.5) + W8A8", run_zoo(name, STATIC_KEEP.format(
            sq="smoothquant,"))[0])
        row("smoothquant{search=true} + W8A8", run_zoo(name, STATIC_KEEP.format(
            sq="smoothquant{search=true},"))[0])
        row("int8 (default: int16 for outlier tensors)", run_zoo(name, "int8")[0])
        row("int8-smooth", run_zoo(name, "int8-smooth")[0])


def weight_only() -> None:
    print("weight-only: FFN (2 pre-LN blocks 256 -> 1024 -> 256, head 256 -> 64)")
    for label, p in (("w8a16 (int8 per channel)", "w8a16"),
                     ("w4a16 (int4 group 128, nearest)", "w4a16"),
                     ("w4a16 + GPTQ", FRONT + "weight-only{bits=4,gptq=true},canonicalize"),
                     ("int4 group 32", FRONT + "weight-only{bits=4,group-size=32},canonicalize")):
        m, module, _ = run_custom("ffn", p)
        floats, stored, packed = weight_bytes(module)
        row(label, m, f"   weights {floats} -> {stored} B stored ({floats / stored:.1f}x), "
            f"{packed} B packed ({floats / packed:.1f}x)")
    print("weight-only: zoo transformers, int4 group 32 (K = 64 / 256)")
    for name in ("gpt_style", "bert_style"):
        for label, opts in (("nearest", ""), ("GPTQ", ",gptq=true")):
            row(f"{name} int4 g32 {label}", run_zoo(name, FRONT + "weight-only{bits=4,"
                                                    f"group-size=32{opts}}},canonicalize")[0])
    err = gptq_experiment()
    print(f"  one layer, correlated inputs (int4 g32): relative output error "
          f"{err['rtn']:.4f} nearest -> {err['gptq']:.4f} GPTQ")


def fp8() -> None:
    print("fp8: weights and activations in fp8 (scale = amax / 448 or / 57344)")
    for name in ("resnet_style", "mobilenet_style", "bert_style", "gpt_style"):
        stem = FRONT + "insert-observers,calibrate,"
        row(f"{name} int8 (for reference)", run_zoo(name, "int8")[0])
        row(f"{name} fp8 e4m3 per-tensor", run_zoo(name, "fp8-e4m3")[0])
        row(f"{name} fp8 e4m3 per-channel weights", run_zoo(
            name, stem + "fp8{granularity=per-channel},canonicalize")[0])
        row(f"{name} fp8 e5m2", run_zoo(name, stem + "fp8{format=e5m2},canonicalize")[0])


def dynamic() -> None:
    print("dynamic-quant: bert_style linears")
    row("static W8A8 (outliers=keep)", run_zoo("bert_style", STATIC_KEEP.format(sq=""))[0])
    row("dynamic per-tensor", run_zoo("bert_style", "int8-dynamic")[0])
    row("dynamic per-token", run_zoo("bert_style", FRONT + "dynamic-quant{granularity="
                                     "per-token},canonicalize")[0])
    print(f"  torch quantize_dynamic: x86 engine {torch_dynamic_sqnr('x86'):.1f} dB, "
          f"qnnpack engine {torch_dynamic_sqnr('qnnpack'):.1f} dB")


def qat() -> None:
    import frontends

    print("QAT import: trained eager-QAT and FX-reference models, then int8-qat")
    for label, model, build in (
            ("eager QAT (fake-quant modules)", qat_eager_model(),
             lambda m: frontends.from_torch(m, qat_inputs(0))),
            ("FX reference (quantized_decomposed)", qat_fx_reference(),
             lambda m: frontends.from_exported_program(torch.export.export(m, qat_inputs(0))))):
        module = build(model)
        PassManager("int8-qat").run(module)
        scale = [op for op in module.main.ops if op.name == "qir.dequantize"][-1] \
            .operands[0].type.quant.scale
        errs = []
        for s in range(50, 58):
            (x,) = qat_inputs(s)
            got = list(run(module, {"x": x.numpy()}).values())[0]
            errs.append(np.rint(np.abs(got - model(x).numpy()) / scale).ravel())
        e = np.concatenate(errs)
        print(f"  {label:<40} integer IR vs torch's QAT model: max {e.max():.0f} step, "
              f"{100 * (e == 0).mean():.1f}% exact")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = torch.backends.quantized.engine
        torch.backends.quantized.engine = "qnnpack"
        model = qat_eager_model()
        converted = torch.ao.quantization.convert(copy.deepcopy(model))
        module = frontends.from_torch(model, qat_inputs(0))
        PassManager("int8-qat").run(module)
        scale = converted.fc.scale
        ours, theirs = [], []
        for s in range(50, 58):
            (x,) = qat_inputs(s)
            ref = converted(x).numpy()
            ours.append(np.rint(np.abs(list(run(module, {"x": x.numpy()}).values())[0] - ref)
                                / scale).ravel())
            theirs.append(np.rint(np.abs(model(x).numpy() - ref) / scale).ravel())
        torch.backends.quantized.engine = old
    o, t = np.concatenate(ours), np.concatenate(theirs)
    print(f"  vs torch convert() (qnnpack): qir max {o.max():.0f} / mean {o.mean():.2f} steps;"
          f" torch's own QAT model max {t.max():.0f} / mean {t.mean():.2f}")


def mixed() -> None:
    print("mixed-precision: bert_style W8A8 (outliers=keep), 4 calibration batches")
    for target in (0, 20, 25, 30):
        m, module, ctx = run_zoo("bert_style", FRONT + f"mixed-precision{{min-sqnr={target},"
                                 "outliers=keep},calibrate,quantize{outliers=keep},"
                                 + TAIL, calib=4)
        kept = [str(op.loc.module_path) for op in module.main.ops if op.name == "qir.linear"]
        row(f"min-sqnr={target}: {len(kept)} float", m, f"   float: {', '.join(kept) or '-'}")


def main() -> None:
    for section in (bias_correction, equalize, smoothquant, weight_only, fp8, dynamic, qat,
                    mixed):
        section()
        print()


if __name__ == "__main__":
    main()
