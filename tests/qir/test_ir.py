"""The data model: use lists follow operand assignment, names are unique, erasure is
guarded, and the networkx views answer graph questions."""

import pytest

import qir
from qir import Builder, Function, Module, QirError, TensorType
from qir.graph import dead_ops, find_cycle, live_ops, reachable_from, to_networkx, topological_order

F4 = TensorType((4,), "f32")


def make():
    fn = Function("main", [("x", F4), ("y", F4)])
    b = Builder(fn)
    x, y = fn.args
    a = b.value("qir.add", [x, y], names=["add"])
    r = b.value("qir.relu", [a])
    dead = b.value("qir.add", [x, x], names=["add"])
    fn.set_outputs([r])
    m = Module()
    m.add_function(fn)
    return m, fn, x, y, a, r, dead


def test_use_lists_follow_operands():
    m, fn, x, y, a, r, dead = make()
    assert [u.op for u in x.uses] == [a.owner, dead.owner, dead.owner]
    relu = r.owner
    relu.set_operand(0, y)
    assert a.uses == [] and [u.op for u in y.uses][-1] is relu
    relu.operands = [x]
    assert y.users == [a.owner] and relu in x.users
    a.owner.drop_operands()
    assert a.owner not in x.users


def test_unique_names():
    m, fn, x, y, a, r, dead = make()
    assert (a.name, dead.name, r.name) == ("add", "add_1", "relu")
    assert fn.unique_name("add") == "add_2"
    assert fn.unique_name("weird name!") == "weird_name_"


def test_replace_all_uses_and_erase():
    m, fn, x, y, a, r, dead = make()
    with pytest.raises(QirError, match="still has uses"):
        fn.erase(a.owner)
    fn.replace_all_uses(r, a)
    assert fn.outputs == [a]
    fn.erase(r.owner)
    fn.erase(dead.owner)
    qir.verify(m)
    assert "relu" not in qir.print_module(m)


def test_builder_infers_types_and_rejects_open_types():
    m, fn, x, y, a, r, dead = make()
    b = Builder(fn, before=r.owner)
    s = b.value("qir.reshape", [a], {"shape": [2, -1]})
    assert s.type == TensorType((2, 2), "f32")
    assert fn.ops.index(s.owner) == fn.ops.index(r.owner) - 1
    with pytest.raises(QirError, match="needs explicit result types"):
        b.value("qir.quantize", [a])
    with pytest.raises(QirError, match="cannot reshape"):
        b.value("qir.reshape", [a], {"shape": [3, -1]})
    assert len(a.uses) == 2  # the failed ops left no uses behind


def test_verifier_reports_use_before_def():
    m, fn, x, y, a, r, dead = make()
    fn.ops.remove(a.owner)
    fn.ops.append(a.owner)
    with pytest.raises(qir.VerifyError, match="used before it is defined"):
        qir.verify(m)


def test_networkx_views():
    m, fn, x, y, a, r, dead = make()
    g = to_networkx(fn)
    assert g.number_of_edges() == 2 + 1 + 2 + 1  # add, relu, dead add, output
    assert topological_order(fn) == fn.ops
    assert find_cycle(fn) is None
    assert live_ops(fn) == {a.owner, r.owner}
    assert dead_ops(fn) == [dead.owner]
    assert reachable_from(fn, a.owner) == {r.owner}
    fn.ops.reverse()
    assert topological_order(fn)[0] in (a.owner, dead.owner)
    assert topological_order(fn).index(a.owner) < topological_order(fn).index(r.owner)
