"""`modelport convert`."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import (Progress, fail_on, handle_errors, limit_options, parse_many, positive, registry_choices,
                      report_options, write_reports)


@click.command(context_settings={"max_content_width": 100})
@click.argument("source")
@click.option("--to", "to", required=True, metavar="T[,T...]|all",
              help=f"Targets: {', '.join(registry_choices('targets'))} (comma-separated), or all (every target "
                   "reachable and installed here).")
@click.option("-o", "--output", "output", type=click.Path(path_type=Path), default=None,
              help="Output directory [default: ./modelport-out/<source name>/].")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]",
              help="Input shape, e.g. x:1x3x224x224 or ids:batchx128:int64 (a named dim stays dynamic).")
@click.option("--input-range", "input_ranges", multiple=True, metavar="NAME:LOW:HIGH",
              help="Value range of seeded sample data for an input, e.g. input_ids:0:30522.")
@click.option("--framework", type=click.Choice(registry_choices("frameworks")), default=None,
              help="Read SOURCE as this framework instead of detecting it from its content.")
@click.option("--signature", default=None, help="SavedModel signature to convert [default: serving_default].")
@click.option("--opset", type=int, default=None, help="ONNX opset to export [default: 17]; converts ONNX sources.")
@click.option("--via", default=None, metavar="F[,F...]",
              help="Force the path through these formats, e.g. --via onnx,savedmodel.")
@click.option("--converter", "converters", default=None, metavar="NAME[,NAME...]",
              help="Use these converters where a path can (e.g. onnx2tf2, onnx2tf); `modelport doctor` lists them.")
@click.option("--explain", is_flag=True, help="Print the conversion path of each target and stop.")
@click.option("--keep-layout", is_flag=True,
              help="Keep NCHW inputs on TF targets (onnx2tf transposes to NHWC by default).")
@click.option("--simplify", is_flag=True, help="Simplify the ONNX target with onnxsim (checked for equivalence).")
@click.option("--quantize", type=click.Choice(["none", "fp16", "dynamic", "int8"]), default="none",
              show_default=True, help="Precision of tflite, onnx and ort targets: float16 weights, dynamic-range int8 "
                   "weights, or full int8 (needs --calibration-data).")
@click.option("--calibration-data", default=None, metavar="PATH|random",
              help="int8 (required): representative inputs: an .npz, a folder of .npy files or of images "
                   "(with --preprocess), a test_data_set_N folder; a fifth is held out to judge the result. "
                   "'random' calibrates on seeded noise (then the result is never 'passed').")
@click.option("--preprocess", default=None, metavar="SPEC",
              help="How calibration images become inputs: resize=HxW,scale=1/255,mean=R/G/B,std=R/G/B,"
                   "layout=nchw|nhwc.")
@click.option("--validate/--no-validate", default=True, show_default=True,
              help="Run source and result on the same inputs and compare.")
@click.option("--inputs", "sample_inputs", type=click.Path(path_type=Path, exists=True), default=None,
              help="Real sample inputs: an .npz (one array per input name) or ONNX test_data_set_N/ folders of .pb tensors.")
@click.option("--samples", type=int, default=3, show_default=True, help="Seeded samples to compare.")
@click.option("--atol", type=float, default=None, help="Absolute tolerance [default: per target and precision].")
@click.option("--rtol", type=float, default=None, help="Relative tolerance [default: per target and precision].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample inputs.")
@click.option("--trust-remote-code", is_flag=True,
              help="Allow loading files that run Python code when loaded (pickled whole modules).")
@click.option("--threads", type=int, default=1, show_default=True, help="Runtime threads for latency runs.")
@report_options
@limit_options
@click.option("-v", "--verbose", is_flag=True, help="Show converter logs and tracebacks.")
@handle_errors
def convert(source: str, to: str, output: Path | None, inputs: tuple[str, ...], input_ranges: tuple[str, ...],
            framework: str | None, signature: str | None, opset: int | None, via: str | None,
            converters: str | None, explain: bool,
            keep_layout: bool, simplify: bool, quantize: str, calibration_data: str | None,
            preprocess: str | None, validate: bool, sample_inputs: Path | None, samples: int,
            atol: float | None, rtol: float | None, seed: int, trust_remote_code: bool, threads: int,
            report: Path | None, junit: Path | None, markdown: Path | None, html: Path | None,
            max_memory: int | None, timeout: float | None, verbose: bool) -> None:
    """Convert SOURCE to each target and validate each result on its own runtime.

    \b
    SOURCE is detected by content: a .pt2 (torch.export), TorchScript, ONNX, TFLite, .keras,
    .h5, a SavedModel folder, or an entry point path/file.py:name returning a torch.nn.Module,
    a keras.Model or a JAX function (optionally with example inputs).
    \b
    Exit codes: 0 all passed, 1 validation failed, 2 bad input, 3 conversion failed,
    4 a needed backend is not installed.
    """
    from .. import api
    from ..converters.graph import parse_targets
    from ..spec import parse_input, parse_input_range
    from .render import convert_table

    options = api.ConvertOptions(
        targets=tuple(parse_targets(to)), output_dir=output, inputs=parse_many(parse_input, inputs),
        input_ranges=parse_many(parse_input_range, input_ranges), framework=framework, signature=signature, opset=opset,
        via=tuple(v.strip() for v in via.split(",") if v.strip()) if via else (), keep_layout=keep_layout,
        converters=tuple(c.strip() for c in converters.split(",") if c.strip()) if converters else (),
        simplify=simplify, quantize=quantize, calibration_data=calibration_data, preprocess=preprocess,
        validate=validate,
        sample_inputs=sample_inputs, samples=positive("--samples", samples), atol=atol,
        rtol=rtol, seed=seed, trust_remote_code=trust_remote_code, verbose=verbose,
        threads=positive("--threads", threads), max_memory=max_memory, timeout=timeout)
    if explain:
        for target, path in api.explain(source, options).items():
            click.echo(f"{target:12s} {path}")
        return
    with Progress() as progress:
        result = api.convert(source, options, progress)
    convert_table(result)
    write_reports([result], options.threads, report=report, junit=junit, markdown=markdown, html=html)
    problem = result.first_problem()
    fail_on(result, prefix=f"{problem.target}: " if problem else "")
