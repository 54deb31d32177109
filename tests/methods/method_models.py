"""Models built to show what each quantization method fixes, and the measurements the
method tests and bench/methods.py share. Everything is deterministic and small (a
pipeline run takes well under a second in the numpy interpreter)."""

from __future__ import annotations

import copy
import functools

import numpy as np
import torch
import torch.nn as nn

import frontends
from backends.numpy import run
from passes import PassContext, PassManager

TAIL = "propagate-scales,lower-to-integer,fuse-requantize,canonicalize"


def sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    noise = ((ref - got) ** 2).sum()
    return float("inf") if noise == 0 else float(10 * np.log10((ref ** 2).sum() / noise))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def feeds(module, batches) -> list[dict[str, np.ndarray]]:
    """Input dicts for a module from a list of input tuples (tensors or arrays)."""
    out = []
    for b in batches:
        b = b if isinstance(b, (list, tuple)) else (b,)
        out.append({a.name: (t.numpy() if isinstance(t, torch.Tensor) else np.asarray(t))
                    for a, t in zip(module.main.args, b)})
    return out


_IMPORTED: dict[int, object] = {}


def imported(model: nn.Module, example):
    """The float qir module of a torch model (exported once per model object; callers
    get their own copy)."""
    key = id(model)
    if key not in _IMPORTED:
        _IMPORTED[key] = (model, frontends.from_torch(model, example))
    return clone(_IMPORTED[key][1])


def clone(module):
    """An independent copy of a module (through its text: deepcopy recurses too deep on
    large graphs)."""
    import qir

    out = qir.parse(qir.print_module(module))
    out.params = {k: v.copy() for k, v in module.params.items()}
    return out


def quantize_with(model: nn.Module, example, calib, pipeline: str):
    """(float module, module after `pipeline`, context) for a torch model."""
    float_module = imported(model, example)
    module = imported(model, example)
    ctx = PassContext(calibration_data=feeds(module, calib), progress=False)
    PassManager(pipeline, ctx=ctx).run(module)
    return float_module, module, ctx


def outputs(module, feed_list) -> list[np.ndarray]:
    return [np.concatenate([list(run(module, f).values())[i] for f in feed_list])
            for i in range(len(module.main.outputs))]


def compare(float_module, module, feed_list) -> dict[str, float]:
    """Output SQNR (dB), cosine and mean absolute per-output-channel bias of the error,
    over held-out inputs (first output)."""
    ref, got = outputs(float_module, feed_list)[0], outputs(module, feed_list)[0]
    err = (got.astype(np.float64) - ref).reshape(-1, ref.shape[-1])
    return {"sqnr": sqnr(ref, got), "cos": cosine(ref, got),
            "mean_err": float(np.abs(err.mean(axis=0)).mean())}


# --- bias correction: skewed weights, inputs with a large mean ------------------------------


class SkewedMLP(nn.Module):
    """Linear stack whose first output row is 40x the others (per-tensor int8 weights then
    give the other rows only a few levels) fed by inputs with a large positive mean: the
    rounding error of the weights shows up as a shift of each output's mean. fc2 has no
    bias."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 64, bias=False)  # bias-correction adds one
        self.fc3 = nn.Linear(64, 16)
        self.relu = nn.ReLU()
        with torch.no_grad():
            for fc in (self.fc1, self.fc2, self.fc3):
                fc.weight[0] *= 40.0

    def forward(self, x):
        return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))


def skewed_inputs(seed: int) -> tuple[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (2.0 + 0.5 * torch.randn(8, 32, generator=g),)


@functools.cache
def skewed_mlp() -> nn.Module:
    torch.manual_seed(11)
    return SkewedMLP().eval().requires_grad_(False)


# --- cross-layer equalization: unbalanced channels ------------------------------------------


class UnbalancedCNN(nn.Module):
    """conv → ReLU → conv → ReLU → depthwise conv → ReLU → max-pool → 1x1 conv, with each
    first layer's output channels scaled by factors spread over 1e-2..1e1 and the next
    layer's matching input channels by the inverse (what BN folding often leaves):
    per-tensor weight quantization then wipes out the small channels."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 8, 1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        g = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for a, b in ((self.conv1, self.conv2), (self.conv2, self.dw), (self.dw, self.pw)):
                s = 10.0 ** (torch.rand(16, generator=g) * 3 - 2)
                a.weight.mul_(s.view(-1, 1, 1, 1))
                a.bias.mul_(s)
                if b.groups == 1:
                    b.weight.div_(s.view(1, -1, 1, 1))
                else:
                    b.weight.div_(s.view(-1, 1, 1, 1))

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.pool(self.relu(self.dw(x)))
        return self.pw(x)


def image_inputs(seed: int, batch: int = 2) -> tuple[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, 16, 16, generator=g),)


@functools.cache
def unbalanced_cnn() -> nn.Module:
    torch.manual_seed(12)
    return UnbalancedCNN().eval().requires_grad_(False)


