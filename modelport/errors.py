"""One exception class per exit code. Each message says what went wrong and what to do."""

from __future__ import annotations


class ModelportError(Exception):
    """Base of every error modelport reports to a user; `exit_code` is the CLI's exit status."""

    exit_code: int = 3

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} {self.hint}".strip() if self.hint else self.message


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's text, or its type's name when it has none."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]


def error_summary(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's text; when it only introduces what follows ("Graph
    execution error:"), the first line after it that is not a stack-trace banner."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0]
    if text.endswith(":"):
        detail = next((ln for ln in lines[1:] if not ln.startswith(("Detected at", "<stack", "File "))), None)
        if detail:
            text = f"{text} {detail}"
    return text[:limit]


class ValidationFailed(ModelportError):
    """Numbers out of tolerance, or a budget broken (exit 1)."""

    exit_code = 1


class BadInput(ModelportError):
    """Bad invocation or bad input: unreadable, corrupt, unsafe, wrong format, malformed option (exit 2)."""

    exit_code = 2


class ConversionFailed(ModelportError):
    """A converter could not produce the artifact: unsupported op, converter error (exit 3)."""

    exit_code = 3


class BackendMissing(ModelportError):
    """A package the request needs is not installed (exit 4)."""

    exit_code = 4


class ModelProcessDied(ModelportError):
    """The process running a model ended without an answer: killed, crashed, aborted (exit 3)."""

    exit_code = 3


class TimedOut(ModelportError):
    """The model's work went past --timeout; its process was stopped (exit 3)."""

    exit_code = 3


class UnexpectedError(Exception):
    """An exception the model worker did not foresee (a bug), carried by its type's name and text:
    the original class may live in a framework the calling process must not import."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(kind, text)
        self.kind = kind

    def __str__(self) -> str:
        return str(self.args[1])


def _rebuild(cls: type, message: str, hint: str | None) -> ModelportError:
    return cls(message, hint)


def _reduce(self: ModelportError) -> tuple[object, ...]:
    return (_rebuild, (type(self), self.message, self.hint))


# Errors cross process boundaries (isolated runners); keep the hint when pickled.
# mypy types an assigned method's self as object; _reduce is only ever bound to a ModelportError.
ModelportError.__reduce__ = _reduce  # type: ignore[method-assign, assignment]
