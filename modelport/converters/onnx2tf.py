"""ONNX -> TFLite (and the SavedModel it writes on the way) with onnx2tf.

Wrapped sharp edges: onnx2tf rewrites its input file (we hand it a copy), downloads sample
images for 3-channel inputs (we hand it seeded data instead, so it never reaches the network),
prints hundreds of log lines (kept unless --verbose), and turns NCHW into NHWC (we record the
permutation of every input and output in the artifact's I/O mapping).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .._lazy import captured_output, require, scoped_cwd, scoped_env
from ..artifact import Artifact, IOMapping, TensorLink
from ..errors import ConversionFailed
from ..spec import Dim, TensorSpec
from ..formats.base import Edge, Requirement
from .base import EdgeContext
from .onnx_prepare import all_failed
from .onnxsim_server import SubprocessWithWarmOnnxsim

if TYPE_CHECKING:
    from ..targets.base import Runner


class LayoutUnmappable(ConversionFailed):
    """onnx2tf changed a tensor's shape in a way no layout permutation explains."""


def channel_last(rank: int) -> tuple[int, ...]:
    return (0, *range(2, rank), 1)


def _matches(shape_a: tuple[Dim, ...] | None, shape_b: tuple[Dim, ...] | None) -> bool:
    if shape_a is None or shape_b is None or len(shape_a) != len(shape_b):
        return False
    return all(not isinstance(a, int) or not isinstance(b, int) or a == b for a, b in zip(shape_a, shape_b))


def _permute(shape: tuple[Dim, ...], perm: tuple[int, ...]) -> tuple[Dim, ...]:
    return tuple(shape[i] for i in perm)


