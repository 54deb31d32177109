"""Per-op coverage: small models, each imported with both capture styles and compared with
torch eager through the numpy interpreter (max relative error 1e-4)."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.frontends.helpers import CAPTURES, Fn, Fn2, check


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=g(seed))


def positive(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=g(seed)) + 0.5


def ints(*shape: int, high: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=g(seed))


def seeded(factory: Callable[[], nn.Module], seed: int = 0) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(seed)
        return factory()

    return build


class BN(nn.Module):
    """Batch norm with non-trivial running statistics."""

    def __init__(self, c: int, one_d: bool = False):
        super().__init__()
        self.bn = nn.BatchNorm1d(c) if one_d else nn.BatchNorm2d(c)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.3, 0.3)

    def forward(self, x):
        return self.bn(x)


class FunctionalNorms(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.rand(8) + 0.5)
        self.b = nn.Parameter(torch.rand(8) - 0.5)
        self.register_buffer("mean", torch.rand(8) - 0.5)
        self.register_buffer("var", torch.rand(8) + 0.5)

    def forward(self, x):
        a = F.batch_norm(x, self.mean, self.var, self.w, self.b, training=False, eps=1e-3)
        b = F.group_norm(x, 4, self.w, self.b)
        c = F.layer_norm(x, x.shape[-2:])
        return a, b, c


class Attention(nn.Module):
    def __init__(self, mask: str):
        super().__init__()
        self.mask = mask

    def forward(self, q, k):
        v = k * 2.0 - 1.0
        if self.mask == "bool":
            m = torch.ones(5, 5, dtype=torch.bool).tril()
            return F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        if self.mask == "float":
            m = torch.zeros(5, 5).masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1),
                                              float("-inf"))
            return F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.3)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


class GQA(nn.Module):
    def forward(self, q, k):
        return F.scaled_dot_product_attention(q, k, k + 1.0, is_causal=True, enable_gqa=True)


class Lin(nn.Module):
    """Linear written with addmm / baddbmm / t / mT on parameters."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(5, 6))
        self.b = nn.Parameter(torch.randn(5))

    def forward(self, x):
        a = torch.addmm(self.b, x, self.w.t())
        b = torch.baddbmm(torch.ones(1, 4, 4), x[None], self.w.mT[None, :, :4], beta=0.5)
        return a, b


