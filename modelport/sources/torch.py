"""PyTorch sources: TorchScript archives, torch.export `.pt2` archives, nn.Modules from entry
points, and (only with --trust-remote-code) pickled whole modules."""

from __future__ import annotations

import inspect
import pickle
from pathlib import Path
from typing import Any

from .._lazy import require
from ..errors import BadInput, first_line
from ..spec import TensorSpec, merge_specs
from .base import EntryPoint, LoadOptions, SourceModel

_TORCH_DTYPE_NAMES = {"float32", "float16", "float64", "bfloat16", "int8", "uint8", "int16", "int32",
                      "int64", "bool"}


def _torch():
    return require("torch", purpose="to read PyTorch models")


def _dtype_name(dtype: Any) -> str:
    name = str(dtype).replace("torch.", "")
    return name if name in _TORCH_DTYPE_NAMES else "float32"


def _suggest_shape(module: Any) -> str:
    """A plausible input shape from the first layer, for the 'pass --input' message."""
    torch = _torch()
    for layer in module.modules() if hasattr(module, "modules") else []:
        if isinstance(layer, torch.nn.Conv2d):
            return f"1x{layer.in_channels}x224x224"
        if isinstance(layer, torch.nn.Conv1d):
            return f"1x{layer.in_channels}x128"
        if isinstance(layer, torch.nn.Conv3d):
            return f"1x{layer.in_channels}x16x112x112"
        if isinstance(layer, torch.nn.Linear):
            return f"1x{layer.in_features}"
        if isinstance(layer, torch.nn.Embedding):
            return "1x128:int64"
    return "1x3x224x224"


def _forward_arg_names(module: Any) -> list[str]:
    torch = _torch()
    if isinstance(module, torch.jit.ScriptModule):
        return [a.name for a in module.forward.schema.arguments[1:]]
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return ["x"]
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.default is p.empty] or ["x"]


def _need_input_error(what: str, module: Any, names: list[str]) -> BadInput:
    shape = _suggest_shape(module)
    dims, _, dtype = shape.partition(":")
    flags = " ".join(f"--input {n}:{dims}{':' + dtype if dtype else ''}" for n in names)
    return BadInput(f"{what} does not record its input shapes.",
                    f"Pass them, e.g.: {flags} (use a name such as 'batch' for a dynamic dimension).")


def _specs_from_examples(names: list[str], examples: Any) -> list[TensorSpec]:
    torch = _torch()
    if isinstance(examples, torch.Tensor):
        examples = (examples,)
    if isinstance(examples, dict):
        return [TensorSpec(k, tuple(v.shape), _dtype_name(v.dtype)) for k, v in examples.items()]
    examples = tuple(examples)
    if len(names) < len(examples):
        names = names + [f"input_{i}" for i in range(len(names), len(examples))]
    return [TensorSpec(n, tuple(t.shape), _dtype_name(t.dtype)) for n, t in zip(names, examples)]


def _flatten_outputs(result: Any) -> list[tuple[str, Any]]:
    torch = _torch()
    if isinstance(result, torch.Tensor):
        return [("output", result)]
    if isinstance(result, dict):
        return [(str(k), v) for k, v in result.items()]
    if hasattr(result, "_fields"):  # namedtuple
        return list(zip(result._fields, result))
    if isinstance(result, (tuple, list)):
        flat: list[tuple[str, Any]] = []
        for i, item in enumerate(result):
            inner = _flatten_outputs(item)
            flat.extend([(f"output_{i}", inner[0][1])] if len(inner) == 1 else
                        [(f"output_{i}_{name}", value) for name, value in inner])
        return flat
    raise BadInput(f"The model returned a {type(result).__name__}; modelport handles tensors, and tuples, "
                   "lists or dicts of tensors.", "Wrap the model so forward() returns tensors.")


class ThreadPin:
    """torch's thread count is process-wide: pin it while a model is open, put it back on close."""

    def __init__(self) -> None:
        self._saved: int | None = None

    def pin(self, torch: Any, threads: int | None) -> None:
        if threads and self._saved is None:
            self._saved = torch.get_num_threads()
            torch.set_num_threads(threads)

    def release(self) -> None:
        if self._saved is not None:
            _torch().set_num_threads(self._saved)
            self._saved = None


