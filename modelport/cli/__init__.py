"""The `modelport` command: a Click group whose subcommands are imported only when run, so
`modelport --help` loads click and nothing heavy."""

from __future__ import annotations

import importlib

import click

from .._version import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("modelport.cli.convert:convert", "Convert a model to one or more targets and validate each."),
    "validate": ("modelport.cli.validate:validate", "Compare any two models on the same inputs, each on its runtime."),
    "check": ("modelport.cli.check:check", "Run the pre-deploy gate of a modelport.toml: one table, one exit code."),
    "debug": ("modelport.cli.debug:debug", "Find the first layer where a converted model drifts from its source."),
    "doctor": ("modelport.cli.doctor:doctor", "Show installed backends and which sources and targets work here."),
    "bench": ("modelport.cli.bench:bench", "Time a model on its runtime: latency percentiles and peak memory."),
    "inspect": ("modelport.cli.inspect:inspect", "Show a model's format, inputs, outputs, parameters and ops."),
    "quantize-doctor": ("modelport.cli.quantize_doctor:quantize_doctor",
                        "Rank the layers an int8 model loses accuracy in; try keeping the worst in float."),
    "package": ("modelport.cli.package:package", "Bundle a converted, validated model for a device, with a self-test."),
    "toolchain": ("modelport.cli.toolchain:toolchain", "List, install or remove the converters' own environments."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, attr = COMMANDS[name][0].partition(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table, so listing commands imports none of them.
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="modelport")
def main() -> None:
    """Convert trained models between frameworks through ONNX, and prove each result.

    \b
    Example:
      modelport convert model.pt2 --to onnx,tflite
    """
    # The CLI owns its process: keep TensorFlow's C++ logs and CUDA probing quiet for all of it,
    # child processes (LiteRT, tf2onnx) included. Library calls scope this to each import instead.
    import os

    from .._lazy import QUIET_ENV

    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
