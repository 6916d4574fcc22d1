"""TensorFlow SavedModel source: a signature of `tf.saved_model.load`, run for reference outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._lazy import captured_output, require
from ..errors import BadInput, first_line
from ..spec import TensorSpec, merge_specs
from .base import LoadOptions, SourceModel

DEFAULT_SIGNATURE = "serving_default"


# Ops that reach outside the graph, from TensorFlow's op registry (tf.raw_ops, TF 2.19): file and
# directory I/O, readers and datasets over files, checkpoint and summary writers, debug sinks,
# Python callbacks and remote calls. A SavedModel running any of them (at load or when called) is
# refused unless --trust-remote-code. README "What modelport runs" lists them.
OUTSIDE_OPS = frozenset({
    # files and directories
    "ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst", "FileSystemSetConfiguration",
    "InitializeTableFromTextFile", "InitializeTableFromTextFileV2", "LoadAndRemapMatrix",
    # checkpoints (a SavedModel's own saver functions hold these; they are not run by loading)
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints",
    # readers and datasets over files or databases
    "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "IdentityReader", "IdentityReaderV2", "LMDBReader",
    "TFRecordReader", "TFRecordReaderV2", "TextLineReader", "TextLineReaderV2", "WholeFileReader",
    "WholeFileReaderV2", "RecordInput", "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset",
    "FixedLengthRecordDataset", "FixedLengthRecordDatasetV2", "LMDBDataset", "ExperimentalLMDBDataset",
    "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset", "SqlDataset", "ExperimentalSqlDataset",
    "MatchingFilesDataset", "ExperimentalMatchingFilesDataset", "LoadDataset", "SaveDataset", "SaveDatasetV2",
    "SnapshotDataset", "SnapshotDatasetV2", "SnapshotDatasetReader", "SnapshotNestedDatasetReader",
    "SnapshotChunkDataset", "ListSnapshotChunksDataset", "DistributedSave", "DatasetToTFRecord",
    "ExperimentalDatasetToTFRecord",
    # summary and debug writers
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "SummaryWriter", "WriteSummary", "WriteScalarSummary",
    "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary", "WriteGraphSummary",
    "WriteRawProtoSummary", "FlushSummaryWriter", "CloseSummaryWriter", "StatsAggregatorSetSummaryWriter",
    "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount", "DebugNumericSummary",
    "DebugNumericSummaryV2",
    # Python callbacks and remote execution
    "PyFunc", "PyFuncStateless", "EagerPyFunc", "RemoteCall", "RpcServer", "RpcClient", "RpcCall",
    "RpcServerStart", "RpcServerRegister",
})
_PRINT_STREAMS = {"stderr", "stdout", "log(info)", "log(warning)", "log(error)"}


def check_graph_ops(path: Path) -> None:
    """Scan a SavedModel's graph and every function it can run (the saver's own save/restore
    functions aside) for ops that reach outside the model; refuse the first one found.

    Reads saved_model.pb as a protobuf: nothing in it runs."""
    with captured_output(False):
        require("tensorflow", "tf", purpose="to read SavedModels")
        from google.protobuf import text_format
        from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        if (path / "saved_model.pb").is_file():
            saved.ParseFromString((path / "saved_model.pb").read_bytes())
        else:
            text_format.Parse((path / "saved_model.pbtxt").read_text(), saved)
    except Exception as exc:  # DecodeError, ParseError
        raise BadInput(f"'{path}' has an unreadable saved_model.pb: {first_line(exc)}",
                       "Save it again with tf.saved_model.save or keras model.export.") from None
    for meta in saved.meta_graphs:
        graph = meta.graph_def
        functions = {f.signature.name: f for f in graph.library.function}
        saver = {meta.saver_def.restore_op_name.split(":")[0], meta.saver_def.save_tensor_name.split(":")[0]}
        roots = [(node, "the graph") for node in graph.node if node.name not in saver]
        seen: set[str] = set()
        while roots:
            node, where = roots.pop()
            _refuse_if_outside(path, node, where)
            for called in _called_functions(node):
                if called in functions and called not in seen:
                    seen.add(called)
                    roots.extend((inner, f"function '{called}'") for inner in functions[called].node_def)


def _called_functions(node: Any) -> list[str]:
    names = []
    for value in node.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        names.extend(f.name for f in value.list.func)
    return names


def _refuse_if_outside(path: Path, node: Any, where: str) -> None:
    op = node.op
    if op in ("Print", "PrintV2"):
        stream = node.attr["output_stream"].s.decode("utf-8", "replace") if "output_stream" in node.attr else "stderr"
        if stream in _PRINT_STREAMS:
            return
    elif op not in OUTSIDE_OPS:
        return
    raise BadInput(f"'{path}' runs the TensorFlow op {op} (node '{node.name}' in {where}), which reaches "
                   "outside the model (files, Python or the network).",
                   "If you trust its author, re-run with --trust-remote-code.")


def tf_spec(name: str, spec: Any) -> TensorSpec:
    """A tf.TensorSpec as ours; unknown dims get names (the first is the batch)."""
    shape = None if spec.shape.rank is None else tuple(
        int(d) if d is not None else ("batch" if i == 0 else f"{name}_d{i}") for i, d in enumerate(spec.shape.as_list()))
    return TensorSpec(name, shape, spec.dtype.name)


def signature_of(saved: Any, source: Any = None, fallback: str | None = None) -> str:
    """The signature an edge should use for a SavedModel artifact: the one it was made with, else
    the one the source was loaded with, else --signature, else serving_default."""
    loaded = source.details.get("signature") if source is not None and source.format == "savedmodel" else None
    return saved.extra.get("signature") or loaded or fallback or DEFAULT_SIGNATURE


def choose_signature(signatures: dict, wanted: str | None, where: str) -> str:
    names = sorted(signatures)
    if wanted:
        if wanted not in signatures:
            raise BadInput(f"{where} has no signature '{wanted}'.", f"Its signatures: {', '.join(names) or 'none'}.")
        return wanted
    if DEFAULT_SIGNATURE in signatures:
        return DEFAULT_SIGNATURE
    if len(names) == 1:
        return names[0]
    if not names:
        raise BadInput(f"{where} has no signatures to call.",
                       "Save it with tf.saved_model.save(obj, dir, signatures=...) or keras model.export(dir).")
    raise BadInput(f"{where} has several signatures and none is '{DEFAULT_SIGNATURE}': {', '.join(names)}.",
                   f"Pick one with --signature, e.g. --signature {names[0]}.")


class SavedModel(SourceModel):
    format = "savedmodel"
    framework = "tensorflow"
    runtime = "tensorflow"
    _keepalive: Any  # the loaded SavedModel object, set by `load`

    def _load(self) -> None:
        pass  # loaded by `load`

    def summary(self) -> dict:
        counts: dict[str, int] = {}
        graph = self.handle.graph.as_graph_def()
        nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
        for node in nodes:
            if node.op not in ("Placeholder", "Const", "NoOp", "Identity", "StatefulPartitionedCall",
                               "PartitionedCall", "ReadVariableOp"):
                counts[node.op] = counts.get(node.op, 0) + 1
        parameters = sum(int(v.shape.num_elements() or 0) for v in self.handle.variables)
        return {"parameters": parameters, "signature": self.details.get("signature"),
                "signatures": self.details.get("signatures"),
                "ops": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}

    def _run(self, feeds):
        tf = require("tensorflow")
        result = self.handle(**{name: tf.constant(value) for name, value in feeds.items()})
        return {name: result[name].numpy() for name in (s.name for s in self.outputs)}


def load(path: Path, fmt: str, options: LoadOptions) -> SavedModel:
    if not options.trust_remote_code:
        check_graph_ops(path)
    with captured_output(options.verbose):
        tf = require("tensorflow", purpose="to read SavedModels")
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # corrupt protobuf, missing variables, unknown ops
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BadInput(f"'{path}' cannot be loaded as a SavedModel: {first[:300]}",
                           "Save it again with tf.saved_model.save or keras model.export.") from None
    signature = choose_signature(dict(loaded.signatures), options.signature, f"SavedModel '{path}'")
    function = loaded.signatures[signature]
    model = SavedModel(path, handle=function)
    model.details["signature"] = signature
    model.details["signatures"] = sorted(loaded.signatures)
    model._keepalive = loaded  # the signature needs its object alive
    inputs = [tf_spec(name, spec) for name, spec in sorted(function.structured_input_signature[1].items())]
    model.inputs = merge_specs(inputs, list(options.inputs))
    model.outputs = [tf_spec(name, spec) for name, spec in sorted(function.structured_outputs.items())]
    model._loaded = True
    return model