def per_tensor_weight_sqnr(module) -> float:
    """Mean SQNR (dB) of per-tensor symmetric int8 quantization of every conv/linear
    weight of a float module: how well one scale fits all of a layer's channels."""
    from passes.bias_correction import simulated_weight
    from passes.utils import constant_array

    vals = []
    for op in module.main.ops:
        if op.name in ("qir.conv2d", "qir.linear"):
            w = constant_array(op.operands[1])
            vals.append(sqnr(w, simulated_weight(w, per_channel=False)))
    return float(np.mean(vals))


def seeds(fn, ids) -> list:
    return [fn(i) for i in ids]


CALIB = tuple(range(16))
HELD_OUT = (100, 101, 102, 103)


# --- experiments shared by the tests and bench/methods.py (cached per process) --------------


def _held(fn) -> list:
    return seeds(fn, HELD_OUT)


@functools.cache
def run_custom(model_name: str, pipeline: str):
    """(metrics, module, ctx) of `pipeline` on one of the models above."""
    model, inputs = {"skewed_mlp": (skewed_mlp, skewed_inputs),
                     "unbalanced_cnn": (unbalanced_cnn, image_inputs),
                     "ffn": (ffn, ffn_inputs)}[model_name]
    m = model()
    f, q, ctx = quantize_with(m, inputs(0), seeds(inputs, CALIB), pipeline)
    return compare(f, q, feeds(q, _held(inputs))), q, ctx


@functools.cache
def zoo_model(name: str) -> nn.Module:
    from tests.zoo import ZOO

    return ZOO[name].build()


@functools.cache
def run_zoo(name: str, pipeline: str, calib: int = 8):
    """(metrics, module, ctx) of `pipeline` on a zoo model, held-out seeds 101..104."""
    from tests.zoo import ZOO, calibration_batches

    entry = ZOO[name]
    f, q, ctx = quantize_with(zoo_model(name), entry.example_inputs(0),
                              calibration_batches(name, calib), pipeline)
    held = [entry.example_inputs(s) for s in (101, 202, 303, 404)]
    return compare(f, q, feeds(q, held)), q, ctx


BIAS_CORRECTION = ("canonicalize,insert-observers,calibrate,{bc}quantize{{weights=per-tensor}},"
                   + TAIL)
EQUALIZE = ("canonicalize,{eq}fuse-activations,insert-observers,calibrate,"
            "quantize{{weights=per-tensor}}," + TAIL)
STATIC_KEEP = ("canonicalize,fold-batchnorm,fuse-activations,{sq}insert-observers,calibrate,"
               "quantize{{outliers=keep}}," + TAIL)


# --- weight-only: a transformer-sized FFN --------------------------------------------------


class FFN(nn.Module):
    """Two pre-LN feed-forward blocks of width 256 (K = 256 and 1024: group size 128
    divides both)."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(256), nn.Linear(256, 1024),
                                                  nn.GELU(), nn.Linear(1024, 256))
                                    for _ in range(2))
        self.head = nn.Linear(256, 64)

    def forward(self, x):
        for b in self.blocks:
            x = x + b(x)
        return self.head(x)


def ffn_inputs(seed: int) -> tuple[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(4, 8, 256, generator=g),)


@functools.cache
def ffn() -> nn.Module:
    torch.manual_seed(13)
    return FFN().eval().requires_grad_(False)


def correlated_layer(seed: int = 0, n: int = 64, k: int = 128, rows: int = 1024):
    """(W [n, k], calibration X, held-out X): a linear layer whose inputs are strongly
    correlated (x = z · A with A mixing 16 latent factors plus a little noise), the
    case where GPTQ's error compensation pays off."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((16, k))
    w = rng.standard_normal((n, k)).astype(np.float32) * 0.05

    def sample(m):
        return (rng.standard_normal((m, 16)) @ a + 0.1 * rng.standard_normal((m, k))
                ).astype(np.float32)

    return w, sample(rows), sample(rows)


def layer_module(w: np.ndarray):
    """A qir module computing x @ w.T (x: [rows, K])."""
    import qir

    n, k = w.shape
    m = qir.parse(f"func @main(%x: tensor<1024x{k}xf32>) -> (tensor<1024x{n}xf32>) {{\n"
                  f'  %w = qir.param {{name = "fc.weight"}} : tensor<{n}x{k}xf32>\n'
                  f"  %y = qir.linear %x, %w : tensor<1024x{n}xf32>\n  return %y\n}}\n")
    m.params["fc.weight"] = w
    return m


