"""Built-in op declarations, one module per family. Importing this package registers them."""

from qir.ops import core, elementwise, nn, quant, shape  # noqa: F401
