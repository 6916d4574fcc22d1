"""JAX sources: a function from a Python entry point, its parameters bound (see sources/jax.py)."""

from __future__ import annotations

from .base import FormatSpec, Requirement, SourceSpec

FORMAT = FormatSpec(
    name="jax", description="JAX: file.py:name returning a function with its params bound, or (fn, params)",
    requirement=Requirement("jax", modules=("jax",)),
    source=SourceSpec(loader=None, framework="jax", entry_loader="modelport.sources.jax:load_entry",
                      entry_functions=True),
    packages=("jax", "jaxlib"),
)
