"""`modelport validate`."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import limit_options, Progress, fail_on, handle_errors, parse_many, positive, report_options, write_reports


@click.command(context_settings={"max_content_width": 100})
@click.argument("reference")
@click.argument("candidate")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]",
              help="Input shape where the reference does not record it.")
@click.option("--input-range", "input_ranges", multiple=True, metavar="NAME:LOW:HIGH",
              help="Value range of seeded sample data for an input.")
@click.option("--inputs", "sample_inputs", type=click.Path(path_type=Path, exists=True), default=None,
              help="Real inputs: an .npz (one array per input) or ONNX test_data_set_N/ folders of .pb tensors.")
@click.option("--samples", type=int, default=3, show_default=True, help="Samples to compare.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample inputs.")
@click.option("--map", "maps", multiple=True, metavar="R=C[:PERM]",
              help="Pair reference tensor R with candidate tensor C; PERM transposes, e.g. image=input:0,2,3,1.")
@click.option("--atol", type=float, default=None, help="Absolute tolerance [default: 1e-4].")
@click.option("--rtol", type=float, default=None, help="Relative tolerance [default: 1e-3].")
@click.option("--min-cosine", type=float, default=None, help="Lowest cosine similarity allowed per output.")
@click.option("--top-k", type=int, default=None,
              help="Require the reference's top class to be in the candidate's top K (class-score outputs).")
@click.option("--latency", is_flag=True, help="Also time both models.")
@click.option("--threads", type=int, default=1, show_default=True, help="Runtime threads.")
@click.option("--signature", default=None, help="SavedModel signature of the reference.")
@click.option("--trust-remote-code", is_flag=True, help="Allow loading files that run Python code when loaded.")
@report_options
@limit_options
@click.option("-v", "--verbose", is_flag=True, help="Show backend logs and tracebacks.")
@handle_errors
def validate(reference: str, candidate: str, inputs: tuple[str, ...], input_ranges: tuple[str, ...],
             sample_inputs: Path | None, samples: int, seed: int, maps: tuple[str, ...], atol: float | None,
             rtol: float | None, min_cosine: float | None, top_k: int | None, latency: bool, threads: int,
             signature: str | None, trust_remote_code: bool, report: Path | None, junit: Path | None,
             markdown: Path | None, html: Path | None, max_memory: int | None, timeout: float | None, verbose: bool) -> None:
    """Compare CANDIDATE with REFERENCE on the same inputs, each on its own runtime.

    \b
    Inputs and outputs are paired by the candidate's recorded mapping (models modelport wrote),
    else by name, else by --map, else by position. Exit 1 names the worst output and sample.
    """
    from .. import api
    from ..spec import parse_input, parse_input_range
    from ..validators.matching import parse_map
    from .render import convert_table

    parse_many(parse_map, maps)  # a malformed --map fails before anything loads
    options = api.ValidateOptions(
        inputs=parse_many(parse_input, inputs), input_ranges=parse_many(parse_input_range, input_ranges),
        maps=maps, sample_inputs=sample_inputs, samples=positive("--samples", samples), seed=seed, atol=atol,
        rtol=rtol, min_cosine=min_cosine, top_k=positive("--top-k", top_k) if top_k is not None else None,
        latency=latency, threads=positive("--threads", threads), signature=signature,
        trust_remote_code=trust_remote_code, verbose=verbose, max_memory=max_memory, timeout=timeout)
    with Progress() as progress:
        result = api.validate(reference, candidate, options, progress)
    convert_table(result, title=f"modelport validate: {reference} vs {candidate}")
    write_reports([result], threads, report=report, junit=junit, markdown=markdown, html=html)
    fail_on(result)
