"""`python -m qir ...`: the `qir` command where its console script is not installed (a
machine given the source tree and TVM's runtime alone, docs/backends.md)."""

import sys

from qir.cli import main

sys.exit(main())
