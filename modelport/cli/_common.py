"""Shared CLI plumbing: error -> exit code mapping, progress rendering, option parsing."""

from __future__ import annotations

import functools
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import BadInput, ModelportError


def fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: unwind (scratch removed, nothing half-written), then exit 143."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Every non-zero exit prints one line saying what went wrong and what to do."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import signal

        verbose = bool(kwargs.get("verbose"))
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return command(*args, **kwargs)
        except ModelportError as exc:
            if verbose:
                traceback.print_exc()
            fail(exc.one_line(), exc.exit_code)
        except Terminated:
            click.echo("Terminated; nothing half-written was left in the output directory.", err=True)
            sys.exit(143)
        except KeyboardInterrupt:
            click.echo("Interrupted; nothing half-written was left in the output directory.", err=True)
            sys.exit(130)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except Exception as exc:  # a bug of ours: say so in one line, trace with --verbose
            if verbose:
                traceback.print_exc()
            kind = getattr(exc, "kind", type(exc).__name__)  # (the worker's UnexpectedError names the original)
            fail(f"Unexpected {kind}: {exc}. Re-run with --verbose and report it.", 3)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper


def escape(text: str) -> str:
    """Text from models and errors may hold '[...]', which rich would read as markup."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


class Progress:
    """Steps on stderr: a live spinner on a terminal; on a pipe, one line per step over a second."""

    def __init__(self, enabled: bool = True) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled = enabled
        self._status: Any = None  # a rich Status while a spinner runs
        self._started = 0.0
        self._message = ""

    def __call__(self, event: str, message: str) -> None:
        if not self.enabled:
            return
        if event == "start":
            self._started = time.perf_counter()
            self._message = message
            if self.console.is_terminal:
                self._stop()
                self._status = self.console.status(escape(message) + "…")
                self._status.start()
        else:
            elapsed = time.perf_counter() - self._started
            self._stop()
            if elapsed >= 1.0:
                self.console.print(f"[dim]{escape(message)}: {elapsed:.1f}s[/dim]", highlight=False)

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def close(self) -> None:
        self._stop()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def parse_many(parser: Callable[[str], Any], values: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(parser(v) for v in values)


def fail_on(result: Any, prefix: str = "") -> None:
    """Exit with the result's code, printing the one line of the target that decided it."""
    problem = result.first_problem()
    if problem is not None:
        click.echo(f"Error: {prefix}{problem.error}", err=True)
        raise SystemExit(result.exit_code)


def registry_choices(kind: str) -> list[str]:
    """CLI choices derived from the format registry: "targets", "frameworks", or "bundles" (targets
    whose format declares a standalone runner for `package`)."""
    from ..registry import default

    registry = default()
    if kind == "bundles":
        from ..packaging import packageable

        return packageable(registry)
    return registry.targets() if kind == "targets" else registry.frameworks()


def positive(name: str, value: int) -> int:
    if value < 1:
        raise BadInput(f"{name} must be at least 1 (got {value}).", f"Pass {name} 1 or more.")
    return value


def limit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--max-memory and --timeout, on every command that loads a model."""

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
        from ..spec import parse_size

        try:
            return parse_size(value) if value is not None else None
        except BadInput as exc:
            raise click.BadParameter(exc.message, ctx=ctx, param=param) from None

    command = click.option("--timeout", "timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                           metavar="SECONDS", help="Stop the model's work past this many seconds (exit 3) "
                           "[default: no limit].")(command)
    return click.option("--max-memory", "max_memory", default=None, metavar="SIZE", callback=parse,
                        help="Memory a model's runs may use, e.g. 8G; more is exit 2 [default: 80% of RAM].")(command)


def report_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--report/--junit/--markdown/--html, the same on every command that validates."""
    from pathlib import Path

    file = click.Path(path_type=Path, dir_okay=False)
    for name, text in reversed((("--report", "Write a JSON report (schema modelport.report/1)."),
                                ("--junit", "Write a JUnit XML report (one testcase per target and output)."),
                                ("--markdown", "Write a Markdown report (for a CI job summary)."),
                                ("--html", "Write a self-contained HTML report with charts."))):
        command = click.option(name, type=file, default=None, help=text)(command)
    return command


def write_reports(results: list, threads: int, report: Path | None = None, junit: Path | None = None,
                  markdown: Path | None = None, html: Path | None = None,
                  document: dict | None = None) -> None:
    """Write each requested report (atomically); all formats render the same JSON documents."""
    if not any((report, junit, markdown, html)):
        return
    from ..api import write_atomic
    from ..validators.report import dumps, report_json

    documents = [report_json(r, threads) for r in results]
    if report:
        write_atomic(dumps(document if document is not None else documents[0]), report)
    if junit or markdown or html:
        from ..validators import report_formats

        for path, render in ((junit, report_formats.junit_xml), (markdown, report_formats.markdown),
                             (html, report_formats.html)):
            if path:
                write_atomic(render(documents), path)