class TorchModel(SourceModel):
    framework = "torch"
    runtime = "torch"

    def __init__(self, path: Path | str, handle: Any, format: str, display: str | None = None) -> None:
        super().__init__(path, handle, display)
        self.format = format
        self._threads = ThreadPin()

    def _load(self) -> None:  # the handle is loaded by the load_* functions below
        pass

    def _close(self) -> None:
        self._threads.release()

    def callable_module(self) -> Any:
        if self.format != "pt2":
            return self.handle
        if getattr(self, "_unlifted", None) is None:  # building it costs more than running it
            self._unlifted = self.handle.module()
        return self._unlifted

    def _run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        torch = _torch()
        self._threads.pin(torch, self.threads)
        args = [torch.from_numpy(feeds[s.name].copy()) for s in self.inputs]
        with torch.no_grad():
            result = self.callable_module()(*args)
        return {name: value.detach().cpu().numpy() for name, value in _flatten_outputs(result)}

    def describe_outputs(self, sample_feeds: dict) -> None:
        """Output names and shapes come from one run on sample inputs."""
        self._loaded = True
        outputs = self._run(sample_feeds)
        self.outputs = [TensorSpec(n, tuple(v.shape), str(v.dtype)) for n, v in outputs.items()]

    def parameter_count(self) -> int:
        module = self.callable_module()
        return sum(p.numel() for p in module.parameters()) if hasattr(module, "parameters") else 0

    def summary(self) -> dict:
        counts: dict[str, int] = {}
        if self.format == "pt2":
            ops = [str(n.target) for n in self.handle.graph.nodes if n.op == "call_function"]
        elif self.format == "torchscript":
            ops = [n.kind() for n in self.handle.inlined_graph.nodes() if n.kind().startswith("aten::")]
        else:
            ops = []
        for op in ops:
            counts[op] = counts.get(op, 0) + 1
        return {"parameters": self.parameter_count(),
                "ops": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}


def _recorded_outputs(model: TorchModel) -> list[TensorSpec]:
    """A torch.export program's outputs from its graph (shapes and dtypes recorded at export),
    named as a run would name them (`output`, or `output_N` for several)."""
    if model.format != "pt2":
        return []
    try:
        node = next(n for n in model.handle.graph.nodes if n.op == "output")
        values: list[Any] = [getattr(v, "meta", {}).get("val") for v in node.args[0]]
    except (StopIteration, TypeError, IndexError):
        return []
    if not values or any(v is None or not hasattr(v, "shape") for v in values):
        return []
    names = ["output"] if len(values) == 1 else [f"output_{i}" for i in range(len(values))]
    return [TensorSpec(name, tuple(d if isinstance(d, int) else str(d) for d in v.shape), _dtype_name(v.dtype))
            for name, v in zip(names, values)]


def _finish(model: TorchModel, specs: list[TensorSpec] | None, what: str, options: LoadOptions) -> TorchModel:
    from ..validators.data import make_feeds

    module = model.callable_module()
    specs = merge_specs(specs, list(options.inputs))
    if options.describe_only:  # inspect: never run the model; a .pt2 records its outputs, others need a run
        model.inputs = specs or [TensorSpec(n, None) for n in _forward_arg_names(module)]
        model.outputs = _recorded_outputs(model)
        model._loaded = True
        return model
    if not specs:
        raise _need_input_error(what, module, _forward_arg_names(module))
    incomplete = [s for s in specs if s.shape is None]
    if incomplete:
        raise _need_input_error(what, module, [s.name for s in incomplete])
    model.inputs = specs
    model.describe_outputs(make_feeds(specs, seed=0))
    return model


def load_torchscript(path: Path, options: LoadOptions) -> TorchModel:
    torch = _torch()
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # RuntimeError, and others from a damaged or hostile archive
        raise BadInput(f"'{path}' is not a readable TorchScript archive: {first_line(exc)}",
                       "Save it again with torch.jit.save.") from None
    # TorchScript keeps argument names but not shapes: those come from --input.
    return _finish(TorchModel(path, module, "torchscript"), None, "This TorchScript archive", options)


# Members torch.export.load hands to an unpickler, by their path inside the archive's top folder.
_PICKLED_MEMBERS = ("data/sample_inputs/", "serialized_state_dict.pt", "serialized_constants.pt",
                    "serialized_example_inputs.pt")
_PAYLOAD_CONFIGS = (("data/weights/", "_weights_config.json"), ("data/constants/", "_constants_config.json"))


def check_export_archive(path: Path) -> None:
    """Refuse a .pt2 that torch.export.load would read with the unsafe unpickler or native code.

    torch 2.13's loader falls back to `torch.load(weights_only=False)` for sample inputs (and the
    legacy format's members) when the safe load fails, unpickles payloads marked `use_pickle`
    (and opaque constants) without restriction, and loads AOTInductor shared libraries. So every
    member it would unpickle must load with the weights-only unpickler first; then its fallback
    never runs. Nothing here executes the archive's content."""
    import io
    import zipfile

    torch = _torch()
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadInput(f"'{path}' is not a readable torch.export archive: {first_line(exc)}.",
                       "Save it again with torch.export.save.") from None
    with archive:
        members = {name.split("/", 1)[1] if "/" in name else name: name for name in archive.namelist()}
        native = [full for tail, full in members.items() if tail.startswith("data/aotinductor/")]
        if native:
            raise BadInput(f"'{path}' carries compiled native code ({native[0]}), which loading would run.",
                           "If you trust its author, re-run with --trust-remote-code; or export without AOTInductor.")
        pickled = [full for tail, full in members.items() if tail.startswith(_PICKLED_MEMBERS)]
        for tail, full in members.items():
            for folder, suffix in _PAYLOAD_CONFIGS:
                if tail.startswith(folder) and tail.endswith(suffix):
                    pickled += _pickled_payloads(archive, full, folder, members)
        for name in dict.fromkeys(pickled):
            data = _read_member(archive, name)
            try:
                torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
            except Exception as exc:  # UnpicklingError for a forbidden global; anything else: not loadable safely
                raise BadInput(f"'{path}' member '{name}' needs the unsafe unpickler (it would run code stored in "
                               f"the file): {first_line(exc, 160)}",
                               "If you trust its author, re-run with --trust-remote-code; better, export it again "
                               "with torch.export.save from plain tensors.") from None


