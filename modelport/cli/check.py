"""`modelport check`: the pre-deploy gate, from a config file."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click

from ._common import escape, handle_errors, limit_options, report_options, write_reports


class ZooProgress:
    """The zoo's progress on stderr: on a terminal, one bar for the models and a line per worker
    with its current model and step; on a pipe (CI logs), one line per finished model."""

    def __init__(self) -> None:
        import threading

        from rich.console import Console

        self.console = Console(stderr=True)
        self.live = self.console.is_terminal
        self._lock = threading.Lock()
        self._bar: Any = None
        self._zoo: Any = None
        self._slots: dict[int, Any] = {}
        self._started: dict[int, float] = {}
        self.total = 0
        self.finished_count = 0

    def planned(self, total: int) -> None:
        self.total = total
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=True)
            self._zoo = self._bar.add_task("models", total=total)
            self._bar.start()

    def _slot(self, slot: int) -> Any:
        if slot not in self._slots:
            self._slots[slot] = self._bar.add_task("", total=None)
        return self._slots[slot]

    def started(self, slot: int, job: Any) -> None:
        with self._lock:
            self._started[slot] = time.perf_counter()
            if self._bar is not None:
                self._bar.update(self._slot(slot), description=f"  [{slot + 1}] {escape(job.name)}")

    def step(self, slot: int, event: str, message: str) -> None:
        with self._lock:
            if self._bar is not None and event == "start" and slot in self._slots:
                name = self._bar.tasks[self._slots[slot]].description.split(": ")[0]
                self._bar.update(self._slots[slot], description=f"{name}: {escape(message)}")

    def finished(self, slot: int, job: Any, outcome: Any, cached: bool = False) -> None:
        from ..errors import ModelportError

        with self._lock:
            self.finished_count += 1
            began = self._started.pop(slot, None)
            if isinstance(outcome, ModelportError):
                status = f"error: {outcome.one_line()}"
            else:
                statuses = [t.status for t in outcome.targets]
                status = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses)) or "no targets"
            how = " (cached)" if cached else f" ({time.perf_counter() - began:.1f}s)" if began is not None else ""
            line = f"[{self.finished_count}/{self.total}] {job.name}: {status}{how}"
            if self._bar is not None:
                self._bar.advance(self._zoo)
                if slot in self._slots:
                    self._bar.update(self._slots[slot], description=f"  [{slot + 1}] idle")
                self._bar.console.print(f"[dim]{escape(line)}[/dim]", highlight=False)
            else:
                self.console.print(escape(line), highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@click.command(context_settings={"max_content_width": 100})
@click.argument("config", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where converted models go [default: ./modelport-out/<model>/].")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Models converted at once, each in its own worker process [default: the CPU count].")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: --jobs workers on this machine; ray: Ray tasks (pip install 'modelport[ray]').")
@click.option("--address", default=None, metavar="ADDR",
              help="With --executor ray: the cluster to join (host:6379 or ray://host:10001) [default: start "
                   "a local Ray with --jobs CPUs].")
@click.option("--cpus-per-model", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="With --executor ray: CPUs each model's task reserves.")
@click.option("--cache", "cache", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Reuse results of models already checked with the same source, options and stack "
                   "[default: $MODELPORT_HOME/check-cache].")
@click.option("--no-cache", is_flag=True, help="Convert every model again (and store nothing).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run into the same -o: models it finished "
              "are not converted again.")
@report_options
@limit_options
@click.option("-v", "--verbose", is_flag=True, help="Show converter logs and tracebacks.")
@handle_errors
def check(config: Path | None, output: Path | None, jobs: int | None, executor: str, address: str | None,
          cpus_per_model: float, cache: Path | None, no_cache: bool, resume: bool, report: Path | None,
          junit: Path | None, markdown: Path | None, html: Path | None, max_memory: int | None,
          timeout: float | None, verbose: bool) -> None:
    """Convert and validate every model in CONFIG (modelport.toml, or [tool.modelport] in
    pyproject.toml; found in the current directory when not given), enforce tolerances and
    latency/size budgets, print one table and exit with one code.

    Models run in parallel (--jobs), or on Ray (--executor ray); the report is the same as a
    serial run's, in the config's order. Results are cached by source, options and stack."""
    from .. import api
    from ..check_cache import default_cache_dir
    from ..errors import BadInput
    from ..validators.report import SCHEMA, _version, report_json
    from .render import check_table

    if no_cache and cache is not None:
        raise BadInput("--cache and --no-cache contradict each other.", "Pass one of them.")
    if address and executor != "ray":
        raise BadInput("--address names a Ray cluster; it needs --executor ray.", "Add --executor ray.")
    progress = ZooProgress()
    try:
        result = api.check(config, output, progress, max_memory=max_memory, timeout=timeout,
                           jobs=jobs or _default_jobs(), executor=executor, address=address,
                           cpus_per_model=cpus_per_model, cache=None if no_cache else (cache or default_cache_dir()),
                           resume=resume, verbose=verbose)
    finally:
        progress.close()
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
