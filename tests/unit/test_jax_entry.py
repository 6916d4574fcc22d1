"""How entry points that give a plain function (read as JAX) are told apart; no framework needed."""

import textwrap

import pytest

from modelport import registry
from modelport.sources import entry as entries


def resolve(source):
    table = registry.default()
    return entries.resolve(source, table.entry_frameworks(), table.function_format(), table.extra_for_module())

SOURCE = textwrap.dedent("""
    import functools

    def apply(params, x):
        return x
    def bound(x):
        return x
    bound_partial = functools.partial(apply, {"w": 1})
    def with_params():
        return apply, {"w": 1}
    def with_params_and_examples():
        return apply, {"w": 1}, ("x0",)
    def with_examples_only():
        return bound, ("x0",)
    def closure_factory():
        return bound
    def as_dict():
        return {"model": apply, "params": {"w": 1}, "example_inputs": ("x0",)}
    def not_a_model():
        return 42
""")


@pytest.fixture()
def entry_file(tmp_path):
    path = tmp_path / "entries.py"
    path.write_text(SOURCE)
    return path


@pytest.mark.parametrize("name, params, examples", [
    ("bound", None, None),                       # a function with inputs: not called at resolve time
    ("bound_partial", None, None),               # partial: its bound arguments are lifted by the loader
    ("with_params", {"w": 1}, None),
    ("with_params_and_examples", {"w": 1}, ("x0",)),
    ("with_examples_only", None, ("x0",)),       # fn takes one input: the second item cannot be params
    ("closure_factory", None, None),
    ("as_dict", {"w": 1}, ("x0",)),
])
def test_function_entries(entry_file, name, params, examples):
    entry, kind = resolve(f"{entry_file}:{name}")
    assert kind == "jax"  # plain functions are read as JAX
    assert entry.extra.get("params") == params
    assert entry.example_inputs == examples


def test_other_objects_are_still_refused(entry_file):
    from modelport.errors import BadInput

    with pytest.raises(BadInput, match="gave a int"):
        resolve(f"{entry_file}:not_a_model")
