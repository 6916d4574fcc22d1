"""Statuses, results, and the one exit-code policy every command uses.

A target's `Verdict` is made from what happened (it passed, its numbers failed, an error was
raised, it was skipped, it was converted and not validated); its exit code follows from that and
is never set by hand. Renderers read verdicts; they never recompute them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifact import Artifact
from .errors import ModelportError
from .validators.compare import OutputComparison
from .validators.latency import Latency


class Status(str, enum.Enum):
    PASSED = "passed"          # converted (or given) and validated on its runtime within tolerance
    FAILED = "failed"          # runs, but its numbers (or a budget) are out of bounds
    ERROR = "error"            # could not be converted, loaded or run
    SKIPPED = "skipped"        # not attempted: its backend is not installed here (`--to all`)
    CONVERTED = "converted"    # converted, not validated (--no-validate)
    UNVERIFIED = "unverified"  # numbers matched, but only on inputs that prove nothing (random int8 calibration)

    def __str__(self) -> str:
        return self.value


# Exit codes (the CLI contract): 0 good, 1 validation failed, 2 bad input, 3 conversion failed,
# 4 backend missing. An error carries its own code (its exception class decides it).
EXIT_OK, EXIT_FAILED = 0, 1


@dataclass(frozen=True)
class Verdict:
    status: Status
    message: str | None = None
    error_code: int = 0        # for ERROR: the exit code of the exception that caused it

    @property
    def exit_code(self) -> int:
        if self.status is Status.FAILED:
            return EXIT_FAILED
        if self.status is Status.ERROR:
            return self.error_code or 3
        return EXIT_OK

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    @staticmethod
    def passed() -> Verdict:
        return Verdict(Status.PASSED)

    @staticmethod
    def converted() -> Verdict:
        return Verdict(Status.CONVERTED)

    @staticmethod
    def unverified(message: str) -> Verdict:
        return Verdict(Status.UNVERIFIED, message)

    @staticmethod
    def failed(message: str) -> Verdict:
        return Verdict(Status.FAILED, message)

    @staticmethod
    def skipped(message: str) -> Verdict:
        return Verdict(Status.SKIPPED, message)

    @staticmethod
    def error(problem: ModelportError | str, code: int = 3) -> Verdict:
        if isinstance(problem, ModelportError):
            return Verdict(Status.ERROR, problem.one_line(), problem.exit_code)
        return Verdict(Status.ERROR, problem, code)


def exit_code(verdicts: list[Verdict]) -> int:
    """The run's exit code: the most severe of its verdicts' (backend missing > conversion >
    bad input > validation failed > ok), so a CI gate fails on the worst thing that happened."""
    return max((v.exit_code for v in verdicts), default=EXIT_OK)


@dataclass
class NumericResult:
    atol: float
    rtol: float
    samples: int
    outputs: list[OutputComparison]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def worst(self) -> OutputComparison:
        failing = [o for o in self.outputs if not o.passed] or self.outputs
        return max(failing, key=lambda o: (o.max_abs_diff, -o.cosine))

    def to_json(self) -> dict[str, Any]:
        return {"atol": self.atol, "rtol": self.rtol, "samples": self.samples,
                "outputs": [o.to_json() for o in self.outputs]}


@dataclass
class TargetResult:
    target: str
    verdict: Verdict = field(default_factory=lambda: Verdict.error("not run"))
    artifact: Artifact | None = None
    path: Path | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    seconds: float = 0.0
    numeric: NumericResult | None = None
    latency: Latency | None = None
    reference_latency: Latency | None = None
    plan: tuple[str, ...] = ()
    budgets: list[dict[str, Any]] = field(default_factory=list)  # `check`: each budget, limit, value, verdict
    notes: list[str] = field(default_factory=list)               # facts a reader should know (CPU features...)
    float_size_bytes: int | None = None      # quantized targets: the same model in float32, for the drift report
    float_latency: Latency | None = None     # ... and its latency on the same runtime
    runtime: str | None = None               # what ran it, as the runner names itself after the runs

    @property
    def status(self) -> str:
        return self.verdict.status.value

    @property
    def error(self) -> str | None:
        return self.verdict.message

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code


@dataclass
class ConvertResult:
    source: dict[str, Any]
    targets: list[TargetResult] = field(default_factory=list)
    converter_runs: dict[str, int] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None  # int8: where the calibration data came from, how it was split

    @property
    def passed(self) -> bool:
        return all(t.verdict.ok for t in self.targets)

    @property
    def exit_code(self) -> int:
        return exit_code([t.verdict for t in self.targets])

    def first_problem(self) -> TargetResult | None:
        """The target whose verdict decided the exit code (for the one error line)."""
        worst = self.exit_code
        return next((t for t in self.targets if worst and t.exit_code == worst), None)


@dataclass
class CheckResult:
    config: Path
    models: list[tuple[str, ConvertResult]]

    @property
    def exit_code(self) -> int:
        return exit_code([t.verdict for _, r in self.models for t in r.targets])

    @property
    def passed(self) -> bool:
        return all(r.passed for _, r in self.models)