class Embed(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.table = nn.Parameter(torch.randn(10, 3))

    def forward(self, ids):
        return self.emb(ids), F.embedding(ids, self.table)


class MultiOut(nn.Module):
    """Two inputs, a tuple of three outputs, one of them an input passed through."""

    def forward(self, x, y):
        return x + y, (x * y).sum(dim=1), y


class ShapeAttr(nn.Module):
    """fx sees getattr(x, 'shape') / size() / dim(): static sizes fold to python ints."""

    def forward(self, x):
        b, c = x.shape[0], x.size(1)
        y = x.reshape(b * c, -1) * x.dim()
        return y.view(x.shape[0], c, x.shape[2], x.shape[-1]) + torch.arange(x.size(-1))


def conv(*args: Any, **kwargs: Any) -> Callable[[], nn.Module]:
    return seeded(lambda: nn.Conv2d(*args, **kwargs))


img = (lambda: (randn(1, 4, 9, 9),))
seq = (lambda: (randn(2, 5, 8),))
two = (lambda: (randn(2, 3, 4), randn(2, 3, 4, seed=1)))

# name -> (model factory, example inputs factory)
class Pads(nn.Module):
    """Padding modes other than constant, functional and as modules."""

    def __init__(self):
        super().__init__()
        self.reflect = nn.ReflectionPad2d((1, 2, 0, 1))
        self.replicate = nn.ReplicationPad2d(2)

    def forward(self, x):
        return (F.pad(x, (2, 1, 1, 3), mode="reflect"), F.pad(x, (2, 1, 0, 0), mode="replicate"),
                F.pad(x, (1, 2, 2, 0), mode="circular"), self.reflect(x), self.replicate(x))


class Masked:
    """Swin's way of building an attention mask: a new tensor from the input's shape,
    filled in place slice by slice (folds to a constant at import)."""

    def __call__(self, x):
        mask = x.new_zeros((5, 8))
        mask[1:3] = 1.0
        mask[:, 4:] += 2.0
        return x + mask


CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[], tuple]]] = {
    # convolution
    "conv2d": (conv(4, 6, 3), img),
    "conv2d_stride_pad": (conv(4, 6, 3, stride=2, padding=1, bias=False), img),
    "conv2d_same_even_kernel": (conv(4, 6, 4, padding="same"), img),
    "conv2d_same_dilated": (conv(4, 6, 3, padding="same", dilation=2), img),
    "conv2d_valid": (conv(4, 6, (3, 2), padding="valid"), img),
    "conv2d_groups": (conv(4, 6, 3, groups=2, padding=(1, 2)), img),
    "conv2d_depthwise": (conv(4, 8, 3, groups=4, stride=(2, 1)), img),
    "conv1d": (seeded(lambda: nn.Conv1d(5, 7, 3, stride=2, padding=1)), seq),
    "conv1d_same": (seeded(lambda: nn.Conv1d(5, 5, 4, padding="same", groups=5)), seq),
    "f_conv2d": (lambda: Fn(lambda x: F.conv2d(x, torch.ones(2, 4, 3, 3) / 9, padding="same")),
                 img),
    # linear / matmul
    "linear": (seeded(lambda: nn.Linear(8, 3)), seq),
    "linear_no_bias": (seeded(lambda: nn.Linear(8, 3, bias=False)), seq),
    "matmul_broadcast": (lambda: Fn2(lambda x, y: x @ y.transpose(-1, -2)[0]), two),
    "matmul_vector": (lambda: Fn2(lambda x, y: torch.matmul(x, y[0, 0])), two),
    "bmm": (lambda: Fn2(lambda x, y: torch.bmm(x, y.transpose(1, 2))), two),
    "addmm_baddbmm_t_mT": (seeded(Lin), lambda: (randn(4, 6),)),
    # normalisation
    "batch_norm2d": (lambda: BN(4), img),
    "batch_norm1d": (lambda: BN(5, one_d=True), seq),
    "layer_norm": (seeded(lambda: nn.LayerNorm(8)), seq),
    "group_norm": (seeded(lambda: nn.GroupNorm(2, 4)), img),
    "functional_norms": (seeded(FunctionalNorms), lambda: (randn(2, 8, 3, 5),)),
    "rms_norm": (lambda: Fn(lambda x: F.rms_norm(x, [8], torch.full((8,), 1.5), eps=1e-5)),
                 seq),
    "embedding": (seeded(Embed), lambda: (ints(2, 7),)),
    # activations
    "relu": (lambda: Fn(F.relu), seq),
    "relu6": (lambda: Fn(lambda x: F.relu6(x * 4)), seq),
    "relu6_module": (lambda: nn.ReLU6(), lambda: (randn(2, 5, 8) * 5,)),
    "hardtanh": (lambda: nn.Hardtanh(-0.5, 0.25), seq),
    "clamp": (lambda: Fn(lambda x: x.clamp(min=-0.3) + torch.clamp(x, max=0.2) + x.clip(-1, 1)),
              seq),
    "clamp_tensor_bounds": (lambda: Fn2(lambda x, y: torch.clamp(x, min=y, max=y + 1)), two),
    "leaky_relu": (lambda: Fn(lambda x: F.leaky_relu(x, 0.2)), seq),
    "leaky_relu_module": (lambda: nn.LeakyReLU(), seq),
    "gelu": (lambda: Fn(lambda x: F.gelu(x) + F.gelu(x * 2, approximate="tanh")), seq),
    "gelu_modules": (lambda: nn.Sequential(nn.GELU(), nn.GELU(approximate="tanh")), seq),
    "silu_sigmoid_tanh": (lambda: Fn(lambda x: F.silu(x) + torch.sigmoid(x) * x.tanh()), seq),
    "hardswish_hardsigmoid": (lambda: Fn(lambda x: F.hardswish(x * 4) - F.hardsigmoid(x * 4)),
                              seq),
    "elu": (lambda: nn.ELU(0.5), seq),
    "softmax": (lambda: Fn(lambda x: F.softmax(x, dim=-1) + x.softmax(1)), seq),
    "log_softmax": (lambda: nn.LogSoftmax(dim=1), seq),
    "softmax_module": (lambda: nn.Softmax(dim=0), seq),
    # pooling
    "max_pool2d": (lambda: nn.MaxPool2d(3, stride=2, padding=1), img),
    "max_pool2d_ceil_dilation": (lambda: Fn(lambda x: F.max_pool2d(x, 2, 2, 0, 2, True)), img),
    "avg_pool2d": (lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), img),
    "avg_pool2d_ceil": (lambda: Fn(lambda x: F.avg_pool2d(x, 2, ceil_mode=True)), img),
    "adaptive_avg_pool2d": (lambda: Fn(lambda x: F.adaptive_avg_pool2d(x, (2, 3)).flatten(1)
                                       + F.adaptive_avg_pool2d(x, 1).flatten(1).sum(1, True)),
                            img),
    "adaptive_avg_pool2d_module": (lambda: nn.AdaptiveAvgPool2d(1), img),
    "adaptive_avg_pool2d_uneven": (lambda: nn.AdaptiveAvgPool2d((4, None)), img),
    "pool1d": (lambda: Fn(lambda x: F.max_pool1d(x, 2) + F.avg_pool1d(x, 2)), seq),
    "adaptive_max_pool_global": (lambda: nn.AdaptiveMaxPool2d(1), img),
    # reductions
    "mean_sum": (lambda: Fn(lambda x: x.mean(dim=(1, 2)) + x.sum(-1).sum(-1, keepdim=False)),
                 seq),
    "mean_keepdim_all": (lambda: Fn(lambda x: x - x.mean(1, keepdim=True) + x.mean()), seq),
    "sum_int": (lambda: Fn(lambda x: x.sum(1)), lambda: (ints(3, 4),)),
    "amax_max_dim": (lambda: Fn(lambda x: (x.amax(-1), x.max(dim=1), x.min(), torch.argmax(x))),
                     seq),
    "var_std": (lambda: Fn(lambda x: x.var(-1, keepdim=True, unbiased=False) + x.std(1).sum()),
                seq),
    "cumsum": (lambda: Fn(lambda x: torch.cumsum(x, dim=1)), seq),
    "any_all": (lambda: Fn(lambda x: ((x > 0).any(-1), (x > -3).all())), seq),
    # arithmetic
    "binary_broadcast": (lambda: Fn2(lambda x, y: (x + y[0], x - y[:, :1], x * y, x / (y + 5))),
                         two),
    "scalars": (lambda: Fn(lambda x: (2.0 - x) * 3 + x / 4 - 1 + 0.5 * x ** 2
                           - torch.rsub(x, 1.0) + 2 ** x), seq),
    "int_times_float": (lambda: Fn(lambda x: x * 0.5 + x / 3), lambda: (ints(3, 4),)),
    "int_arith": (lambda: Fn(lambda x: x * 2 + 1 - x), lambda: (ints(3, 4),)),
    "unary_math": (lambda: Fn(lambda x: (x.sqrt(), torch.rsqrt(x), x.exp(), torch.erf(x),
                                         x.log(), x.pow(1.5), x ** 0.5, -x, x.reciprocal())),
                   lambda: (positive(3, 4),)),
    "pow_tensor": (lambda: Fn2(lambda x, y: torch.pow(x.abs() + 1, y)), two),
    "compare_logic": (lambda: Fn2(lambda x, y: ((x > y) & (x < 1)) | ~(y >= 0.5)), two),
    "where_masked_fill": (lambda: Fn2(lambda x, y: torch.where(x > y, x, 0.0)
                                      + x.masked_fill(y > 0, -1.0)), two),
    "masked_fill_inf_softmax": (lambda: Fn(lambda x: x.masked_fill(
        torch.ones(5, 8, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)), seq),
    "maximum_minimum": (lambda: Fn2(lambda x, y: torch.maximum(x, y) - torch.minimum(x, y)),
                        two),
    # data movement
    "reshape_family": (lambda: Fn(lambda x: (x.reshape(2, -1), x.view(10, 8), x.flatten(),
                                             torch.flatten(x, 1), x.unsqueeze(1).squeeze(1),
                                             x[None].squeeze(0), x.unflatten(2, (2, 4)))), seq),
    "permute_transpose": (lambda: Fn(lambda x: (x.permute(2, 0, 1), x.transpose(0, 1),
                                                x.transpose(-1, -2).contiguous(), x.mT,
                                                x[0].t(), x[0].T)), seq),
    "expand_repeat": (lambda: Fn(lambda x: (x[:, :1].expand(-1, 4, -1), x.repeat(1, 2, 1),
                                            x[:, :, :1].expand_as(x))), seq),
    "cat_stack": (lambda: Fn2(lambda x, y: (torch.cat([x, y], dim=1), torch.stack([x, y], -1),
                                            torch.cat((x, y.int()), 0))), two),
    "split_chunk": (lambda: Fn(lambda x: (x.split(3, dim=2)[2], torch.chunk(x, 3, dim=1)[1],
                                          torch.split(x, [1, 4], 1)[1], x.unbind(0)[1])), seq),
    "slice_select_index": (lambda: Fn(lambda x: (x[:, 1:4:2], x[..., -1], x[0, :, None, 2:],
                                                 x[:, torch.tensor([0, 2, 2])],
                                                 x.select(1, -2), x.narrow(2, 1, 3),
                                                 x.index_select(2, torch.tensor([7, 0])))),
                           seq),
    "slice_bounds_from_sizes": (lambda: Fn(lambda x: x[:, : x.size(1) - 1] * x.shape[-1]),
                                seq),
    "tril_triu": (lambda: Fn(lambda x: x.tril() + torch.triu(x, 1) * 2), seq),
    "pad": (lambda: Fn(lambda x: F.pad(x, (1, 2, 0, 1), value=0.5) + 1), img),
    # factories and constants
    "factories": (lambda: Fn(lambda x: x + torch.arange(8) + torch.zeros(5, 8) + torch.ones(8)
                             + torch.full((1, 8), 2.5)), seq),
    "factories_like": (lambda: Fn(lambda x: (torch.zeros_like(x), torch.ones_like(x) * x,
                                             torch.full_like(x, 3.0), x.new_zeros(2, 3),
                                             x.new_ones(4))), seq),
    "large_constant": (lambda: Fn(lambda x: x + torch.linspace(0, 1, 80).reshape(10, 8)),
                       lambda: (randn(10, 8),)),
    "causal_mask_constant": (lambda: Fn(lambda x: x.masked_fill(
        torch.tril(torch.ones(8, 8)) == 0, -1e4)), lambda: (randn(2, 8, 8),)),
    # eval-mode no-ops, dtype conversions
    "dropout_identity": (lambda: nn.Sequential(nn.Dropout(0.5), nn.Identity()), seq),
    "f_dropout": (lambda: Fn(lambda x: F.dropout(x, 0.3, training=False) + 1), seq),
    "casts": (lambda: Fn2(lambda x, y: ((x * 3).to(torch.int32), (x > 0).float(),
                                        x.half().float(), (x * 4).long().type_as(y),
                                        x.to(dtype=torch.float64))), two),
    # attention
    "sdpa_causal": (lambda: Attention("causal"),
                    lambda: (randn(2, 3, 5, 4), randn(2, 3, 5, 4, seed=1))),
    "sdpa_bool_mask": (lambda: Attention("bool"),
                       lambda: (randn(2, 5, 4), randn(2, 5, 4, seed=1))),
    "sdpa_float_mask_scale": (lambda: Attention("float"),
                              lambda: (randn(1, 2, 5, 4), randn(1, 2, 5, 4, seed=1))),
    "sdpa_gqa": (lambda: GQA(), lambda: (randn(1, 4, 5, 8), randn(1, 2, 5, 8, seed=1))),
    # data movement and resizing (the real-architecture issue's converters)
    "roll": (lambda: Fn(lambda x: torch.roll(x, shifts=(1, -2), dims=(1, 2)) + x.roll(3)), img),
    "gather": (lambda: Fn2(lambda x, i: (torch.gather(x, 1, i), x.gather(0, i[:2, :3]))),
               lambda: (randn(3, 5), ints(3, 4, high=3))),
    "upsample_bilinear": (lambda: Fn(lambda x: (
        F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
        F.interpolate(x, size=(13, 7), mode="bilinear", align_corners=True),
        F.interpolate(x, scale_factor=1.7, mode="bilinear"))), img),
    "upsample_nearest": (lambda: Fn(lambda x: (
        F.interpolate(x, scale_factor=2), F.interpolate(x, size=(5, 14)),
        nn.functional.interpolate(x, scale_factor=(0.5, 1.5), mode="nearest"))), img),
    "normalize": (lambda: Fn(lambda x: (F.normalize(x, dim=-1), F.normalize(x, p=1, dim=1),
                                        torch.linalg.vector_norm(x, float("inf"), dim=-1),
                                        torch.linalg.vector_norm(x, 3.0, dim=(0, 2)))), seq),
    # Core ATen's remaining unary math, logic and rounding
    "unary_math": (lambda: Fn(lambda x: (
        torch.tan(x), torch.atan(x), torch.sinh(x), torch.cosh(x), torch.asinh(x),
        torch.expm1(x), torch.asin(x.clamp(-0.9, 0.9)), torch.acos(x.clamp(-0.9, 0.9)),
        torch.atanh(x.clamp(-0.9, 0.9)), torch.log1p(x.abs()), torch.log2(x.abs() + 1),
        torch.log10(x.abs() + 1), torch.acosh(x.abs() + 1))), seq),
    "rounding": (lambda: Fn(lambda x: (torch.floor(x * 3), torch.ceil(x * 3),
                                       torch.trunc(x * 3), torch.round(x * 2),
                                       torch.sign(x), (x * 3).long().sign())), seq),
    "float_binary": (lambda: Fn2(lambda x, y: (torch.atan2(x, y), torch.fmod(x * 5, y),
                                               torch.remainder(x * 5, y), x % 0.7)), two),
    "nan_inf_xor": (lambda: Fn2(lambda x, y: (
        torch.isnan(x / (y - y)), torch.isinf(x / (y * 0)), torch.logical_xor(x > 0, y > 0),
        (x > 0) ^ (y > 0), (x > 0).bitwise_xor(y < 0))), two),
    "argmin": (lambda: Fn(lambda x: (torch.argmin(x, dim=1), x.argmin(-1, keepdim=True),
                                     (x * 4).long().argmin(1))), seq),
    # data movement: pads, flip, diagonal, scatters of slices, strided views
    "pads_reflect_replicate": (lambda: Pads(), img),
    "flip_diagonal": (lambda: Fn(lambda x: (
        torch.flip(x, (1, 3)), x.flip(-1), torch.diagonal(x[0, 0]),
        torch.diagonal(x, offset=1, dim1=2, dim2=3), x.diagonal(-2, 1, 3))), img),
    "slice_and_select_scatter": (lambda: Fn2(lambda x, y: (
        torch.slice_scatter(x, y[:, :, :2] * 2, dim=2, start=1, end=4, step=2),
        torch.select_scatter(x, y[:, 1], 1, -1))), two),
    "as_strided": (lambda: Fn(lambda x: torch.as_strided(x, (3, 4), (2, 5), 1)), seq),
    "advanced_index": (lambda: Fn2(lambda x, i: (x[:, i[0], i[1]], x[i[0], i[1]],
                                                  x[i[0], -1], x[:, i[1] - 2, 1])),
                       lambda: (randn(2, 3, 4), ints(2, 5, high=2))),
    # structure
    "multi_io": (lambda: MultiOut(), two),
    "shape_attributes": (lambda: ShapeAttr(), lambda: (randn(2, 3, 4, 5),)),
}


