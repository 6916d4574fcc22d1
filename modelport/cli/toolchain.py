"""`modelport toolchain list|install|remove`."""

from __future__ import annotations

import json

import click

from ._common import escape, handle_errors


@click.group("toolchain", context_settings={"max_content_width": 100})
def toolchain() -> None:
    """Converters and runtimes in their own environments (another Python, other numpy/onnx).

    Each is built from a lock committed in modelport, under $MODELPORT_HOME/toolchains (default:
    ~/.cache/modelport); conversions never download anything."""


@toolchain.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@handle_errors
def list_toolchains(as_json: bool) -> None:
    """Show every toolchain: its Python, state, size and versions."""
    from rich.console import Console
    from rich.table import Table

    from ..artifact import human_size
    from ..toolchains import declared, state

    states = [(t, state(t)) for t in declared().values()]
    if as_json:
        click.echo(json.dumps([{**s.to_json(), "description": t.description, "python_version": t.python}
                               for t, s in states], indent=2))
        return
    table = Table(title="toolchains", title_justify="left")
    for column in ("name", "python", "state", "size", "versions", "for"):
        table.add_column(column)
    for item, found in states:
        table.add_row(item.name, f"{item.python}" + (f" ({found.python})" if found.python else " (not found)"),
                      "[green]installed[/]" if found.installed else f"[red]{escape(found.problem or 'missing')}[/]",
                      human_size(found.size_bytes) if found.size_bytes else "-",
                      escape(", ".join(f"{k} {v}" for k, v in found.versions.items())) or "-",
                      escape(item.description))
    Console().print(table)


@toolchain.command("install")
@click.argument("names", nargs=-1)
@click.option("--defaults", is_flag=True, help="Install every default toolchain whose Python exists here; say which "
                                               "were skipped and why.")
@click.option("--force", is_flag=True, help="Rebuild toolchains that are already installed.")
@handle_errors
def install_toolchain(names: tuple[str, ...], defaults: bool, force: bool) -> None:
    """Build the named toolchains from their locks (uv if present, else venv + pip)."""
    from ..artifact import human_size
    from ..errors import BackendMissing, BadInput
    from ..toolchains import declared, find_python, get, install, state

    if not names and not defaults:
        raise BadInput("Name a toolchain to install, or pass --defaults.",
                       f"Toolchains: {', '.join(declared())}.")
    chosen = [get(n) for n in names]
    if defaults:
        for item in declared().values():
            if not item.default or item in chosen:
                continue
            if find_python(item.python) is None:
                click.echo(f"skipped toolchain {item.name}: Python {item.python} is not on this machine "
                           f"(install it, e.g. pyenv install {item.python}, then `modelport toolchain install "
                           f"{item.name}`)")
                continue
            chosen.append(item)
    for item in chosen:
        if state(item).installed and not force:
            click.echo(f"toolchain {item.name} is already installed in {item.env} (--force rebuilds it)")
            continue
        try:
            found = install(item, say=lambda line: click.echo(f"{item.name}: {line}", err=True))
        except BackendMissing as exc:
            if not defaults or item.name in names:
                raise
            # --defaults (make install): a toolchain is optional, its converters have fallbacks
            click.echo(f"skipped toolchain {item.name}: {exc.one_line()}")
            continue
        click.echo(f"installed toolchain {item.name} in {found.env} ({human_size(found.size_bytes)}, "
                   f"{found.install_seconds:.0f} s)")


@toolchain.command("remove")
@click.argument("names", nargs=-1, required=True)
@handle_errors
def remove_toolchain(names: tuple[str, ...]) -> None:
    """Delete the named toolchains' environments."""
    from ..toolchains import get, remove

    for name in names:
        item = get(name)
        click.echo(f"removed toolchain {name}" if remove(item) else f"toolchain {name} was not installed")
