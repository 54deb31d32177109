"""Backends: execute or lower qir modules (the numpy reference interpreter, TVM)."""
