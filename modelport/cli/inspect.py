"""`modelport inspect`."""

from __future__ import annotations

import click

from ._common import limit_options, handle_errors, parse_many, registry_choices


@click.command(context_settings={"max_content_width": 100})
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of tables.")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]",
              help="Input shape, for models that do not record it (TorchScript, entry points).")
@click.option("--framework", type=click.Choice(registry_choices("frameworks")),
              default=None, help="Read MODEL as this framework instead of detecting it from its content.")
@click.option("--signature", default=None, help="SavedModel signature [default: serving_default].")
@click.option("--trust-remote-code", is_flag=True, help="Allow loading files that run Python code when loaded.")
@limit_options
@click.option("-v", "--verbose", is_flag=True, help="Show backend logs and tracebacks.")
@handle_errors
def inspect(model: str, as_json: bool, inputs: tuple[str, ...], framework: str | None, signature: str | None,
            trust_remote_code: bool, max_memory: int | None, timeout: float | None, verbose: bool) -> None:
    """Show what MODEL is: format, framework, inputs and outputs, parameters, size and ops."""
    from .. import api
    from ..spec import parse_input
    from ..validators.report import dumps

    options = api.ModelOptions(inputs=parse_many(parse_input, inputs), trust_remote_code=trust_remote_code,
                               signature=signature, verbose=verbose, max_memory=max_memory, timeout=timeout)
    described = api.inspect(model, options, framework)
    if as_json:
        click.echo(dumps(described), nl=False)
        return
    from .render import inspect_tables

    inspect_tables(described)
