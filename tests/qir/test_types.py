"""Types and quantization parameters: validation rules and their messages."""

import math

import pytest

from qir import QirTypeError, QuantType, TensorType


def q(**kw):
    base = dict(storage="i8", expressed="f32", scales=(0.1,), zero_points=(0,))
    base.update(kw)
    return QuantType(**base)


@pytest.mark.parametrize("kw, msg", [
    (dict(scales=(0.0,)), "scale must be positive and finite"),
    (dict(scales=(-1.0,)), "scale must be positive and finite"),
    (dict(scales=(math.inf,)), "scale must be positive and finite"),
    (dict(scales=(math.nan,)), "scale must be positive and finite"),
    (dict(zero_points=(128,)), "zero point 128 is outside the storage range"),
    (dict(storage="u8", zero_points=(-1,)), "zero point -1 is outside"),
    (dict(storage_min=-127, storage_max=127, zero_points=(-128,)), "outside the storage range"),
    (dict(storage_min=-200, storage_max=127), "is not inside i8's range"),
    (dict(scales=(0.1, 0.2), zero_points=(0, 0)), "give an axis"),
    (dict(scales=(0.1,), zero_points=(0, 0)), "1 scales but 2 zero points"),
    (dict(storage="f8e4m3", zero_points=(3,)), "fp8 quant types have zero point 0"),
    (dict(storage="f32"), "quant storage type must be one of"),
    (dict(expressed="i8"), "quant expressed type must be one of"),
])
def test_invalid_quant_params(kw, msg):
    with pytest.raises(QirTypeError, match=msg):
        q(**kw).validate()


def test_axis_and_group_checked_against_shape():
    per_axis = q(scales=(0.1, 0.2, 0.3), zero_points=(0, 0, 0), axis=1)
    TensorType((2, 3), per_axis).validate()
    with pytest.raises(QirTypeError, match="has 3 scales but dimension 0 has size 2"):
        TensorType((2, 3), q(scales=(0.1, 0.2, 0.3), zero_points=(0, 0, 0), axis=0)).validate()
    with pytest.raises(QirTypeError, match="out of range for a rank-2"):
        TensorType((2, 3), q(scales=(0.1,) * 3, zero_points=(0,) * 3, axis=2)).validate()
    grouped = q(storage="i4", scales=(0.1,) * 4, zero_points=(0,) * 4, axis=1, block_size=4)
    TensorType((2, 8), grouped).validate()
    assert grouped.group_shape((2, 8)) == (2, 2)
    ragged = q(storage="i4", scales=(0.1,) * 6, zero_points=(0,) * 6, axis=1, block_size=3)
    TensorType((2, 8), ragged).validate()  # groups 0..2, 3..5, 6..7: the last one shorter
    assert ragged.group_shape((2, 8)) == (2, 3)
    with pytest.raises(QirTypeError, match="needs 6 scales"):
        TensorType((2, 8), q(storage="i4", scales=(0.1,) * 4, zero_points=(0,) * 4, axis=1,
                             block_size=3)).validate()
    with pytest.raises(QirTypeError, match="needs 4 scales"):
        TensorType((2, 8), q(storage="i4", scales=(0.1,) * 2, zero_points=(0,) * 2, axis=1,
                             block_size=4)).validate()


def test_narrow_range_and_defaults():
    t = q(storage_min=-127, storage_max=127)
    assert (t.qmin, t.qmax) == (-127, 127) and not t.has_default_range()
    assert (q().qmin, q().qmax) == (-128, 127) and q().has_default_range()
    assert q(storage="f8e4m3").qmax == 448.0


def test_type_equality_and_printing():
    a = TensorType((1, 3), q(scales=(0.0235,), zero_points=(-3,)))
    assert a == TensorType((1, 3), q(scales=(0.0235,), zero_points=(-3,)))
    assert str(a) == "tensor<1x3x!quant.uniform<i8:f32, 0.0235:-3>>"
    assert str(TensorType((), "f32")) == "tensor<f32>"
    with pytest.raises(QirTypeError, match="unknown element type"):
        TensorType((2,), "f12").validate()
