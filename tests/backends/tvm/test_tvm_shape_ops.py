"""Data movement on float, integer and quantized tensors: the TVM build moves exactly the
stored values the numpy interpreter does."""

from __future__ import annotations

import numpy as np
from tvm_helpers import case, check_cases, rand, randint

from qir.types import QuantType, TensorType


def test_data_movement_float():
    x = rand(2, 3, 4, 5)
    cases = [case("qir.reshape", x, attrs={"shape": [6, -1]}),
             case("qir.permute", x, attrs={"perm": [2, 0, 3, 1]}),
             case("qir.broadcast_to", rand(3, 1, 5), attrs={"shape": [2, 3, 4, 5]}),
             case("qir.concat", x, rand(2, 1, 4, 5, seed=1), attrs={"axis": 1}),
             case("qir.concat", x, attrs={"axis": -1}),
             case("qir.split", x, attrs={"axis": 3, "sizes": [1, 3, 1]}),
             case("qir.split", x, attrs={"axis": 0, "sizes": [2]}),
             case("qir.slice", x, attrs={"axis": 2, "start": 1, "end": 3}),
             case("qir.slice", x, attrs={"axis": -1, "start": -4, "step": 2}),
             case("qir.slice", x, attrs={"axis": 1, "start": -100, "end": 100}),
             case("qir.gather", x, np.array([3, -1, 0], np.int64), attrs={"axis": 2}),
             case("qir.gather", x, np.array([[1, -2], [0, 2]], np.int32), attrs={"axis": 1}),
             case("qir.gather", x, np.array(-1, np.int64), attrs={"axis": 0}),
             case("qir.pad", x, attrs={"pads": [0, 1, 2, 0, 0, 0, 1, 3], "value": -1.5}),
             case("qir.pad", x, attrs={"pads": [0, -1, 2, 0, 0, 1, -2, 0]}),
             case("qir.tril", x), case("qir.triu", x, attrs={"diagonal": 1}),
             case("qir.tril", rand(3, 6, seed=2), attrs={"diagonal": -1}),
             case("qir.where", rand(4, 5, seed=3) > 0, x, rand(5, seed=4))]
    check_cases(cases)


def test_data_movement_integer_and_bool():
    i = randint(-100, 100, 3, 4, dtype=np.int64)
    b = rand(3, 4, seed=1) > 0
    cases = [case("qir.permute", i, attrs={"perm": [1, 0]}),
             case("qir.concat", b, b, attrs={"axis": 0}),
             case("qir.pad", i, attrs={"pads": [1, 0, 0, 2], "value": 7.0}),
             case("qir.slice", b, attrs={"axis": 1, "start": 1, "step": 2}),
             case("qir.broadcast_to", i[:1], attrs={"shape": [2, 3, 4]})]
    check_cases(cases)


def qt(shape, storage="i8", scales=(0.05,), zps=(3,), axis=None):
    return TensorType(tuple(shape), QuantType(storage, "f32", scales, zps, axis=axis))


def test_data_movement_quantized_keeps_stored_values():
    q = randint(-128, 127, 2, 3, 4, seed=5)
    ty = qt(q.shape)
    per_axis = qt(q.shape, scales=(0.1, 0.02, 0.3), zps=(-5, 0, 9), axis=1)
    u = randint(0, 255, 2, 3, 4, seed=6, dtype=np.uint8)
    uty = qt(u.shape, storage="u8", zps=(128,))

    def moved(name, arg, out_shape, attrs, out_ty=None):
        src = arg[1]
        return case(name, arg, attrs=attrs,
                    result_types=[(out_ty or src).with_shape(out_shape)])

    cases = [moved("qir.reshape", (q, ty), (6, 4), {"shape": [6, 4]}),
             moved("qir.permute", (q, per_axis), (3, 4, 2), {"perm": [1, 2, 0]},
                   qt((3, 4, 2), scales=(0.1, 0.02, 0.3), zps=(-5, 0, 9), axis=0)),
             moved("qir.slice", (u, uty), (2, 3, 2), {"axis": 2, "start": 1, "end": 3}),
             # real padding value 0.25 -> quantized round(0.25 / 0.05) + 3 = 8
             moved("qir.pad", (q, ty), (2, 3, 7), {"pads": [0, 0, 1, 0, 0, 2],
                                                   "value": 0.25}),
             # per-axis: each channel pads with its own quantize(value)
             moved("qir.pad", (q, per_axis), (2, 3, 6), {"pads": [0, 0, 1, 0, 0, 1],
                                                         "value": 0.3}),
             moved("qir.gather", (u, uty), (2, 2, 4), {"axis": 1}, None)]
    cases[-1] = case("qir.gather", (u, uty), np.array([2, -3], np.int64), attrs={"axis": 1},
                     result_types=[uty.with_shape((2, 2, 4))])
    cases.append(case("qir.concat", (q, ty), (q[:, :1], ty.with_shape((2, 1, 4))),
                      attrs={"axis": 1}, result_types=[ty.with_shape((2, 4, 4))]))
    cases.append(case("qir.split", (q, ty), attrs={"axis": 2, "sizes": [3, 1]},
                      result_types=[ty.with_shape((2, 3, 3)), ty.with_shape((2, 3, 1))]))
    check_cases(cases)


def test_params_and_constants_become_typed_constants():
    from tvm_helpers import compare

    import qir

    fn = qir.Function("main", [("x", TensorType((2, 3), "f32"))])
    module = qir.Module()
    module.add_function(fn)
    module.params["w"] = rand(2, 3, seed=9)
    module.params["ids"] = np.array([2**40, -1, 3], np.int64)  # int64 stays int64
    b = qir.Builder(fn)
    w = b.create("qir.param", [], {"name": "w"}, [TensorType((2, 3), "f32")])
    ids = b.create("qir.param", [], {"name": "ids"}, [TensorType((3,), "i64")])
    c = b.create("qir.constant", [], {"value": np.array([1.5, -2.0, 0.0], np.float32)},
                 [TensorType((3,), "f32")])
    y = b.create("qir.add", [fn.args[0], w.result])
    z = b.create("qir.mul", [y.result, c.result])
    fn.set_outputs([z.result, ids.result, y.result])
    qir.verify(module)
    compare(module, {"x": rand(2, 3)})
