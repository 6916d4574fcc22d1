"""`modelport debug`."""

from __future__ import annotations

import html as html_text
import json
import math
import sys
from pathlib import Path
from typing import Any

import click

from ._common import Progress, escape, handle_errors, limit_options, parse_many, positive


@click.command(context_settings={"max_content_width": 100})
@click.argument("reference")
@click.argument("candidate", required=False)
@click.option("--to", "to", default=None, metavar="TARGET",
              help="Without CANDIDATE: convert REFERENCE (any source) to ONNX and that ONNX to TARGET, then compare.")
@click.option("--quantize", type=click.Choice(["none", "fp16", "dynamic", "int8"]), default="none",
              show_default=True, help="With --to: the precision of the converted model.")
@click.option("--calibration-data", default=None, metavar="PATH|random", help="With --quantize int8, as for convert.")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]",
              help="Input shape where the reference does not record it.")
@click.option("--inputs", "sample_inputs", type=click.Path(path_type=Path, exists=True), default=None,
              help="Real inputs: an .npz or ONNX test_data_set_N/ folders.")
@click.option("--samples", type=int, default=1, show_default=True, help="Samples to compare.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample inputs.")
@click.option("--atol", type=float, default=None, help="Absolute tolerance per layer [default: the target's].")
@click.option("--rtol", type=float, default=None, help="Relative tolerance per layer [default: the target's].")
@click.option("--min-cosine", type=float, default=None, help="Lowest cosine per layer [default: the target's].")
@click.option("--all", "show_all", is_flag=True, help="List every matched layer, not only those around the first divergent.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (schema modelport.debug/1).")
@click.option("--html", "html_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write an HTML page plotting the error against depth.")
@click.option("--trust-remote-code", is_flag=True, help="Allow loading files that run Python code when loaded.")
@limit_options
@click.option("-v", "--verbose", is_flag=True, help="Show converter logs and tracebacks.")
@handle_errors
def debug(reference: str, candidate: str | None, to: str | None, quantize: str, calibration_data: str | None,
          inputs: tuple[str, ...], sample_inputs: Path | None, samples: int, seed: int, atol: float | None,
          rtol: float | None, min_cosine: float | None, show_all: bool, as_json: bool, html_path: Path | None,
          trust_remote_code: bool, max_memory: int | None, timeout: float | None, verbose: bool) -> None:
    """Run REFERENCE and CANDIDATE on the same sample with every intermediate tensor exposed, and
    find the first layer where CANDIDATE drifts beyond tolerance.

    \b
    modelport debug model.onnx model.tflite       a model and its conversion
    modelport debug model.pt2 --to tflite         convert (through ONNX) and compare
    Layers are matched by the correspondence the converter recorded, else by name; layouts are
    transposed back. Reads ONNX, TFLite (float or quantized) and TorchScript. Exit 1 when a layer diverges.
    """
    from .. import api
    from ..errors import BadInput
    from ..spec import parse_input

    if (candidate is None) == (to is None):
        raise BadInput("Give a CANDIDATE model, or --to TARGET to convert REFERENCE first (not both).",
                       "Examples: modelport debug model.onnx model.tflite | modelport debug model.pt2 --to tflite")
    options = api.DebugOptions(
        targets=tuple(t.strip() for t in to.split(",")) if to else ("onnx",), quantize=quantize, calibration_data=calibration_data,
        inputs=parse_many(parse_input, inputs), sample_inputs=sample_inputs, samples=positive("--samples", samples),
        seed=seed, atol=atol, rtol=rtol, min_cosine=min_cosine, trust_remote_code=trust_remote_code,
        verbose=verbose, max_memory=max_memory, timeout=timeout)
    with Progress() as progress:
        result = api.debug(reference, candidate, options, progress)
    if html_path is not None:
        from ..api import write_atomic

        write_atomic(_html(result), html_path)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        _table(result, show_all)
    if result.first_divergent is not None:
        sys.exit(1)