@pytest.mark.parametrize("capture", CAPTURES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_op(case: str, capture: str) -> None:
    factory, inputs = CASES[case]
    check(factory(), inputs(), capture)


class MHA(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


def test_multihead_attention_export() -> None:
    """nn.MultiheadAttention exports to linear + sdpa (symbolic_trace cannot trace it)."""
    m = check(seeded(MHA)(), (randn(2, 5, 16),), "export")
    assert m.main.walk("qir.scaled_dot_product_attention")


def test_scalars_become_typed_constants() -> None:
    """`int_tensor * 0.5` computes in f32: the int input is cast, 0.5 is an f32 constant."""
    m = check(Fn(lambda x: x * 0.5), (ints(3),), "export")
    consts = m.main.walk("qir.constant")
    assert [str(c.result.type) for c in consts] == ["tensor<f32>"]
    assert m.main.walk("qir.cast")[0].attr("to") == "f32"


def test_large_constants_go_to_the_param_table() -> None:
    m = check(Fn(lambda x: x + torch.linspace(0, 1, 80).reshape(10, 8)), (randn(10, 8),),
              "export")
    assert not any(c.result.type.numel > 64 for c in m.main.walk("qir.constant"))
    assert any(a.shape == (10, 8) for a in m.params.values())


def test_small_index_constants_stay_inline() -> None:
    m = check(Fn(lambda x: x[:, torch.tensor([0, 2, 2])]), (randn(2, 5, 8),), "export")
    (c,) = m.main.walk("qir.constant")
    assert c.result.type.elem == "i64" and not m.params


def test_eval_noops_are_removed() -> None:
    m = check(nn.Sequential(nn.Dropout(0.5), nn.Identity(), nn.ReLU()), (randn(3, 4),), "fx")
    assert [op.name for op in m.main.ops] == ["qir.relu"]


class InPlace(nn.Module):
    """In-place ops as torchvision writes them: nn.ReLU(inplace=True), `out += x`,
    ReLU6(inplace=True), in-place dropout in eval mode."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.relu6 = nn.ReLU6(inplace=True)
        self.drop = nn.Dropout(0.2, inplace=True)

    def forward(self, x):
        out = self.relu(self.conv(x))
        out += x
        return self.drop(self.relu6(out))


def test_a_mask_filled_in_place_folds_to_a_constant():
    """export only: symbolic_trace cannot trace item assignment."""
    module = check(Fn(Masked()), seq(), "export")
    assert [op.name for op in module.main.ops][1:] == ["qir.add"]  # a constant, then x + it


@pytest.mark.parametrize("capture", CAPTURES)
def test_in_place_ops_import_as_their_functional_forms(capture):
    """torch.export keeps relu_/add_ in its graph; the importer functionalizes the
    program (run_decompositions) instead of refusing them."""
    module = check(InPlace(), (torch.randn(2, 3, 8, 8),), capture)
    assert not [op for op in module.main.ops if op.name.endswith("_")]
