"""`modelport bench`."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import limit_options, handle_errors, parse_many, positive


@click.command(context_settings={"max_content_width": 100})
@click.argument("model")
@click.option("--runs", type=int, default=50, show_default=True, help="Timed runs.")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed runs first.")
@click.option("--threads", type=int, default=1, show_default=True, help="Runtime threads (pinned).")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]",
              help="Input shape where the model does not record it.")
@click.option("--against", default=None, metavar="REF", help="Also time REF, in the same process, and print the ratio.")
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Write a JSON report.")
@click.option("--trust-remote-code", is_flag=True, help="Allow loading files that run Python code when loaded.")
@limit_options
@click.option("-v", "--verbose", is_flag=True, help="Show backend logs and tracebacks.")
@handle_errors
def bench(model: str, runs: int, warmup: int, threads: int, inputs: tuple[str, ...], against: str | None,
          report: Path | None, trust_remote_code: bool, max_memory: int | None, timeout: float | None, verbose: bool) -> None:
    """Time MODEL on its own runtime: p50/p90/p99/mean/min latency and peak memory."""
    from rich.console import Console
    from rich.table import Table

    from .. import api
    from ..spec import parse_input
    from ..validators.report import dumps, environment

    if warmup < 0:
        raise click.BadParameter("must be 0 or more", param_hint="--warmup")
    options = api.BenchOptions(inputs=parse_many(parse_input, inputs), runs=positive("--runs", runs), warmup=warmup,
                               threads=positive("--threads", threads), against=against,
                               trust_remote_code=trust_remote_code, verbose=verbose, max_memory=max_memory, timeout=timeout)
    results = api.bench(model, options)
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 140)
    table = Table(title=f"modelport bench ({runs} runs after {warmup} warm-up, {threads} thread(s))",
                  title_justify="left")
    for column in ("model", "runtime", "p50 ms", "p90 ms", "p99 ms", "mean ms", "min ms", "peak RSS MB"):
        table.add_column(column, justify="left" if column in ("model", "runtime") else "right")
    for item in results:
        lat = item.latency
        table.add_row(item.model, item.runtime, f"{lat.p50:.3f}", f"{lat.p90:.3f}", f"{lat.p99:.3f}",
                      f"{lat.mean:.3f}", f"{lat.min:.3f}",
                      f"{item.peak_rss_bytes / 2**20:.0f}" if item.peak_rss_bytes else "-")
    console.print(table)
    ratio = results[0].latency.p50 / results[1].latency.p50 if len(results) > 1 and results[1].latency.p50 else None
    if ratio is not None:
        console.print(f"p50 ratio ({results[0].model} / {results[1].model}): {ratio:.2f}", highlight=False)
    if report:
        api.write_atomic(dumps({"schema": "modelport.bench/1", "environment": environment(threads),
                                 "results": [r.to_json() for r in results], "p50_ratio": ratio}), report)
