"""nn.Module classes as symbolic_trace leaves (`call_module` nodes). Each converter gets
the module instance; parameters become qir.param ops named by their state_dict names
(`layer1.0.conv1.weight`). torch.nn modules without a converter here are traced through
by `from_torch(capture="fx")`, so their functional bodies are converted instead."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from frontends.common import ConversionError, converter
from frontends.context import Context
from frontends.converters import activations as act
from frontends.converters import nn as layers
from frontends.converters import reduce as red
from frontends.converters.shape import to_result_shape
from frontends.converters.util import float_input
from qir import Value


def _param(ctx: Context, module: nn.Module, attr: str) -> Value | None:
    tensor = getattr(module, attr, None)
    if tensor is None:
        return None
    return ctx.param(f"{ctx.node.target}.{attr}", tensor)


def _no_training(module: nn.Module, what: str) -> None:
    if module.training:
        raise ConversionError(f"{what} is in training mode: call model.eval() first")


@converter(nn.Conv1d, nn.Conv2d, emits=("qir.conv1d", "qir.conv2d"))
def conv(ctx: Context, m: nn.Conv1d | nn.Conv2d, x: Any) -> Value:
    if m.padding_mode != "zeros":
        raise ConversionError(f"padding_mode={m.padding_mode!r}: qir pads with zeros only")
    nd = 1 if isinstance(m, nn.Conv1d) else 2
    return layers.conv(ctx, nd, x, _param(ctx, m, "weight"), _param(ctx, m, "bias"), m.stride,
                       m.padding, m.dilation, m.groups)


@converter(nn.Linear, emits=("qir.linear",))
def linear(ctx: Context, m: nn.Linear, x: Any) -> Value:
    return layers.linear(ctx, x, _param(ctx, m, "weight"), _param(ctx, m, "bias"))


@converter(nn.BatchNorm1d, nn.BatchNorm2d, emits=("qir.batch_norm",))
def batch_norm(ctx: Context, m: nn.modules.batchnorm._BatchNorm, x: Any) -> Value:
    if m.training and m.running_mean is not None:
        raise ConversionError("BatchNorm in training mode (it updates its running "
                              "statistics): call model.eval() before exporting")
    training = m.running_mean is None  # track_running_stats=False: batch statistics
    return layers.batch_norm(ctx, x, _param(ctx, m, "running_mean"),
                             _param(ctx, m, "running_var"), _param(ctx, m, "weight"),
                             _param(ctx, m, "bias"), m.eps, training)


@converter(nn.LayerNorm, emits=("qir.layer_norm",))
def layer_norm(ctx: Context, m: nn.LayerNorm, x: Any) -> Value:
    return layers.layer_norm(ctx, x, m.normalized_shape, _param(ctx, m, "weight"),
                             _param(ctx, m, "bias"), m.eps)


@converter(nn.GroupNorm, emits=("qir.group_norm",))
def group_norm(ctx: Context, m: nn.GroupNorm, x: Any) -> Value:
    return layers.group_norm(ctx, x, m.num_groups, _param(ctx, m, "weight"),
                             _param(ctx, m, "bias"), m.eps)


@converter(nn.Embedding, emits=("qir.embedding",))
def embedding(ctx: Context, m: nn.Embedding, x: Any) -> Value:
    if m.max_norm is not None:
        raise ConversionError("embedding with max_norm renormalises the table in place")
    return layers.embedding(ctx, _param(ctx, m, "weight"), x)


@converter(nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, emits=())
def dropout(ctx: Context, m: nn.Module, x: Any) -> Any:
    return layers.dropout(ctx, x, m.p, m.training)


@converter(nn.Identity, emits=())
def identity(ctx: Context, m: nn.Identity, x: Any, *args: Any, **kwargs: Any) -> Any:
    return ctx.value(x)


@converter(nn.Flatten, emits=("qir.reshape",))
def flatten(ctx: Context, m: nn.Flatten, x: Any) -> Value:
    return to_result_shape(ctx, x)


# --- activations ----------------------------------------------------------------------------


def _activation(op: str):
    def lower(ctx: Context, m: nn.Module, x: Any) -> Value:
        return ctx.emit(op, [float_input(ctx, x)])

    return lower


for _op, _cls in [("relu", nn.ReLU), ("silu", nn.SiLU), ("sigmoid", nn.Sigmoid),
                  ("tanh", nn.Tanh), ("hardswish", nn.Hardswish),
                  ("hardsigmoid", nn.Hardsigmoid)]:
    converter(_cls, emits=(f"qir.{_op}",))(_activation(f"qir.{_op}"))


@converter(nn.ReLU6, nn.Hardtanh, emits=("qir.clamp",))
def hardtanh(ctx: Context, m: nn.Hardtanh, x: Any) -> Value:
    return act.hardtanh(ctx, x, m.min_val, m.max_val)


@converter(nn.LeakyReLU, emits=("qir.leaky_relu",))
def leaky_relu(ctx: Context, m: nn.LeakyReLU, x: Any) -> Value:
    return act.leaky_relu(ctx, x, m.negative_slope)


@converter(nn.GELU, emits=("qir.gelu",))
def gelu(ctx: Context, m: nn.GELU, x: Any) -> Value:
    return act.gelu(ctx, x, m.approximate)


@converter(nn.ELU, emits=("qir.elu",))
def elu(ctx: Context, m: nn.ELU, x: Any) -> Value:
    return act.elu(ctx, x, m.alpha)


@converter(nn.Softmax, emits=("qir.softmax",))
def softmax(ctx: Context, m: nn.Softmax, x: Any) -> Value:
    return act.lower_softmax(ctx, "qir.softmax", x, m.dim)


@converter(nn.LogSoftmax, emits=("qir.log_softmax",))
def log_softmax(ctx: Context, m: nn.LogSoftmax, x: Any) -> Value:
    return act.lower_softmax(ctx, "qir.log_softmax", x, m.dim)


# --- pooling --------------------------------------------------------------------------------


@converter(nn.MaxPool1d, nn.MaxPool2d, emits=("qir.max_pool2d",))
def max_pool(ctx: Context, m: nn.MaxPool2d, x: Any) -> Value:
    if m.return_indices:
        raise ConversionError("MaxPool with return_indices=True: qir does not compute indices")
    nd = 1 if isinstance(m, nn.MaxPool1d) else 2
    return red.max_pool(ctx, nd, x, m.kernel_size, m.stride, m.padding, m.dilation,
                        m.ceil_mode)


@converter(nn.AvgPool1d, nn.AvgPool2d, emits=("qir.avg_pool2d",))
def avg_pool(ctx: Context, m: nn.AvgPool2d, x: Any) -> Value:
    nd = 1 if isinstance(m, nn.AvgPool1d) else 2
    return red.avg_pool(ctx, nd, x, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                        m.count_include_pad, getattr(m, "divisor_override", None))


@converter(nn.AdaptiveAvgPool2d, emits=("qir.adaptive_avg_pool2d",))
def adaptive_avg_pool2d(ctx: Context, m: nn.AdaptiveAvgPool2d, x: Any) -> Value:
    return red.adaptive_avg_pool2d(ctx, x, m.output_size)


@converter(nn.AdaptiveAvgPool1d, emits=("qir.adaptive_avg_pool2d",))
def adaptive_avg_pool1d(ctx: Context, m: nn.AdaptiveAvgPool1d, x: Any) -> Value:
    return red.adaptive_avg_pool1d(ctx, x, m.output_size)


def module_has_converter(m: torch.nn.Module) -> bool:
    """symbolic_trace leaves: modules converted whole (others are traced through)."""
    from frontends.common import lookup

    return lookup("call_module", type(m)) is not None
