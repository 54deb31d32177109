"""networkx views of a function, for analyses (order, cycles, reachability, liveness)."""

from __future__ import annotations

import networkx as nx

from qir.ir import Function, Op

OUTPUT = "<output>"


def to_networkx(fn: Function) -> nx.MultiDiGraph:
    """Nodes: ops, function arguments (Values) and the OUTPUT sink; one edge per use, keyed
    by the operand index, with the value on the edge (`value` attribute)."""
    g = nx.MultiDiGraph()
    for a in fn.args:
        g.add_node(a, kind="arg")
    for op in fn.ops:
        g.add_node(op, kind="op")
    g.add_node(OUTPUT, kind="output")
    for op in fn.ops:
        for i, v in enumerate(op.operands):
            g.add_edge(v.owner if v.owner is not None else v, op, key=i, value=v)
    for i, v in enumerate(fn.outputs):
        g.add_edge(v.owner if v.owner is not None else v, OUTPUT, key=i, value=v)
    return g


def topological_order(fn: Function) -> list[Op]:
    """Ops in an order where every op comes after its operands' producers (stable)."""
    g = to_networkx(fn)
    position = {op: i for i, op in enumerate(fn.ops)}
    order = nx.lexicographical_topological_sort(
        g, key=lambda n: position.get(n, -1) if isinstance(n, Op) else -1)
    return [n for n in order if isinstance(n, Op)]


def find_cycle(fn: Function) -> list[Op] | None:
    try:
        edges = nx.find_cycle(to_networkx(fn))
    except nx.NetworkXNoCycle:
        return None
    return [e[0] for e in edges]


def live_ops(fn: Function) -> set[Op]:
    """Ops whose results reach a function output."""
    g = to_networkx(fn)
    return {n for n in nx.ancestors(g, OUTPUT) if isinstance(n, Op)}


def dead_ops(fn: Function) -> list[Op]:
    """Ops that do not contribute to any output, in function order."""
    live = live_ops(fn)
    return [op for op in fn.ops if op not in live]


def reachable_from(fn: Function, op: Op) -> set[Op]:
    return {n for n in nx.descendants(to_networkx(fn), op) if isinstance(n, Op)}
