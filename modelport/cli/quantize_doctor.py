"""`modelport quantize-doctor`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import Progress, escape, handle_errors, limit_options, parse_many


@click.command("quantize-doctor", context_settings={"max_content_width": 100})
@click.argument("source")
@click.option("--to", "to", default="onnx", show_default=True, metavar="onnx|tflite",
              help="The int8 model to diagnose: onnxruntime's QDQ, or TFLite's (TensorFlow's QuantizationDebugger).")
@click.option("--calibration-data", required=True, metavar="PATH|random",
              help="Representative inputs, as for convert; a fifth is held out for the comparison.")
@click.option("--preprocess", default=None, metavar="SPEC", help="How calibration images become inputs.")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]", help="Input shape, as for convert.")
@click.option("--keep-float", default=None, metavar="N|auto",
              help="Re-quantize with the worst 0..N layers left in float (auto: until --min-cosine holds).")
@click.option("--min-cosine", type=float, default=None,
              help="The accuracy bar for --keep-float auto and the chosen model [default: 0.99].")
@click.option("-o", "--output", "output", type=click.Path(path_type=Path), default=None,
              help="Write the chosen int8 model here (TFLite: float I/O, int8 inside).")
@click.option("--top", type=int, default=10, show_default=True, help="Layers to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--trust-remote-code", is_flag=True, help="Allow loading files that run Python code when loaded.")
@limit_options
@click.option("-v", "--verbose", is_flag=True, help="Show converter logs and tracebacks.")
@handle_errors
def quantize_doctor(source: str, to: str, calibration_data: str, preprocess: str | None, inputs: tuple[str, ...],
                    keep_float: str | None, min_cosine: float | None, output: Path | None, top: int, as_json: bool,
                    trust_remote_code: bool, max_memory: int | None, timeout: float | None, verbose: bool) -> None:
    """Quantize SOURCE to int8, run the float and int8 models layer by layer on the same held-out
    samples, and rank layers by the signal-to-noise ratio (dB) each one loses. With --keep-float,
    re-quantize with the worst layers left in float and print size against accuracy per choice."""
    from rich.console import Console
    from rich.table import Table

    from .. import api
    from ..artifact import human_size
    from ..spec import parse_input

    options = api.DoctorOptions(targets=(to,), calibration_data=calibration_data, preprocess=preprocess,
                                inputs=parse_many(parse_input, inputs), keep_float=keep_float, min_cosine=min_cosine,
                                write=output, trust_remote_code=trust_remote_code, verbose=verbose,
                                max_memory=max_memory, timeout=timeout)
    with Progress() as progress:
        result = api.quantize_doctor(source, options, progress)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    console = Console()
    layers = Table(title=f"{result.target} int8 loss per layer ({result.samples} held-out samples; SNR against the float model)")
    for column in ("rank", "node", "op", "output SNR dB", "input SNR dB", "lost dB"):
        layers.add_column(column, justify="right" if "dB" in column or column == "rank" else "left")
    for rank, layer in enumerate(result.layers[:top], start=1):
        layers.add_row(str(rank), escape(_short(layer.node)), layer.op_type, _db(layer.snr_db), _db(layer.input_snr_db),
                       _db(layer.lost_db))
    console.print(layers)
    choices = Table(title=f"keeping layers in float (float32 model: {human_size(result.float_size_bytes)})")
    for column in ("", "kept in float", "size", "cosine", "SNR dB"):
        choices.add_column(column)
    for index, choice in enumerate(result.choices):
        mark = "->" if index == result.chosen else ""
        choices.add_row(mark, escape(", ".join(_short(k) for k in choice.kept_float) or "none"), human_size(choice.size_bytes),
                        f"{choice.cosine:.6f}", f"{choice.snr_db:.1f}")
    console.print(choices)
    if result.written:
        click.echo(f"Wrote {result.written} (the choice marked ->).")


def _db(value: float | None) -> str:
    return "-" if value is None or value in (float("inf"), float("-inf")) else f"{value:.1f}"


def _short(node: str) -> str:
    """TFLite names a fused op by all the TF ops it holds ("a/Relu;a/Add;a/conv"): the first says which."""
    first = node.split(";")[0]
    return first if len(first) <= 60 else "..." + first[-57:]
