"""Importing this module registers every built-in Relax lowering (the op families'
modules register theirs with `@relax_lowering` when imported)."""

from backends.tvm import float_ops, methods, nn_ops, quant_ops, shape_ops  # noqa: F401
