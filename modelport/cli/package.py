"""`modelport package`."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import Progress, handle_errors, limit_options, parse_many, positive, registry_choices


@click.command(context_settings={"max_content_width": 100})
@click.argument("model")
@click.option("--target", required=True, type=click.Choice(registry_choices("bundles")),
              help="What the device runs: the bundle's model format.")
@click.option("-o", "--output", "output", type=click.Path(path_type=Path), default=None,
              help="The bundle: a folder, or a .zip / .tar.gz by suffix [default: ./modelport-out/<name>-<target>].")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]", help="Input shape, as for convert.")
@click.option("--quantize", type=click.Choice(["none", "fp16", "dynamic", "int8"]), default="none", show_default=True,
              help="Precision of the bundled model (int8 needs --calibration-data).")
@click.option("--calibration-data", default=None, metavar="PATH|random", help="int8 calibration samples, as for convert.")
@click.option("--preprocess", default=None, metavar="SPEC",
              help="How calibration images become inputs (recorded in the manifest).")
@click.option("--inputs", "sample_inputs", type=click.Path(path_type=Path, exists=True), default=None,
              help="Real sample inputs (.npz, or ONNX test_data_set_N/ folders) for validation and the golden vectors.")
@click.option("--samples", type=int, default=3, show_default=True, help="Golden vectors (seeded samples).")
@click.option("--labels", type=click.Path(path_type=Path), default=None, help="A labels file to ship in the bundle.")
@click.option("--metadata", "metadata", multiple=True, metavar="KEY=VALUE", help="Recorded in modelport.json.")
@click.option("--trust-remote-code", is_flag=True, help="Allow loading files that run Python code when loaded.")
@limit_options
@click.option("-v", "--verbose", is_flag=True, help="Show converter logs and tracebacks.")
@handle_errors
def package(model: str, target: str, output: Path | None, inputs: tuple[str, ...], quantize: str,
            calibration_data: str | None, preprocess: str | None, sample_inputs: Path | None, samples: int,
            labels: Path | None, metadata: tuple[str, ...], trust_remote_code: bool, max_memory: int | None,
            timeout: float | None, verbose: bool) -> None:
    """Convert MODEL to --target, validate it, and write a bundle a device can take: the model,
    modelport.json (I/O, quantization, versions, validation), golden vectors, a standalone
    run.py whose --selftest replays them, and a README.

    \b
    Exit codes: 0 bundled, 1 validation failed (nothing bundled), 2 bad input,
    3 conversion failed, 4 a needed backend is not installed.
    """
    from .. import api
    from ..errors import BadInput
    from ..spec import parse_input

    pairs = []
    for entry in metadata:
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"Malformed --metadata '{entry}': expected KEY=VALUE.", "Example: --metadata version=1.2")
        pairs.append((key.strip(), value))
    options = api.PackageOptions(
        targets=(target,), bundle=output, inputs=parse_many(parse_input, inputs), quantize=quantize,
        calibration_data=calibration_data, preprocess=preprocess, sample_inputs=sample_inputs,
        samples=positive("--samples", samples), labels=labels, metadata=tuple(pairs),
        trust_remote_code=trust_remote_code, verbose=verbose, max_memory=max_memory, timeout=timeout)
    with Progress() as progress:
        result = api.package(model, options, progress)
    item = result.convert.targets[0]
    click.echo(f"{result.bundle}: {item.target} ({item.artifact.quantization if item.artifact else '?'}), "
               f"{item.status}; files: {', '.join(result.files)}")
    for note in item.notes:
        click.echo(f"  {note}")
