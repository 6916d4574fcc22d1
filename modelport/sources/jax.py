"""JAX sources: a function from a Python entry point, its parameters bound.

Accepted shapes of entry point (what `entry.resolve` hands over as kind "function"):
- a function of the inputs only, its parameters closed over or bound with functools.partial;
- `(fn, params)` or `(fn, params, example_inputs)`, called as `fn(params, *inputs)`.

Reference outputs come from JAX itself (jitted, on the CPU). Parameter arrays are kept apart
from the function, so the jax -> savedmodel edge can store them as variables rather than as
constants baked into the graph.
"""

from __future__ import annotations

import functools
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .._lazy import captured_output, require
from ..errors import BadInput
from ..spec import TensorSpec, merge_specs
from .base import EntryPoint, LoadOptions, SourceModel

_NO_PARAMS = ()


def _jax() -> Any:
    # (require quiets jaxlib's C++ logger, the same as TensorFlow's, for its first import)
    return require("jax", "jax", purpose="to read JAX functions")


def _is_array(leaf: Any) -> bool:
    import numpy as np

    jax = _jax()
    # numpy scalars and Python numbers stay static: they are often sizes or flags, not weights.
    return isinstance(leaf, (np.ndarray, jax.Array))


@dataclass
class BoundFunction:
    """`apply(params, *inputs)` with `params` split into array leaves (traced, stored as variables)
    and everything else (kept static, closed over)."""

    apply: Callable[..., Any]
    params: Any
    input_names: list[str]
    variadic: bool = False  # takes *args: input names are not known from the signature

    def __post_init__(self) -> None:
        jax = _jax()
        leaves, self._treedef = jax.tree_util.tree_flatten(self.params)
        self._mask = [_is_array(leaf) for leaf in leaves]
        self._static = leaves
        self.arrays: list[Any] = [leaf for leaf, array in zip(leaves, self._mask) if array]

    def rebuild(self, arrays: list[Any]) -> Any:
        it = iter(arrays)
        return self._treedef.unflatten([next(it) if array else leaf for leaf, array in zip(self._static, self._mask)])

    def call(self, arrays: list[Any], *inputs: Any) -> Any:
        return self.apply(self.rebuild(arrays), *inputs)

    def parameter_count(self) -> int:
        return int(sum(getattr(a, "size", 0) for a in self.arrays))


