"""`modelport doctor`."""

from __future__ import annotations

import click

from ._common import escape, handle_errors


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@handle_errors
def doctor(as_json: bool) -> None:
    """Show each backend and its version, and which sources and targets work on this machine."""
    from ..doctor import diagnose
    from ..validators.report import dumps

    found = diagnose()
    if as_json:
        click.echo(dumps(found), nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"Python {found['python']} on {found['platform']}", highlight=False)
    table = Table(title="backends", title_justify="left")
    table.add_column("package")
    table.add_column("version")
    for name, info in found["backends"].items():
        version = (info["version"] if info["installed"] else
                   "[red]missing[/]" + (escape(f" ({info['install']})") if info.get("install") else ""))
        table.add_row(name, version or "?")
    console.print(table)
    for title in ("sources", "targets"):
        table = Table(title=title, title_justify="left")
        table.add_column("format")
        table.add_column("works here")
        for name, verdict in found[title].items():
            table.add_row(name, "[green]yes[/]" if verdict["works"] else f"[red]no[/]: {escape(', '.join(verdict['missing']))}")
        console.print(table)
    table = Table(title="converters", title_justify="left")
    for column in ("edge", "from", "to", "works here"):
        table.add_column(column)
    for edge in found["edges"]:
        table.add_row(edge["name"], edge["from"], edge["to"],
                      "[green]yes[/]" if edge["works"] else "[red]no[/]: " + escape(edge["install"] or ""))
    console.print(table)
    table = Table(title="toolchains (modelport toolchain list|install|remove)", title_justify="left")
    for column in ("name", "python", "state", "versions"):
        table.add_column(column)
    for chain in found["toolchains"]:
        table.add_row(chain["name"], chain["python_version"] + ("" if chain["python"] else " (not found)"),
                      "[green]installed[/]" if chain["installed"] else f"[red]{escape(chain['problem'] or '')}[/]",
                      escape(", ".join(f"{k} {v}" for k, v in chain["versions"].items())) or "-")
    console.print(table)
    for problem in found["plugins"]["problems"]:
        console.print(f"[red]plugin not loaded:[/] {escape(problem)}", highlight=False)