def _sanitize(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


def _natural(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _pair(source_specs: list[TensorSpec], produced: list[TensorSpec]) -> list[tuple[TensorSpec, TensorSpec]]:
    """Match produced tensors to source tensors by name, then sanitized name, then position; one to
    one. Where onnx2tf lost the names (it then writes output_0, output_1, ... in ONNX order), or
    names collide (seen for Split: source output_1, output_2 against produced output_0, output_1,
    where a match by name pairs the wrong tensor), the pairing is by that order alone."""
    generic = {f"output_{i}" for i in range(len(produced))}
    names_lost = ({s.name for s in produced} == generic and {s.name for s in source_specs} != generic
                  and len(produced) == len(source_specs) > 1)
    pairs = [] if names_lost else _pair_by_name(source_specs, produced)
    if names_lost or len({id(p) for _, p in pairs}) < len(pairs):
        ordered = sorted(produced, key=lambda s: _natural(s.name))
        if len(ordered) < len(source_specs):
            raise ConversionFailed(f"onnx2tf produced {len(ordered)} tensors for {len(source_specs)}.",
                                   "Run with --verbose to see its log.")
        pairs = list(zip(source_specs, ordered))
    return pairs


def _pair_by_name(source_specs: list[TensorSpec], produced: list[TensorSpec]) -> list[tuple[TensorSpec, TensorSpec]]:
    by_name = {s.name: s for s in produced}
    by_clean = {_sanitize(s.name): s for s in produced}
    pairs = []
    for index, spec in enumerate(source_specs):
        match = by_name.get(spec.name) or by_clean.get(_sanitize(spec.name))
        if match is None and index < len(produced):
            match = produced[index]
        if match is None:
            raise ConversionFailed(f"onnx2tf produced no tensor for '{spec.name}'.", "Run with --verbose to see its log.")
        pairs.append((spec, match))
    return pairs


def _link(source: TensorSpec, produced: TensorSpec, kept: bool) -> tuple[TensorLink, bool]:
    """The permutation onnx2tf applied, from its rule (rank 3-5 become channel-last) checked
    against the produced shape. Returns the link and whether the shape leaves it ambiguous."""
    rank = len(source.shape or ())
    candidates: list[tuple[int, ...] | None] = [None] if kept or rank < 3 else [channel_last(rank), None]
    # (a permutation is only a candidate for rank >= 3, so the shape is known wherever p is set)
    fitting = [p for p in candidates
               if _matches(_permute(source.shape, p) if p and source.shape is not None else source.shape,
                           produced.shape)]
    if not fitting and source.shape == () and produced.shape is not None and len(produced.shape) == 1 \
            and not (isinstance(produced.shape[0], int) and produced.shape[0] != 1):
        return TensorLink(produced.name, source.name, None, scalar=True), False  # onnx2tf writes scalars as [1]
    if not fitting:
        raise LayoutUnmappable(f"onnx2tf changed '{source.name}' from shape {source.shape} to {produced.shape}.",
                               "This layout change cannot be mapped back; run with --verbose.")
    perm = fitting[0]
    return TensorLink(produced.name, source.name, perm), len(fitting) > 1


def run_onnx2tf(onnx_artifact: Artifact, ctx: EdgeContext, pseudo_ops: tuple[str, ...] = (),
                static: bool = False, wanted: str = "tflite") -> Path:
    """Run onnx2tf once per ONNX file, layout, op replacement and shape fixing; return its output
    folder if it holds the `wanted` model ("tflite" or "savedmodel"). onnx2tf writes the
    SavedModel before it converts that to TFLite, so a TFLite-stage failure (an op with no TFLite
    kernel) still leaves a SavedModel to deliver and validate."""
    key = f"onnx2tf:{onnx_artifact.path}:{ctx.keep_layout}:{onnx_artifact.layout}:{','.join(pseudo_ops)}:{static}"
    if key not in ctx.cache:
        ctx.cache[key] = _run_onnx2tf_once(onnx_artifact, ctx, pseudo_ops, static)
    out, failure = ctx.cache[key]
    if failure is None or (wanted == "savedmodel" and (out / "saved_model.pb").is_file()):
        return out
    raise failure


def _run_onnx2tf_once(onnx_artifact: Artifact, ctx: EdgeContext, pseudo_ops: tuple[str, ...],
                      static: bool) -> tuple[Path, ConversionFailed | None]:
    np = require("numpy")
    onnx2tf = require("onnx2tf", purpose="to convert ONNX to TFLite and SavedModel")
    impl: Any = require("onnx2tf.onnx2tf")  # a module; its attributes are set below
    work = Path(ctx.scratch or onnx_artifact.path.parent).absolute() / f"onnx2tf-{len(ctx.cache)}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    model_copy = work / "model.onnx"  # onnx2tf overwrites the file it is given
    shutil.copyfile(onnx_artifact.path, model_copy)
    onnx_artifact.copy_beside(model_copy)  # external data travels with the model
    out = work / "out"
    rng = np.random.default_rng(ctx.seed)

    def sample_images():  # stands in for onnx2tf's download of sample images
        return rng.uniform(0.0, 1.0, (20, 128, 128, 3)).astype(np.float32)

    spatial = [s.name for s in onnx_artifact.inputs if len(s.shape or ()) in (3, 4, 5)]
    # An ONNX file from TensorFlow is already channel-last: onnx2tf must not transpose it again.
    keep_nhwc = spatial if onnx_artifact.layout == "nhwc" else None
    keep_nchw = spatial if ctx.keep_layout and not keep_nhwc else None
    # (its Python API wants the pseudo op names lower-case, as its CLI makes them)
    # onnx2tf runs the `onnxsim` command; find it beside this Python even when the venv is not
    # active (for this call only: PATH is put back after).
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        path = bin_dir + os.pathsep + path
    ctx.count("onnx2tf.convert")
    original, original_subprocess = impl.download_test_image_data, impl.subprocess
    impl.download_test_image_data = sample_images
    impl.subprocess = SubprocessWithWarmOnnxsim()  # its three onnxsim runs, without three Python starts
    try:
        # (its own folder as cwd: for a model past 2 GB it writes `tmp.onnx` and
        # `tmp_external.weights` into the cwd and deletes them, which two runs in one folder share)
        with captured_output(ctx.verbose) as log, scoped_env({"PATH": path}, override=True), scoped_cwd(work):
            try:
                onnx2tf.convert(input_onnx_file_path=str(model_copy), output_folder_path=str(out),
                                non_verbose=not ctx.verbose, copy_onnx_input_output_names_to_tflite=True,
                                output_signaturedefs=True, keep_ncw_or_nchw_or_ncdhw_input_names=keep_nchw or None,
                                keep_nwc_or_nhwc_or_ndhwc_input_names=keep_nhwc or None,
                                replace_to_pseudo_operators=[p.lower() for p in pseudo_ops] or None,
                                disable_group_convolution=has_grouped_convolution(model_copy),
                                overwrite_input_shape=static_shapes(onnx_artifact) if static else None,
                                **quantization_arguments(onnx_artifact, ctx, work))
                error = None
            except BaseException as exc:  # onnx2tf calls sys.exit on some failures
                if isinstance(exc, KeyboardInterrupt):
                    raise
                error = exc
    finally:
        impl.download_test_image_data, impl.subprocess = original, original_subprocess
    tflites = sorted(out.glob("*_float32.tflite")) if out.exists() else []
    if error is not None or not tflites:
        return out, ConversionFailed(f"onnx2tf failed: {_reason(error, log.getvalue(), model_copy)}.",
                                     "Run with --verbose for onnx2tf's log; another --opset may help.")
    return out, None


def _reason(error: BaseException | None, log: str, onnx_path: Path) -> str:
    """One line from onnx2tf's log: the ONNX op it failed on and the exception it raised."""
    clean = re.sub(r"\x1b\[[0-9;]*m", "", log)
    exceptions = re.findall(r"^(\w+(?:Error|Exception)): (.*)$", clean, flags=re.MULTILINE)
    what = f"{exceptions[-1][0]}: {exceptions[-1][1][:160]}" if exceptions else (
        f"{type(error).__name__}: {error}"[:200] if error else "it wrote no TFLite file")
    node = re.search(r"onnx_op_name:\s*(\S+)", clean)
    if node:
        op_type = "?"
        try:
            import onnx

            graph = onnx.load(str(onnx_path), load_external_data=False).graph
            op_type = next((n.op_type for n in graph.node if n.name == node.group(1)), "?")
        except Exception:  # the op name alone still helps
            pass
        return f"the ONNX op {op_type} (node '{node.group(1)}') could not be converted: {what}"
    return what


def has_grouped_convolution(onnx_path: Path) -> bool:
    """Whether a Conv has 1 < group < its input channels. onnx2tf then writes TF's grouped
    convolution, which TF.js cannot run ("depth of input must match input depth for filter"):
    modelport asks it for one convolution per group instead (its -dgc), which every TF runtime
    runs. Depthwise convolutions (group = channels) are a kernel of their own either way."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    for node in model.graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type != "Conv" or group <= 1:
            continue
        shape = weights.get(node.input[1]) if len(node.input) > 1 else None
        if shape is None or len(shape) < 2 or shape[1] != 1:  # weight [out, in/group, ...]: 1 = depthwise
            return True
    return False


# ONNX op type -> onnx2tf's name for its builtin-ops-only ("pseudo") replacement.
PSEUDO_OPS = {"Asin": "Asin", "Acos": "Acos", "Atan": "Atan", "Abs": "Abs", "PRelu": "PReLU",
              "LeakyRelu": "LeakyReLU", "Pow": "Power", "GatherND": "GatherND", "Neg": "Neg",
              "HardSwish": "HardSwish", "Erf": "Erf", "Gelu": "GeLU", "MatMulInteger": "MatMulInteger"}


def flex_ops(tflite: Path) -> list[str]:
    """TF Select ("Flex") ops named in a .tflite: the plain LiteRT interpreter cannot run them."""
    return sorted({m.decode() for m in re.findall(rb"Flex[A-Z][A-Za-z0-9]+", tflite.read_bytes())})


def _pseudo_candidates(onnx_path: Path) -> tuple[str, ...]:
    import onnx

    types = {n.op_type for n in onnx.load(str(onnx_path), load_external_data=False).graph.node}
    return tuple(sorted(PSEUDO_OPS[t] for t in types if t in PSEUDO_OPS))


# Which of onnx2tf's files each --quantize level is.
TFLITE_FILE = {"none": "*_float32.tflite", "fp16": "*_float16.tflite",
               "dynamic": "*_dynamic_range_quant.tflite", "int8": "*_full_integer_quant.tflite"}


def quantization_arguments(onnx_artifact: Artifact, ctx: EdgeContext, work: Path) -> dict:
    """onnx2tf's quantization options: int8 gets the calibration data, in the layout onnx2tf
    feeds (channel-last for rank 3-5 inputs of an NCHW graph), one .npy per input."""
    if ctx.quantize == "dynamic":
        return {"output_dynamic_range_quantized_tflite": True}
    if ctx.quantize != "int8":
        return {}
    np = require("numpy")
    if not ctx.calibration:
        raise ConversionFailed("int8 quantization needs calibration data.", "Pass --calibration-data FILE.npz.")
    keep = onnx_artifact.layout == "nhwc" or ctx.keep_layout
    entries: list[list[Any]] = []
    for link in onnx_artifact.io.inputs:
        batch = np.concatenate([sample[link.source_name] for sample in ctx.calibration], axis=0)
        rank = batch.ndim
        if rank in (3, 4, 5) and not keep:
            batch = batch.transpose(channel_last(rank))
        path = work / f"calibration_{len(entries)}.npy"
        np.save(path, batch.astype(np.float32))
        neutral = np.zeros([1] * rank, np.float32)  # the data is already in the model's input space
        entries.append([link.name, str(path), neutral, neutral + 1.0])
    return {"output_integer_quantized_tflite": True, "custom_input_op_name_np_data_path": entries,
            "input_quant_dtype": "int8", "output_quant_dtype": "int8"}


def static_shapes(onnx_artifact: Artifact) -> list[str]:
    """onnx2tf's `overwrite_input_shape` entries fixing every dynamic dim to its sample size."""
    from ..validators.data import concrete_shape

    return [f"{s.name}:{','.join(str(d) for d in concrete_shape(s))}" for s in onnx_artifact.inputs]


def prepared(onnx_artifact: Artifact, ctx: EdgeContext, expand: bool) -> tuple[Artifact, str]:
    """The graph folded, with `expand` also its function ops expanded (onnx_prepare); made once
    per run. Raises ConversionFailed where that form would not differ."""
    from .onnx_prepare import prepare

    key = f"prepared:{expand}:{onnx_artifact.path}"
    if key not in ctx.cache:
        assert ctx.scratch is not None
        try:
            ctx.cache[key] = prepare(onnx_artifact, ctx.scratch / f"prepared-{len(ctx.cache)}", ctx.verbose, expand)
        except ConversionFailed as exc:
            ctx.cache[key] = exc
    if isinstance(ctx.cache[key], ConversionFailed):
        raise ctx.cache[key]
    return ctx.cache[key]


class Onnx2tfRun(NamedTuple):
    out: Path               # onnx2tf's output folder
    workarounds: list[str]
    onnx: Artifact          # the form of the graph it converted
    ctx: EdgeContext        # the context it ran with (keep_layout set for the channel-first form)
    static: bool            # dynamic input dims were fixed to the sample's


class WrongNumbers(ConversionFailed):
    """A form converted, but its numbers are far from onnxruntime's (carries the artifact)."""

    def __init__(self, message: str, artifact: Artifact) -> None:
        super().__init__(message, "Another form of the graph is tried next.")
        self.artifact = artifact


def graph_forms(onnx_artifact: Artifact, ctx: EdgeContext) -> list[tuple[str, Artifact, str | None, EdgeContext]]:
    """The forms of the graph that get real models through onnx2tf, in the order tried: folded
    (the constant and shape folding onnx2tf wants from onnxsim, which rejects opset-23 graphs
    here; an unfolded shape chain can convert to wrong numbers), then folded with its function ops
    expanded and the ops onnx2tf fails on lowered (onnx_lower), then as given (where nothing folds:
    as given, then expanded), and last the first of these and the expanded one with rank 3-5
    inputs kept channel-first (its NCHW -> NHWC rewriting is where most of its op failures on such
    inputs come from)."""
    forms: list[tuple[str, Artifact, str | None, EdgeContext]] = []
    for label, expand in (("folded graph", False), ("expanded graph", True)):
        try:
            ready, rewrite = prepared(onnx_artifact, ctx, expand)
            forms.append((label, ready, rewrite, ctx))
        except ConversionFailed:  # nothing to fold or expand there: that form is the one before it
            pass
    as_given = ("graph as given", onnx_artifact, None, ctx)
    # Expansion is only ever a retry: where nothing folds, the graph as given goes first.
    folded = bool(forms) and forms[0][0] == "folded graph"
    forms = forms + [as_given] if folded else [as_given, *forms]
    spatial = any(len(s.shape or ()) in (3, 4, 5) for s in onnx_artifact.inputs)
    if spatial and not ctx.keep_layout and onnx_artifact.layout != "nhwc":
        kept = dataclasses.replace(ctx, keep_layout=True)  # (its cache and counters stay shared)
        firsts = [forms[0]] + [f for f in forms[1:] if f[0] == "expanded graph"]
        for label, form, what, _ in firsts:
            forms.append((f"{label} with inputs kept channel-first", form,
                          f"{what + '; ' if what else ''}inputs kept channel-first (onnx2tf's "
                          "keep_ncw_or_nchw_or_ncdhw_input_names)", kept))
    return forms


def convert_with_fallbacks(onnx_artifact: Artifact, ctx: EdgeContext, wanted: str,
                           finish: Callable[[Onnx2tfRun], Artifact]) -> Artifact:
    """onnx2tf on each form of the graph (graph_forms) until one gives a usable artifact: FINISH
    makes it from onnx2tf's output (mapping its tensors back, checking its numbers) and raises
    ConversionFailed where it cannot (a layout that cannot be mapped back, an output lost, Flex
    ops, numbers far from onnxruntime's: WrongNumbers). Each form gets onnx2tf's own advice on
    failure: dynamic input dims fixed to the sample shape. Where every form failed and one gave
    wrong numbers, that artifact is returned (validation then reports and shows the numbers)."""
    failures: list[tuple[str, ConversionFailed]] = []
    for label, form, what, used in graph_forms(onnx_artifact, ctx):
        try:
            out, workarounds, static = _with_static_retry(form, used, wanted)
            tried = "".join(f"; onnx2tf failed on the {failed}" for failed, _ in failures)
            if has_grouped_convolution(form.path):
                workarounds.insert(0, "grouped convolutions written as one convolution per group (onnx2tf's "
                                      "disable_group_convolution): TF.js has no grouped convolution")
            return finish(Onnx2tfRun(out, ([f"{what}{tried}"] if what else []) + workarounds, form, used, static))
        except ConversionFailed as exc:
            failures.append((label, exc))
    wrong = next((exc for _, exc in failures if isinstance(exc, WrongNumbers)), None)
    if wrong is not None:
        return wrong.artifact
    first = next(i for i, (label, *_) in enumerate(failures) if label == "graph as given")
    failures.insert(0, failures.pop(first))  # the graph as given leads the message
    raise all_failed(failures)


def _with_static_retry(onnx_artifact: Artifact, ctx: EdgeContext, wanted: str) -> tuple[Path, list[str], bool]:
    try:
        return run_onnx2tf(onnx_artifact, ctx, wanted=wanted), [], False
    except ConversionFailed:
        if all(s.is_static for s in onnx_artifact.inputs):
            raise
        out = run_onnx2tf(onnx_artifact, ctx, static=True, wanted=wanted)
        return out, [f"fixed dynamic input shapes ({'; '.join(static_shapes(onnx_artifact))}): "
                     "onnx2tf failed on the dynamic graph"], True


def tflite_without_flex(run: Onnx2tfRun, precision: str) -> tuple[Path, list[str]]:
    """The TFLite file of onnx2tf's with builtin ops only: where it emitted Flex ops, onnx2tf runs
    again with its builtin-op replacements. A model that still needs Flex is a conversion failure:
    no device without the Flex delegate could run it."""
    pattern = TFLITE_FILE[precision]
    if not list(run.out.glob(pattern)):
        raise ConversionFailed(f"onnx2tf wrote no {precision} TFLite file ({pattern}).",
                               "Run with --verbose for its log; try another --quantize level.")
    tflite, workarounds = sorted(run.out.glob(pattern))[0], list(run.workarounds)
    flex = flex_ops(tflite)
    if flex:
        pseudo = _pseudo_candidates(run.onnx.path)
        if pseudo:
            tflite = sorted(run_onnx2tf(run.onnx, run.ctx, pseudo, static=run.static).glob(pattern))[0]
            workarounds.append(f"replaced {', '.join(pseudo)} with builtin-op equivalents (Flex ops {', '.join(flex)})")
            flex = flex_ops(tflite)
    if flex:
        raise ConversionFailed(
            f"The TFLite model needs TF Select (Flex) ops {', '.join(flex)}, which the LiteRT interpreter "
            "cannot run without the Flex delegate.",
            "Replace those operations in the model, or deploy with the Flex delegate.")
    return tflite, workarounds


def checked(artifact: Artifact, source: Artifact, io: IOMapping, open_runner: Callable[[], Runner],
            ctx: EdgeContext) -> Artifact:
    """ARTIFACT, unless its numbers are far from onnxruntime's on SOURCE (the graph as given):
    then WrongNumbers, so the next form of the graph gets its turn. Quantized models are not
    checked (they differ by design; validation measures them)."""
    if ctx.quantize != "none":
        return artifact
    try:
        with open_runner() as runner:
            wrong = disagreement(source, io, runner, ctx)
    except Exception:  # noqa: BLE001 - no verdict (onnxruntime cannot run the source): validation judges
        return artifact
    if wrong:
        raise WrongNumbers(f"onnx2tf wrote a model whose {wrong}.", artifact)
    return artifact


def to_tflite(onnx_artifact: Artifact, workdir: Path, ctx: EdgeContext) -> Artifact:
    from ..targets.isolated import IsolatedRunner
    from ..targets.tflite import LiteRTRunner

    def finish(run: Onnx2tfRun) -> Artifact:
        tflite, workarounds = tflite_without_flex(run, run.ctx.quantize)
        stage = _stage(workdir)
        target = stage / "model.tflite"
        shutil.copyfile(tflite, target)
        # Reading specs only (no invoke) is safe in this process; running happens isolated.
        with LiteRTRunner(target) as runner:
            produced_in, produced_out = runner.inputs, runner.outputs
        isolated = lambda: IsolatedRunner("modelport.targets.tflite:LiteRTRunner", target)  # noqa: E731
        io, layout = mapping(run.onnx, produced_in, produced_out, run.ctx, isolated)
        extra: dict = {"converter": "onnx2tf", "workarounds": workarounds}
        floats = sorted(tflite.parent.glob(TFLITE_FILE["none"])) if ctx.quantize != "none" else []
        if floats:  # onnx2tf always writes the float32 model too: the yardstick of the drift report
            shutil.copyfile(floats[0], stage / "model.float32.tflite")
            extra["float_artifact"] = {"path": str(stage / "model.float32.tflite"), "format": "tflite"}
        artifact = Artifact(path=target, format="tflite", inputs=tuple(produced_in), outputs=tuple(produced_out),
                            io=onnx_artifact.io.then(io), path_taken=(*onnx_artifact.path_taken, "tflite"),
                            layout=layout, quantization=ctx.quantize, extra=extra)
        return checked(artifact, onnx_artifact, io, isolated, run.ctx)

    return _own_copy(convert_with_fallbacks(onnx_artifact, ctx, "tflite", finish), workdir)


def to_savedmodel(onnx_artifact: Artifact, workdir: Path, ctx: EdgeContext) -> Artifact:
    """The SavedModel onnx2tf writes on its way to TFLite (one onnx2tf run serves both)."""
    from ..targets.savedmodel import SavedModelRunner

    def finish(run: Onnx2tfRun) -> Artifact:
        target = _stage(workdir) / "saved_model"
        target.mkdir()
        for name in ("saved_model.pb", "variables", "assets", "fingerprint.pb"):
            item = run.out / name
            if item.is_dir():
                shutil.copytree(item, target / name)
            elif item.exists():
                shutil.copyfile(item, target / name)
        with SavedModelRunner(target) as runner:
            produced_in, produced_out = runner.inputs, runner.outputs
        io, layout = mapping(run.onnx, produced_in, produced_out, run.ctx, lambda: SavedModelRunner(target))
        artifact = Artifact(path=target, format="savedmodel", inputs=tuple(produced_in), outputs=tuple(produced_out),
                            io=onnx_artifact.io.then(io), path_taken=(*onnx_artifact.path_taken, "savedmodel"),
                            layout=layout, extra={"converter": "onnx2tf", "workarounds": list(run.workarounds),
                                                  "signature": "serving_default"})
        return checked(artifact, onnx_artifact, io, lambda: SavedModelRunner(target), run.ctx)

    return _own_copy(convert_with_fallbacks(onnx_artifact, ctx, "savedmodel", finish), workdir)


def _stage(workdir: Path) -> Path:
    """A folder of its own for one form's artifact: a later form must not overwrite the one that
    may still be returned (wrong numbers, where no form does better)."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=".form-", dir=workdir))


def _own_copy(artifact: Artifact, workdir: Path) -> Artifact:
    """The chosen form's artifact moved from its stage into WORKDIR; the other stages removed."""
    moved: dict[str, Path] = {}
    for source in [artifact.path, *([Path(artifact.extra["float_artifact"]["path"])]
                                    if "float_artifact" in artifact.extra else [])]:
        destination = workdir / source.name
        if destination.is_dir():
            shutil.rmtree(destination)
        shutil.move(str(source), str(destination))
        moved[str(source)] = destination
    for stage in workdir.glob(".form-*"):
        shutil.rmtree(stage, ignore_errors=True)
    extra = dict(artifact.extra)
    if "float_artifact" in extra:
        extra["float_artifact"] = {**extra["float_artifact"], "path": str(moved[extra["float_artifact"]["path"]])}
    return artifact.with_(path=moved[str(artifact.path)], extra=extra)


class Unsure(NamedTuple):
    """Which inputs and outputs have a shape that fits both layouts (e.g. 2x2x2, 1x8x8x8)."""

    inputs: list[int]
    outputs: list[int]


def mapping(onnx_artifact: Artifact, produced_in: list[TensorSpec], produced_out: list[TensorSpec], ctx: EdgeContext,
             open_runner: Callable[[], Runner]) -> tuple[IOMapping, str]:
    channel_last_source = onnx_artifact.layout == "nhwc"
    io, unsure = map_io(onnx_artifact, produced_in, produced_out, ctx.keep_layout or channel_last_source)
    if unsure.inputs or unsure.outputs:
        with open_runner() as runner:
            io = _probe(onnx_artifact, runner, io, unsure, ctx)
    layout = "nhwc" if channel_last_source or any(link.perm for link in io.inputs) else "nchw"
    return io, layout


def map_io(onnx_artifact: Artifact, produced_in: list[TensorSpec], produced_out: list[TensorSpec],
           keep_layout: bool) -> tuple[IOMapping, Unsure]:
    inputs, outputs, unsure = [], [], Unsure([], [])
    for index, (spec, produced) in enumerate(_pair(list(onnx_artifact.inputs), produced_in)):
        link, ambiguous = _link(spec, produced, keep_layout)
        inputs.append(link)
        if ambiguous:
            unsure.inputs.append(index)
    for index, (spec, produced) in enumerate(_pair(list(onnx_artifact.outputs), produced_out)):
        link, ambiguous = _link(spec, produced, False)
        outputs.append(link)
        if ambiguous:
            unsure.outputs.append(index)
    return IOMapping(tuple(inputs), tuple(outputs)), unsure


def disagreement(onnx_artifact: Artifact, io: IOMapping, runner: Runner, ctx: EdgeContext) -> str | None:
    """Where a converted model's numbers are far from onnxruntime's on the ONNX it came from, one
    line saying so; else None. On the user's first sample (else validation's first seeded one),
    100 x looser than the fp32 validation tolerance: it only catches a converter that got an op
    wrong, so the planner can try another path; validation still decides pass or fail."""
    import numpy as np

    from ..targets.onnx import OnnxRuntimeRunner
    from ..validators.data import make_feeds
    from ..validators.validate import to_artifact_feeds, to_source_outputs

    feeds = (to_artifact_feeds(onnx_artifact, ctx.examples[0]) if ctx.examples
             else make_feeds(list(onnx_artifact.inputs), seed=ctx.seed))
    with OnnxRuntimeRunner(onnx_artifact.path) as ort:
        reference = ort.run(feeds)
    own = onnx_artifact.with_(io=io)  # this edge's mapping: ONNX names in, its names out
    produced = to_source_outputs(own, runner.run(to_artifact_feeds(own, feeds)))
    for name, expected in reference.items():
        if name not in produced or np.shape(produced[name]) != np.shape(expected):
            shape = np.shape(produced[name]) if name in produced else "none"
            return f"output '{name}' has shape {shape} where onnxruntime gives {np.shape(expected)}"
        got = produced[name]
        expected64, got64 = np.asarray(expected, np.float64), np.asarray(got, np.float64)
        if not np.allclose(got64, expected64, atol=1e-2, rtol=1e-2, equal_nan=True):
            worst = float(np.nanmax(np.abs(got64 - expected64))) if expected64.size else 0.0
            return f"output '{name}' differs from onnxruntime's by up to {worst:.3g} on the first sample"
    return None


_MAX_PROBED_INPUTS = 4  # 2**4 runs of the converted model at most


def _probe(onnx_artifact: Artifact, runner: Runner, io: IOMapping, unsure: Unsure, ctx: EdgeContext) -> IOMapping:
    """Where a shape fits both layouts, run the source and the converted model on one seeded
    sample and keep the permutations whose numbers agree: recorded here once, never guessed by
    the validator. Each layout of the unsure inputs is tried (onnx2tf keeps some rank-3 inputs
    as they are, e.g. ones only concatenated); each unsure output takes its closer layout."""
    import itertools

    from ..targets.onnx import OnnxRuntimeRunner
    from ..validators.data import make_feeds
    from ..validators.validate import to_artifact_feeds

    feeds = make_feeds(list(onnx_artifact.inputs), seed=ctx.seed + 1)
    with OnnxRuntimeRunner(onnx_artifact.path) as ort:
        reference = ort.run(feeds)
    probed = unsure.inputs[:_MAX_PROBED_INPUTS]
    best: tuple[float, IOMapping] | None = None
    for choice in itertools.product(*[(io.inputs[i].perm, None) for i in probed]):
        inputs = list(io.inputs)
        for index, perm in zip(probed, choice):
            inputs[index] = TensorLink(inputs[index].name, inputs[index].source_name, perm)
        candidate = IOMapping(tuple(inputs), io.outputs)
        try:
            produced = runner.run(to_artifact_feeds(onnx_artifact.with_(io=candidate), feeds))
        except Exception:  # noqa: BLE001 - this layout does not even run: not the one
            continue
        outputs, error = list(io.outputs), 0.0
        for index, link in enumerate(io.outputs):
            ref, value = reference[link.source_name], produced[link.name]
            perms = [channel_last(ref.ndim), None] if index in unsure.outputs else [link.perm]
            scored = [(_distance(ref.transpose(p) if p else ref, value), p) for p in perms]
            distance, perm = min(scored, key=lambda pair: pair[0])
            outputs[index] = TensorLink(link.name, link.source_name, perm)
            error += distance
        if best is None or error < best[0]:
            best = (error, IOMapping(candidate.inputs, tuple(outputs)))
    return best[1] if best is not None else io


def _distance(expected: Any, got: Any) -> float:
    import numpy as np

    if np.shape(expected) != np.shape(got):
        return float("inf")
    return float(np.abs(np.asarray(expected, np.float64) - np.asarray(got, np.float64)).max(initial=0.0))


_ONNX2TF = Requirement("tf", modules=("onnx2tf", "tensorflow", "onnx"))
EDGES = (Edge("onnx2tf", "onnx", "tflite", "modelport.converters.onnx2tf:to_tflite", _ONNX2TF, packages=("onnx2tf",)),
         Edge("onnx2savedmodel", "onnx", "savedmodel", "modelport.converters.onnx2tf:to_savedmodel", _ONNX2TF,
              packages=("onnx2tf",)))