def _positional_names(fn: Callable[..., Any], skip: int = 0) -> tuple[list[str], bool]:
    """Names of the required positional parameters after the first `skip`, and whether *args is taken."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # some C-implemented callables have no signature
        return [], True
    variadic = any(p.kind == p.VAR_POSITIONAL for p in params)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = [p.name for p in positional[skip:] if p.default is p.empty]
    return names, variadic


def bind(entry: EntryPoint) -> BoundFunction:
    """Normalize what the entry point gave to `apply(params, *inputs)`."""
    fn = entry.obj
    if "params" in entry.extra:
        names, variadic = _positional_names(fn, skip=1)
        return BoundFunction(fn, entry.extra["params"], names, variadic)
    names, variadic = _positional_names(fn)
    if isinstance(fn, functools.partial):  # (nested partials are flattened by functools itself)
        # Lift what partial bound, so its arrays become variables instead of graph constants.
        func, args, keywords = fn.func, fn.args, dict(fn.keywords)
        return BoundFunction(lambda bound, *xs: func(*bound[0], *xs, **bound[1]), (args, keywords), names, variadic)
    return BoundFunction(lambda _, *xs: fn(*xs), _NO_PARAMS, names, variadic)


def _dtype_name(dtype: Any) -> str:
    import numpy as np

    return np.dtype(dtype).name


def _specs_from_examples(names: list[str], examples: Any) -> list[TensorSpec]:
    if isinstance(examples, dict):
        # The function is called positionally: put named examples in its parameters' order.
        keys = names if set(examples) == set(names) else list(examples)
        return [TensorSpec(str(k), tuple(examples[k].shape), _dtype_name(examples[k].dtype)) for k in keys]
    if hasattr(examples, "shape") and hasattr(examples, "dtype"):
        examples = (examples,)
    examples = tuple(examples)
    names = names + [f"input_{i}" for i in range(len(names), len(examples))]
    return [TensorSpec(n, tuple(int(d) for d in t.shape), _dtype_name(t.dtype)) for n, t in zip(names, examples)]


def _suggest_shape(bound: BoundFunction) -> str:
    """A plausible input shape from the first weight matrix or conv kernel, for the error message."""
    for array in bound.arrays:
        shape = tuple(getattr(array, "shape", ()))
        if len(shape) == 2:
            return f"1x{shape[0]}"
        if len(shape) == 4:  # HWIO kernel: JAX convolutions are usually NHWC
            return f"1x224x224x{shape[2]}"
    return "1x224x224x3"


def _need_input_error(display: str, bound: BoundFunction, names: list[str], partly: bool) -> BadInput:
    shape = _suggest_shape(bound)
    flags = " ".join(f"--input {n}:{shape}" for n in names)
    what = (f"The JAX function from '{display}' has no shape for its input(s) {', '.join(names)}" if partly
            else f"The JAX function from '{display}' does not say its input shapes")
    return BadInput(f"{what}.", f"Pass them, e.g.: {flags} (use a name such as 'batch' for a dynamic dimension; "
                                "or return (fn, params, example_inputs) from the entry point).")


def _input_specs(display: str, bound: BoundFunction, examples: Any, options: LoadOptions) -> list[TensorSpec]:
    names = bound.input_names
    specs = _specs_from_examples(names, examples) if examples is not None else None
    user = list(options.inputs)
    if specs is None and names and user:
        unknown = [s.name for s in user if s.name not in names]
        if unknown and not bound.variadic:
            raise BadInput(f"--input names '{unknown[0]}', but the function's inputs are: {', '.join(names)}.",
                           "Use those names (the function's parameter names).")
        by_name = {s.name: s for s in user}
        missing = [n for n in names if n not in by_name]
        if missing and not options.describe_only:
            raise _need_input_error(display, bound, missing, partly=True)
        # Positional order is the function's, whatever order the flags came in.
        specs = [by_name.get(n, TensorSpec(n, None)) for n in names] + [s for s in user if s.name not in names]
    else:
        specs = merge_specs(specs, user)
    if not specs:
        if options.describe_only:
            return [TensorSpec(n, None) for n in names]
        raise _need_input_error(display, bound, names or ["x"], partly=False)
    if not bound.variadic and names and len(specs) != len(names):
        raise BadInput(f"The function from '{display}' takes {len(names)} input(s) ({', '.join(names)}), "
                       f"but {len(specs)} were given.", "Give one example input or --input per parameter.")
    return specs


def jax_dtype(name: str) -> Any:
    """The dtype JAX computes in: without jax_enable_x64, 64-bit types become 32-bit."""
    import numpy as np

    jax = _jax()
    dtype = jax.numpy.bfloat16 if name == "bfloat16" else np.dtype(name)
    return jax.dtypes.canonicalize_dtype(dtype)


def _output_name(path: tuple[Any, ...]) -> str:
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(re.sub(r"\W", "", str(key)))
    if not parts:
        return "output"
    if parts[0].isdigit():  # a top-level tuple or list
        parts[0] = f"output_{parts[0]}"
    return "_".join(parts)


def output_names(tree: Any) -> list[str]:
    """`output` for one array, `output_0..` for tuples, keys for dicts (nested ones joined by '_')."""
    jax = _jax()
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    names: list[str] = []
    for path, _ in leaves:
        name = _output_name(path)
        while name in names:  # e.g. keys "a_0" and ("a", 0)
            name += "_"
        names.append(name)
    return names


def abstract_inputs(specs: list[TensorSpec], symbolic: bool) -> list[Any]:
    """ShapeDtypeStructs for the inputs; named dims become JAX symbolic dims when `symbolic`."""
    jax = _jax()
    from ..validators.data import concrete_shape

    scope = jax.export.SymbolicScope() if symbolic else None
    out = []
    for spec in specs:
        if symbolic and spec.shape is not None and any(isinstance(d, str) for d in spec.shape):
            shape = jax.export.symbolic_shape(", ".join(str(d) for d in spec.shape), scope=scope)
        else:
            shape = concrete_shape(spec)
        out.append(jax.ShapeDtypeStruct(tuple(shape), jax_dtype(spec.dtype)))
    return out


class JaxModel(SourceModel):
    format = "jax"
    framework = "jax"
    runtime = "jax"

    def __init__(self, path: Path | str, handle: BoundFunction, display: str | None = None) -> None:
        super().__init__(path, handle, display)
        self._jitted: Callable[..., Any] | None = None

    def _load(self) -> None:  # loaded by load_entry
        pass

    def _run(self, feeds):
        import numpy as np

        jax = _jax()
        if self._jitted is None:
            bound: BoundFunction = self.handle
            self._jitted = jax.jit(lambda arrays, *xs: jax.tree_util.tree_leaves(bound.call(arrays, *xs)))
        # The CPU gives the reference: a GPU's TF32 matmuls would differ from the targets' CPU runtimes.
        cpu = jax.devices("cpu")[0]
        with jax.default_device(cpu):
            args = [jax.numpy.asarray(feeds[s.name], dtype=jax_dtype(s.dtype)) for s in self.inputs]
            leaves = self._jitted(self.handle.arrays, *args)
        return {spec.name: np.asarray(value) for spec, value in zip(self.outputs, leaves)}

    def summary(self) -> dict:
        counts: dict[str, int] = {}
        if self.inputs and all(s.shape is not None for s in self.inputs):
            jax = _jax()
            bound: BoundFunction = self.handle
            try:
                jaxpr = jax.make_jaxpr(bound.call)(bound.arrays, *abstract_inputs(self.inputs, symbolic=False))
                _count_primitives(jaxpr.jaxpr, counts)
            except Exception:  # a summary must never fail a conversion
                counts = {}
        # Arrays closed over (not passed as params) are invisible here: unknown, not zero.
        return {"parameters": self.handle.parameter_count() if self.handle.arrays else None,
                "ops": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}


def _count_primitives(jaxpr: Any, counts: dict[str, int]) -> None:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("pjit", "closed_call", "custom_jvp_call", "custom_vjp_call"):
            for value in eqn.params.values():
                inner = getattr(value, "jaxpr", None)
                if inner is not None:
                    _count_primitives(getattr(inner, "jaxpr", inner), counts)
            continue
        counts[eqn.primitive.name] = counts.get(eqn.primitive.name, 0) + 1


def describe_outputs(display: str, bound: BoundFunction, specs: list[TensorSpec]) -> list[TensorSpec]:
    """Output names and shapes by abstract evaluation (nothing runs); symbolic where inputs are."""
    jax = _jax()
    dynamic = any(isinstance(d, str) for s in specs for d in s.shape or ())  # load_entry: all shapes known
    attempts = [True, False] if dynamic else [False]
    error: Exception | None = None
    for symbolic in attempts:
        try:
            tree = jax.eval_shape(bound.call, bound.arrays, *abstract_inputs(specs, symbolic))
        except Exception as exc:  # a function that is not JAX, or wrong shapes; reported below
            error = error or exc
            continue
        leaves = jax.tree_util.tree_leaves(tree)
        return [TensorSpec(name, tuple(d if isinstance(d, int) else str(d) for d in leaf.shape),
                           _dtype_name(leaf.dtype))
                for name, leaf in zip(output_names(tree), leaves)]
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    raise BadInput(f"'{display}' could not be traced as a JAX function on inputs "
                   f"{', '.join(s.cli_form() for s in specs)}: {type(error).__name__}: {first[:300]}",
                   "modelport reads a plain function as JAX: write it with jax.numpy, check the input shapes, "
                   "or return a torch.nn.Module / keras.Model instead.")


def load_entry(entry: EntryPoint, options: LoadOptions) -> JaxModel:
    """Load a JAX function entry point (kind "function")."""
    with captured_output(options.verbose):
        _jax().devices("cpu")  # the first backend start-up logs (e.g. "no GPU found"); keep it here
    bound = bind(entry)
    display = entry.display
    model = JaxModel(Path(display.rpartition(":")[0]), bound, display)
    model.inputs = _input_specs(display, bound, entry.example_inputs, options)
    model.details["parameters_as"] = "variables" if bound.arrays else "constants"
    if any(s.shape is None for s in model.inputs):  # describe_only: shapes unknown, nothing to trace
        model._loaded = True
        return model
    with captured_output(options.verbose):
        model.outputs = describe_outputs(display, bound, model.inputs)
    model._loaded = True
    return model