def _table(result: Any, show_all: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # logs and CI: keep rows on one line
        console.width = max(console.width, 160)
    tol = result.tolerance
    console.print(f"{escape(result.candidate)} ({result.candidate_runtime}) against {escape(result.reference)} "
                  f"({result.reference_runtime}), {result.samples} sample(s); layers matched by {result.matched_by}; "
                  f"tolerance atol {tol.atol:g} rtol {tol.rtol:g}" + (f" cosine >= {tol.min_cosine:g}" if tol.min_cosine else ""))
    table = Table()
    for column in ("#", "source node", "op", "candidate tensor", "matched by", "shape", "max abs", "cosine", "SNR dB", ""):
        table.add_column(column, justify="right" if column in ("#", "max abs", "cosine", "SNR dB") else "left",
                         overflow="fold")
    first = result.first_divergent
    shown = range(len(result.layers))
    if not show_all and len(result.layers) > 30:
        centre = first if first is not None else len(result.layers) - 1
        shown = range(max(0, centre - 10), min(len(result.layers), centre + 11))
    for index in shown:
        layer = result.layers[index]
        mark = "<- first divergent" if index == first else ("" if layer.passed else "x")
        style = "bold red" if index == first else None
        table.add_row(str(index), escape(layer.source_name), layer.source_op, escape(_short(layer.name)),
                      layer.matched_by, "x".join(str(d) for d in layer.shape), _num(layer.max_abs_diff), f"{layer.cosine:.6f}",
                      _db(layer.snr_db), mark, style=style)
    console.print(table)
    if len(shown) < len(result.layers):
        console.print(f"({len(shown)} of {len(result.layers)} matched layers shown; --all lists every one)")
    if result.unmatched:
        console.print(f"{result.unmatched} reference tensors have no counterpart in the candidate "
                      "(fused away, or renamed by a converter that recorded no correspondence).")
    if first is None:
        console.print(f"No layer drifts beyond tolerance ({len(result.layers)} layers compared).")
    else:
        layer = result.layers[first]
        fused = f" (fused with {', '.join(layer.source_tensors[1:])})" if len(layer.source_tensors) > 1 else ""
        console.print(f"First divergent layer: {escape(layer.source_name)} ({layer.source_op}){escape(fused)}, "
                      f"candidate tensor {escape(layer.name)} ({layer.op}): max abs {_num(layer.max_abs_diff)}, "
                      f"cosine {layer.cosine:.6f}, SNR {_db(layer.snr_db)} dB. {escape(layer.reason)}",
                      style="bold red")


def _num(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.3g}"


def _db(value: float | None) -> str:
    return "exact" if value is None or value == math.inf else ("-" if not math.isfinite(value) else f"{value:.1f}")


def _short(name: str) -> str:
    first = name.split(";")[0]
    return first if len(first) <= 48 else "..." + first[-45:]


def _html(result: Any) -> str:
    """A self-contained page: SNR (dB) against depth, the first divergent layer marked, and the table."""
    layers = result.layers
    width, height, pad = 900, 320, 50
    capped = [min(layer.snr_db if layer.snr_db is not None else 160.0, 160.0) for layer in layers]
    top = max([*capped, 10.0])
    bottom = min([*capped, 0.0])

    def x(i: int) -> float:
        return pad + (width - 2 * pad) * (i / max(len(layers) - 1, 1))

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * ((v - bottom) / ((top - bottom) or 1.0))

    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(capped))
    dots = "".join(
        f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="{5 if i == result.first_divergent else 3}" '
        f'fill="{"#c00" if not layers[i].passed else "#36c"}"><title>{html_text.escape(layers[i].source_name)}: '
        f'{_db(layers[i].snr_db)} dB</title></circle>' for i, v in enumerate(capped))
    rows = "".join(
        f"<tr{' class=bad' if not layer.passed else ''}><td>{i}</td><td>{html_text.escape(layer.source_name)}</td>"
        f"<td>{html_text.escape(layer.source_op)}</td><td>{html_text.escape(layer.name)}</td>"
        f"<td>{'x'.join(map(str, layer.shape))}</td><td>{_num(layer.max_abs_diff)}</td><td>{layer.cosine:.6f}</td>"
        f"<td>{_db(layer.snr_db)}</td></tr>" for i, layer in enumerate(layers))
    first = layers[result.first_divergent] if result.first_divergent is not None else None
    verdict = (f"First divergent layer: <b>{html_text.escape(first.source_name)}</b> ({html_text.escape(first.source_op)})"
               if first else "No layer drifts beyond tolerance.")
    return f"""<!doctype html><meta charset="utf-8"><title>modelport debug</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;text-align:left}}.bad{{color:#c00}}</style>
<h1>modelport debug</h1><p>{html_text.escape(result.candidate)} against {html_text.escape(result.reference)}</p>
<p>{verdict}</p>
<svg width="{width}" height="{height}" role="img" aria-label="SNR against depth">
<text x="{pad}" y="20">SNR (dB, exact capped at 160) per layer, in the reference's execution order</text>
<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>
<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#999"/>
<text x="5" y="{y(top):.0f}">{top:.0f}</text><text x="5" y="{y(bottom):.0f}">{bottom:.0f}</text>
<polyline fill="none" stroke="#36c" points="{points}"/>{dots}</svg>
<table><tr><th>#</th><th>source node</th><th>op</th><th>candidate tensor</th><th>shape</th><th>max abs</th>
<th>cosine</th><th>SNR dB</th></tr>{rows}</table>
"""
