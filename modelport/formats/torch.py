"""PyTorch sources: torch.export `.pt2` archives, nn.Modules from entry points, and (only with
--trust-remote-code) pickled whole modules. TorchScript has its own module (it is also a target)."""

from __future__ import annotations

from .base import Detected, FormatSpec, Probe, Requirement, SourceSpec


def detect(probe: Probe) -> Detected | None:
    head = probe.head
    if probe.is_zip:
        tails = probe.zip_tails()
        if any(t.startswith("models/") or t == "archive_format" for t in tails) and any(
                "serialized_exported_program" in t or t.startswith("models/") for t in tails):
            return Detected("pt2", "torch", "zip with models/ (torch.export archive)")
        if "data.pkl" in tails:
            return Detected("torch-pickle", "torch", "zip with data.pkl (torch.save pickle)")
        return None
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return Detected("torch-pickle", "torch", f"pickle protocol {head[1]} stream (legacy torch.save)")
    return None


FORMAT = FormatSpec(
    name="torch", description="PyTorch: .pt2 (torch.export), pickled modules, or file.py:name returning an nn.Module",
    requirement=Requirement("torch", modules=("torch",)),
    kinds=("pt2", "torch-pickle", "torch"),
    detect="modelport.formats.torch:detect",
    source=SourceSpec(loader="modelport.sources.torch:load", framework="torch",
                      entry_loader="modelport.sources.torch:load_entry", entry_modules=("torch",)),
    packages=("torch",),
)
