"""`modelport check`: the pre-deploy gate, from a config file."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import limit_options, report_options, Progress, handle_errors, write_reports


@click.command(context_settings={"max_content_width": 100})
@click.argument("config", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where converted models go [default: ./modelport-out/<model>/].")
@report_options
@limit_options
@click.option("-v", "--verbose", is_flag=True, help="Show converter logs and tracebacks.")
@handle_errors
def check(config: Path | None, output: Path | None, report: Path | None, junit: Path | None, markdown: Path | None,
          html: Path | None, max_memory: int | None, timeout: float | None, verbose: bool) -> None:
    """Convert and validate every model in CONFIG (modelport.toml, or [tool.modelport] in
    pyproject.toml; found in the current directory when not given), enforce tolerances and
    latency/size budgets, print one table and exit with one code."""
    from .. import api
    from ..validators.report import SCHEMA, _version, report_json
    from .render import check_table

    with Progress() as progress:
        result = api.check(config, output, progress, max_memory=max_memory, timeout=timeout)
    check_table(result)
    results = [r for _, r in result.models]
    document = {"schema": "modelport.check/1", "report_schema": SCHEMA, "modelport_version": _version(),
                "config": str(result.config), "passed": result.passed, "exit_code": result.exit_code,
                "models": [report_json(r, 1) for r in results]}
    write_reports(results, 1, report=report, junit=junit, markdown=markdown, html=html, document=document)
    if result.exit_code:  # the first target whose verdict decided the code, and how many more share it
        failing = [(name, t) for name, r in result.models for t in r.targets if t.exit_code == result.exit_code]
        name, item = failing[0]
        more = f" (and {len(failing) - 1} more)" if len(failing) > 1 else ""
        click.echo(f"Error: {name} -> {item.target}: {item.error}{more}", err=True)
        raise SystemExit(result.exit_code)
