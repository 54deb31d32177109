"""Error types users see. Each carries where (file:line:col, or op + its location)
and what to do; the CLI prints `str(err)` and exits non-zero, never a traceback."""

from __future__ import annotations


class QirError(Exception):
    """Base class of every error qir reports to users."""


class QirTypeError(QirError):
    """An ill-formed type or quantization parameters (scale <= 0, zero point out of range...)."""


class QirSyntaxError(QirError):
    """Malformed IR text: where it is, the offending line with a caret, what was expected."""

    def __init__(self, message: str, filename: str, line: int, col: int, line_text: str,
                 expected: list[str] | None = None):
        self.message = message
        self.filename = filename
        self.line = line
        self.col = col
        self.line_text = line_text
        self.expected = expected or []
        super().__init__(self.format())

    def format(self) -> str:
        out = f"{self.filename}:{self.line}:{self.col}: error: {self.message}"
        if self.expected:
            shown = ", ".join(self.expected[:8]) + (", ..." if len(self.expected) > 8 else "")
            out += f" (expected {shown})"
        if self.line_text is not None:
            out += f"\n  {self.line_text.rstrip()}\n  {' ' * (self.col - 1)}^"
        return out


class Diagnostic:
    """One verifier finding: an op (or function) that breaks a rule."""

    def __init__(self, message: str, op=None, severity: str = "error", where: str = ""):
        self.message = message
        self.op = op
        self.severity = severity
        self.where = where

    def __str__(self) -> str:
        if self.op is not None:
            from qir.printer import format_op_brief

            head = f"{self.where}: " if self.where else ""
            return (f"{head}{self.severity}: {self.message}\n  in: {format_op_brief(self.op)}"
                    + (f"\n  at: {self.op.loc}" if self.op.loc and not self.op.loc.is_unknown()
                       else ""))
        return f"{self.where + ': ' if self.where else ''}{self.severity}: {self.message}"


class VerifyError(QirError):
    """The module breaks IR rules; carries every error diagnostic found, not just the first."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        n = len(diagnostics)
        head = f"verification failed with {n} error{'s' if n != 1 else ''}"
        super().__init__(head + "\n" + "\n".join(str(d) for d in diagnostics))