@functools.cache
def gptq_experiment() -> dict[str, float]:
    """Relative output error (||Y - Ŷ|| / ||Y||) of int4 group-32 weights on held-out
    correlated inputs: round-to-nearest vs GPTQ."""
    w, calib, held = correlated_layer()
    ref = held.astype(np.float64) @ w.T.astype(np.float64)
    out = {}
    for name, opts in (("rtn", ""), ("gptq", ",gptq=true")):
        m = layer_module(w)
        ctx = PassContext(calibration_data=[{"x": calib}], progress=False)
        PassManager(f"weight-only{{bits=4,group-size=32{opts}}}", ctx=ctx).run(m)
        got = list(run(m, {"x": held}).values())[0]
        out[name] = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    return out


def weight_bytes(module) -> tuple[int, int, int]:
    """(float bytes the quantized weights replaced, bytes stored in the npz arrays,
    bytes packed: int4 two per byte) over every quantized linear weight; scales count
    4 bytes each in the last two."""
    stored = packed = floats = 0
    for op in module.main.ops:
        if op.name == "qir.param" and op.result.type.is_quantized:
            ty = op.result.type
            data = module.params[op.attr("name")]
            bits = 4 if ty.quant.storage == "i4" else 8
            stored += data.nbytes + 4 * len(ty.quant.scales)
            packed += -(-data.size * bits // 8) + 4 * len(ty.quant.scales)
            floats += 4 * data.size
    return floats, stored, packed


@functools.cache
def torch_dynamic_sqnr(engine: str) -> float:
    """Output SQNR of PyTorch's quantize_dynamic (int8 weights per tensor) on bert_style
    with the given quantized engine, over the held-out inputs of run_zoo."""
    import warnings

    from tests.zoo import ZOO

    entry = ZOO["bert_style"]
    model = zoo_model("bert_style")
    old = torch.backends.quantized.engine
    try:
        torch.backends.quantized.engine = engine
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dq = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear},
                                                        dtype=torch.qint8)
            held = [entry.example_inputs(s) for s in (101, 202, 303, 404)]
            ref = np.concatenate([model(*h).numpy() for h in held])
            got = np.concatenate([dq(*h).numpy() for h in held])
    finally:
        torch.backends.quantized.engine = old
    return sqnr(ref, got)


# --- QAT: models trained with fake quantization in PyTorch ----------------------------------


class QatNet(nn.Module):
    """conv-relu, strided conv-relu, flatten, linear; QuantStub/DeQuantStub for eager QAT
    (they are identities in FX graph mode)."""

    def __init__(self):
        super().__init__()
        import torch.ao.quantization as tq

        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(16 * 4 * 4, 10)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.relu1(self.conv1(self.quant(x)))
        x = self.relu2(self.conv2(x))
        return self.dequant(self.fc(torch.flatten(x, 1)))


def qat_inputs(seed: int) -> tuple[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 3, 8, 8, generator=g),)


def _train(model: nn.Module, steps: int = 20) -> None:
    """A few SGD steps on a fixed regression task, so scales and weights move."""
    g = torch.Generator().manual_seed(3)
    target = torch.randn(3 * 8 * 8, 10, generator=g) * 0.1
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for i in range(steps):
        (x,) = qat_inputs(1000 + i)
        loss = (model(x) - x.flatten(1) @ target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@functools.cache
def qat_eager_model() -> nn.Module:
    """Eager-mode QAT (u8 activations, per-channel i8 weights, conv+relu fused),
    trained, observers disabled, in eval mode."""
    import warnings

    import torch.ao.quantization as tq

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(21)
        m = QatNet().train()
        # x86's defaults with full-range activations: torch's int8 kernels clamp to the
        # dtype's range, its fake quant to quant_max, so reduce_range's [0, 127] would
        # make torch's converted model disagree with its own QAT model when it saturates
        m.qconfig = tq.QConfig(
            activation=tq.FusedMovingAvgObsFakeQuantize.with_args(
                observer=tq.MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                dtype=torch.quint8),
            weight=tq.default_fused_per_channel_wt_fake_quant)
        tq.fuse_modules_qat(m, [["conv1", "relu1"], ["conv2", "relu2"]], inplace=True)
        tq.prepare_qat(m, inplace=True)
        _train(m)
        m.eval()
        m.apply(tq.disable_observer)
    return m.requires_grad_(False)


@functools.cache
def qat_fx_reference() -> torch.nn.Module:
    """FX graph-mode QAT with the x86 defaults (u8 activations in [0, 127]), trained,
    converted to the decomposed reference representation (quantized_decomposed
    quantize/dequantize ops, as PT2E's convert_pt2e emits)."""
    import copy
    import warnings

    import torch.ao.quantization as tq
    from torch.ao.quantization.quantize_fx import (_convert_to_reference_decomposed_fx,
                                                   prepare_qat_fx)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(22)
        m = QatNet().train()
        p = prepare_qat_fx(m, tq.get_default_qat_qconfig_mapping("x86"), qat_inputs(0))
        _train(p)
        p.eval()
        return _convert_to_reference_decomposed_fx(copy.deepcopy(p)).requires_grad_(False)
