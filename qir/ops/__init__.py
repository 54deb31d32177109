"""Built-in op declarations, one module per family. Importing this package registers them."""

from qir.ops import core, elementwise, nn, quant, shape  # noqa: F401
from qir.ops import methods  # noqa: F401,E402  (ops of docs/methods.md)