def _read_member(archive: Any, name: str) -> bytes:
    """One member's bytes; a damaged archive (bad header, CRC, compression) is refused as such."""
    import zipfile
    import zlib

    try:
        data: bytes = archive.read(name)
        return data
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise BadInput(f"'{archive.filename}' is a damaged archive: member '{name}': {first_line(exc, 160).rstrip('.')}.",
                       "Export or copy it again.") from None


def _pickled_payloads(archive: Any, config_name: str, folder: str, members: dict[str, str]) -> list[str]:
    """Members a weights/constants config marks as pickled, or as objects rather than tensors."""
    import json

    raw = _read_member(archive, config_name)
    try:
        config = json.loads(raw).get("config", {})
    except (ValueError, AttributeError):
        raise BadInput(f"'{archive.filename}' has an unreadable payload config '{config_name}'.",
                       "Save it again with torch.export.save.") from None
    found = []
    for entry in config.values() if isinstance(config, dict) else []:
        if not isinstance(entry, dict):
            continue
        if entry.get("use_pickle") or entry.get("tensor_meta") is None:
            member = members.get(folder + str(entry.get("path_name", "")))
            if member is not None:
                found.append(member)
    return found


def load_exported_program(path: Path, options: LoadOptions) -> TorchModel:
    torch = _torch()
    if not options.trust_remote_code:
        check_export_archive(path)
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # torch raises many kinds on a damaged archive
        raise BadInput(f"'{path}' is not a readable torch.export archive: {first_line(exc)}",
                       "Save it again with torch.export.save.") from None
    model = TorchModel(path, program, "pt2")
    user_inputs = list(program.graph_signature.user_inputs)
    specs = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            value = node.meta.get("val")
            shape = tuple(d if isinstance(d, int) else str(d) for d in value.shape)
            specs.append(TensorSpec(node.name, shape, _dtype_name(value.dtype)))
    model.details["dynamic_ranges"] = {str(k): str(v) for k, v in program.range_constraints.items()}
    return _finish(model, specs, "This torch.export archive", options)


def load_pickle(path: Path, options: LoadOptions) -> TorchModel:
    torch = _torch()
    if not options.trust_remote_code:
        try:
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise BadInput(
                f"'{path}' is a pickled Python object (a whole saved module); loading it would run "
                "code stored in the file.",
                "If you trust its author, re-run with --trust-remote-code; better, save the model with "
                "torch.jit.save or torch.export.save.") from None
        except Exception as exc:
            raise BadInput(f"'{path}' cannot be read as a torch.save file: {str(exc).splitlines()[0]}",
                           "The file is probably truncated or corrupt; save it again.") from None
        raise _state_dict_error(path, loaded)
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=False)  # the user said so
    except Exception as exc:
        raise BadInput(f"'{path}' cannot be unpickled: {type(exc).__name__}: {exc}",
                       "Its classes must be importable here; or save it with torch.export.save.") from None
    if not isinstance(loaded, torch.nn.Module):
        raise _state_dict_error(path, loaded)
    return _finish(TorchModel(path, loaded.eval(), "torch-pickle"), None,
                   "A pickled module", options)


def _state_dict_error(path: Path, loaded: Any) -> BadInput:
    kind = "a state_dict (weights only)" if isinstance(loaded, dict) else f"a {type(loaded).__name__}"
    return BadInput(f"'{path}' holds {kind}, not a model: it has no architecture to convert.",
                    "Pass an entry point that builds the module and loads these weights, e.g. model.py:build.")


def load_entry(entry: EntryPoint, options: LoadOptions) -> TorchModel:
    torch = _torch()
    module = entry.obj
    if hasattr(module, "eval"):
        module.eval()
    model = TorchModel(Path(entry.display.rpartition(":")[0]), module, "torch", entry.display)
    specs = None
    if entry.example_inputs is not None and not options.inputs:
        names = _forward_arg_names(module) if not isinstance(module, torch.export.ExportedProgram) else []
        specs = _specs_from_examples(names, entry.example_inputs)
    return _finish(model, specs, f"The module from '{entry.display}'", options)


def load(path: Path, fmt: str, options: LoadOptions) -> TorchModel:
    loaders = {"torchscript": load_torchscript, "pt2": load_exported_program,
               "torch-pickle": load_pickle}
    return loaders[fmt](path, options)
