"""Parse the textual IR (grammar in grammar.lark) into a Module.

Every problem — a lark syntax error, an undefined value, a bad attribute or quant
parameter — becomes one QirSyntaxError with file:line:col, the offending line and a
caret; lark's own exceptions never escape.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput

from qir.diagnostics import QirError, QirSyntaxError
from qir.ir import Function, Location, Module, Op
from qir.registry import has_op, get_op
from qir.types import CODEBOOKS, QuantType, TensorType, numpy_dtype

# Readable names for the grammar's terminals, used in "expected ..." messages.
_TERMINAL_NAMES = {
    "VALUE": "a value name like %x", "GLOBAL": "a function name like @main",
    "ALIAS": "a type alias like !q0", "OP_NAME": "an op name like qir.add",
    "SHAPE": "dimensions like 1x3x", "SCALAR": "an element type like f32",
    "IDENT": "an attribute name", "FLOAT": "a number", "INT": "an integer",
    "NEG_INT": "an integer", "STRING": "a string", "TRUE": "true", "FALSE": "false",
    "NONE": "none", "INF": "inf", "NAN": "nan", "UNKNOWN": "unknown",
    "LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'", "RBRACE": "'}'", "LSQB": "'['",
    "RSQB": "']'", "LESSTHAN": "'<'", "MORETHAN": "'>'", "COLON": "':'", "COMMA": "','",
    "EQUAL": "'='", "MINUS": "'-'", "FUNC": "'func'", "RETURN": "'return'",
    "TENSOR": "'tensor'", "LOC": "'loc'", "DENSE": "'dense'", "__ANON_0": "'->'",
    "$END": "end of input",
}


@functools.cache
def _lark() -> Lark:
    grammar = (Path(__file__).with_name("grammar.lark")).read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


class _SemanticError(Exception):
    def __init__(self, message: str, node):
        self.message = message
        self.node = node


def parse(text: str, filename: str = "<string>") -> Module:
    """Parse IR text into a Module (parameters have no data until loaded from a sidecar)."""
    lines = text.splitlines()

    def line_text(n: int) -> str:
        return lines[n - 1] if 0 < n <= len(lines) else ""

    try:
        tree = _lark().parse(text)
    except UnexpectedInput as e:
        line, col = getattr(e, "line", -1), getattr(e, "column", -1)
        if isinstance(e, UnexpectedEOF) or line is None or line < 0:
            line = max(len(lines), 1)
            col = len(line_text(line)) + 1
        expected = sorted({_TERMINAL_NAMES.get(x, repr(x)) for x in
                           (getattr(e, "expected", None) or getattr(e, "allowed", None)
                            or ())})
        if isinstance(e, UnexpectedCharacters):
            msg = f"unexpected character {text[e.pos_in_stream]!r}"
        elif isinstance(e, UnexpectedEOF):
            msg = "unexpected end of input"
        else:
            tok = getattr(e, "token", None)
            msg = f"unexpected {_describe_token(tok)}"
        raise QirSyntaxError(msg, filename, line, col, line_text(line), expected) from None
    except LarkError as e:  # anything else lark may raise
        raise QirSyntaxError(f"cannot parse: {e}", filename, 1, 1, line_text(1)) from None
    try:
        module = _Builder().module(tree)
        module.source_file = filename
        return module
    except _SemanticError as e:
        line, col = _position(e.node)
        raise QirSyntaxError(e.message, filename, line, col, line_text(line)) from None


def _describe_token(tok) -> str:
    if tok is None:
        return "input"
    if tok.type == "$END":
        return "end of input"
    return f"{tok.value!r}"


def _position(node) -> tuple[int, int]:
    if isinstance(node, Token):
        return node.line or 1, node.column or 1
    meta = getattr(node, "meta", None)
    if meta is not None and not getattr(meta, "empty", True):
        return meta.line, meta.column
    if isinstance(node, Tree):
        for child in node.children:
            if child is not None:
                pos = _position(child)
                if pos != (1, 1):
                    return pos
    return 1, 1


def _unescape(tok: Token) -> str:
    s = tok.value[1:-1]
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append({"n": "\n", "t": "\t"}.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


class _Builder:
    """Walks the parse tree in order, resolving names and building the Module."""

    def __init__(self):
        self.aliases: dict[str, QuantType] = {}

    def module(self, tree: Tree) -> Module:
        mod = Module()
        for top in tree.children:
            if top.data == "alias_def":
                name_tok, qt = top.children
                if name_tok.value in self.aliases:
                    raise _SemanticError(f"type alias {name_tok.value} is defined twice",
                                         name_tok)
                self.aliases[name_tok.value] = self.quant_type(qt)
            else:
                fn = self.function(top)
                if fn.name in mod.functions:
                    raise _SemanticError(f"function @{fn.name} is defined twice", top)
                mod.add_function(fn)
        return mod

    # --- types -------------------------------------------------------------------------
    def type(self, tree: Tree) -> TensorType:
        shape_tok, elem = tree.children
        shape = tuple(int(d) for d in shape_tok.value.split("x")[:-1]) if shape_tok else ()
        if isinstance(elem, Tree) and elem.data == "scalar_elem":
            ty = TensorType(shape, elem.children[0].value)
        elif isinstance(elem, Tree) and elem.data == "alias_elem":
            tok = elem.children[0]
            if tok.value not in self.aliases:
                raise _SemanticError(f"undefined type alias {tok.value}", tok)
            ty = TensorType(shape, self.aliases[tok.value])
        else:
            ty = TensorType(shape, self.quant_type(elem))
        try:
            ty.validate()
        except QirError as e:
            raise _SemanticError(f"invalid type: {e}", tree) from None
        return ty

    def quant_type(self, tree: Tree) -> QuantType:
        codebook = tree.data == "codebook_type"
        if codebook:
            storage, expressed, axis_node, table, params = tree.children
        else:
            storage, expressed, axis_node, params = tree.children
        st_tok, lo, hi = storage.children
        lo_v = self.signed_int(lo) if lo is not None else None
        hi_v = self.signed_int(hi) if hi is not None else None
        axis = block = None
        if axis_node.data == "per_group":
            axis, block = int(axis_node.children[0]), int(axis_node.children[1])
        elif axis_node.children and axis_node.children[0] is not None:
            axis = int(axis_node.children[0])
        pairs = params.children if params.data == "param_list" else [params]
        scales, zps, pow2 = [], [], []
        for p in pairs:
            s, z = p.children
            if isinstance(s, Token) and s.type == "POW2":
                scales.append(2.0 ** int(s.value[2:]))
                pow2.append(True)
            else:
                scales.append(float(self.number(s)))
                pow2.append(False)
            zps.append(self.signed_int(z) if z is not None else 0)
        kind = "!quant.codebook" if codebook else "!quant.uniform"
        if axis is None and params.data == "param_list":
            raise _SemanticError(f"a list of scales needs a quantization axis, e.g. "
                                 f"{kind}<i8:f32:0, {{...}}>", tree)
        if any(pow2) and not all(pow2):
            raise _SemanticError("write every scale of a power-of-two type as 2^k, or none",
                                 tree)
        levels = None
        if codebook:
            if table.data == "named_codebook":
                name = table.children[0].value
                if name not in CODEBOOKS:
                    raise _SemanticError(f"unknown codebook '{name}' (built in: "
                                         f"{', '.join(CODEBOOKS)}; or a table [l0, l1, ...])",
                                         table.children[0])
                levels = CODEBOOKS[name]
            else:
                levels = tuple(float(self.number(x)) for x in table.children)
        q = QuantType(st_tok.value, expressed.value, tuple(scales), tuple(zps), lo_v, hi_v,
                      axis, block, levels, bool(pow2) and all(pow2))
        try:
            q.validate()
        except QirError as e:
            raise _SemanticError(f"invalid quantized type: {e}", tree) from None
        return q

    # --- literals -----------------------------------------------------------------------
    def signed_int(self, tree: Tree) -> int:
        return int(tree.children[0].value)

    def number(self, node):
        if isinstance(node, Tree):
            if node.data == "signed_int":
                return self.signed_int(node)
            if node.data == "float":
                return float(node.children[0].value)
            if node.data == "inf":
                return float(node.children[0].value)
            if node.data == "nan":
                return float("nan")
        raise _SemanticError("expected a number", node)

    def attr_value(self, node):
        kind = node.data
        if kind in ("signed_int", "float", "inf", "nan"):
            return self.number(node)
        if kind == "string":
            return _unescape(node.children[0])
        if kind == "true":
            return True
        if kind == "false":
            return False
        if kind == "none":
            return None
        if kind == "list":
            return [self.attr_value(c) for c in node.children if c is not None]
        if kind == "dense":
            return self.dense(node)
        raise _SemanticError(f"unexpected attribute value {kind}", node)

    def dense(self, node) -> np.ndarray:
        value, ty_node = node.children
        ty = self.type(ty_node)
        if ty.is_quantized:
            raise _SemanticError("dense literals take a plain element type", ty_node)

        def rec(n):
            if isinstance(n, Tree) and n.data == "dense_list":
                return [rec(c) for c in n.children if c is not None]
            if isinstance(n, Tree) and n.data in ("true", "false"):
                return n.data == "true"
            return self.number(n)

        raw = rec(value)
        try:
            arr = np.array(raw, dtype=np.float64 if ty.is_float else None)
            if arr.dtype == object:
                raise ValueError("ragged")
            arr = arr.astype(numpy_dtype(ty.elem))
        except (ValueError, TypeError, OverflowError) as e:
            raise _SemanticError(f"bad dense literal: {e}", node) from None
        if arr.ndim == 0 and ty.shape:
            arr = np.full(ty.shape, arr, dtype=arr.dtype)
        if arr.shape != ty.shape:
            raise _SemanticError(f"dense literal has shape {list(arr.shape)} but its type "
                                 f"says {list(ty.shape)}", node)
        return arr

    def loc(self, node) -> Location:
        if node is None:
            return Location()
        path_node, file_tok, line_tok = node.children
        p = path_node.children[0]
        path = None if p.type == "UNKNOWN" else _unescape(p)
        file = _unescape(file_tok) if file_tok is not None else None
        line = int(line_tok) if line_tok is not None else None
        return Location(path, file, line)

    # --- functions and ops ----------------------------------------------------------------
    def function(self, tree: Tree) -> Function:
        name_tok, *rest = tree.children
        fn = Function(name_tok.value[1:])
        scope: dict[str, object] = {}
        args, result_types, ops, ret = [], [], [], None
        for child in rest:
            if child is None:
                continue
            if child.data == "arg":
                args.append(child)
            elif child.data == "type":
                result_types.append(self.type(child))
            elif child.data == "op":
                ops.append(child)
            elif child.data == "return_op":
                ret = child
        for a in args:
            tok, ty = a.children
            name = tok.value[1:]
            if name in scope:
                raise _SemanticError(f"argument %{name} is defined twice", tok)
            v = fn.add_arg(name, self.type(ty))
            scope[name] = v
        for op_node in ops:
            self.op(fn, op_node, scope)
        outs = []
        for tok in ret.children:
            if tok is None:
                continue
            if tok.value[1:] not in scope:
                raise _SemanticError(f"use of undefined value {tok.value}", tok)
            outs.append(scope[tok.value[1:]])
        if len(outs) != len(result_types):
            raise _SemanticError(f"@{fn.name} declares {len(result_types)} results but returns "
                                 f"{len(outs)}", ret)
        for i, (v, ty) in enumerate(zip(outs, result_types)):
            if v.type != ty:
                raise _SemanticError(f"result #{i} of @{fn.name} is declared {ty} but "
                                     f"%{v.name} has type {v.type}", ret)
        fn.set_outputs(outs)
        return fn

    def op(self, fn: Function, node: Tree, scope: dict) -> None:
        results, operands, types = [], [], []
        name_tok = attrs_node = loc_node = None
        for c in node.children:
            if c is None:
                continue
            if isinstance(c, Token) and c.type == "VALUE":
                (operands if name_tok is not None else results).append(c)
            elif isinstance(c, Token) and c.type == "OP_NAME":
                name_tok = c
            elif c.data == "attr_dict":
                attrs_node = c
            elif c.data == "type":
                types.append(self.type(c))
            elif c.data == "loc":
                loc_node = c
        if not has_op(name_tok.value):
            raise _SemanticError(f"unknown op '{name_tok.value}'", name_tok)
        opdef = get_op(name_tok.value)
        if len(types) != len(results):
            raise _SemanticError(f"{len(results)} result name(s) but {len(types)} result "
                                 "type(s)", node)
        values = []
        for tok in operands:
            if tok.value[1:] not in scope:
                raise _SemanticError(f"use of undefined value {tok.value}", tok)
            values.append(scope[tok.value[1:]])
        attrs = {}
        if attrs_node is not None:
            for a in attrs_node.children:
                if a is None:
                    continue
                key_tok, val = a.children
                if key_tok.value in attrs:
                    raise _SemanticError(f"attribute '{key_tok.value}' given twice", key_tok)
                attrs[key_tok.value] = self.attr_value(val)
                try:
                    attrs.update(opdef.normalize_attrs({key_tok.value: attrs[key_tok.value]}))
                except QirError as e:
                    raise _SemanticError(str(e), key_tok) from None
        for tok in results:
            if tok.value[1:] in scope:
                raise _SemanticError(f"value {tok.value} is defined twice (SSA values are "
                                     "assigned once)", tok)
        op = Op(name_tok.value, values, attrs, types, [t.value[1:] for t in results],
                self.loc(loc_node))
        op.source_pos = _position(node)
        fn.append(op)
        for tok, r in zip(results, op.results):
            if r.name != tok.value[1:]:  # the namespace renamed it: a collision
                raise _SemanticError(f"value {tok.value} is defined twice", tok)
            scope[r.name] = r


def parse_file(path: str | Path) -> Module:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise QirError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise QirError(f"{path}: not a text file (is it a model archive? use `qir import`)")\
            from None
    return parse(text, str(path))
