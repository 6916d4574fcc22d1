"""modelport: convert models between frameworks through ONNX, and prove each result on its runtime.

The API lives in `modelport.api`; names are re-exported lazily so `import modelport` stays light.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__

_API = {"convert", "validate", "bench", "check", "inspect", "explain", "ConvertOptions", "ValidateOptions",
        "BenchOptions", "ConvertResult", "TargetResult", "Status"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
