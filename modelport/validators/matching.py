"""Pair a reference's inputs and outputs with a candidate's: by the candidate's recorded I/O
mapping (a modelport sidecar), else by name, else by an explicit --map, else by position.
A shape that differs and is not a known permutation is an error, never a guess."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifact import TensorLink, sidecar_path
from ..errors import BadInput
from ..spec import Dim, TensorSpec


@dataclass(frozen=True)
class MapEntry:
    reference: str
    candidate: str
    perm: tuple[int, ...] | None = None


def parse_map(text: str) -> MapEntry:
    """`ref=cand` or `ref=cand:0,2,3,1` (candidate = reference.transpose(perm))."""
    match = re.fullmatch(r"([^=]+)=([^=]+?)(?::(\d+(?:,\d+)*))?", text)
    if not match:
        raise BadInput(f"Malformed --map '{text}': expected REF=CAND[:PERM].", "Example: --map image=input_1:0,2,3,1")
    perm = tuple(int(p) for p in match.group(3).split(",")) if match.group(3) else None
    if perm is not None and sorted(perm) != list(range(len(perm))):
        raise BadInput(f"Malformed --map '{text}': {match.group(3)} is not a permutation.", "Example: 0,2,3,1")
    return MapEntry(match.group(1), match.group(2), perm)


def read_sidecar(candidate: Path) -> dict[str, Any] | None:
    sidecar = sidecar_path(candidate)
    if not sidecar.is_file():
        return None
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if data.get("schema") == "modelport.artifact/1" else None


def _clean(name: str) -> str:
    name = name.split(":")[0]
    return re.sub(r"^serving_default_", "", name)


def _fits(shape_a: tuple[Dim, ...] | None, shape_b: tuple[Dim, ...] | None) -> bool:
    if shape_a is None or shape_b is None:
        return True
    if len(shape_a) != len(shape_b):
        return False
    return all(not isinstance(a, int) or not isinstance(b, int) or a == b for a, b in zip(shape_a, shape_b))


def _sidecar_links(sidecar: dict, side: str) -> dict[str, TensorLink]:
    links = {}
    for entry in sidecar.get("io", {}).get(side, []):
        links[entry["source"]] = TensorLink(entry["name"], entry["source"],
                                            tuple(entry["perm"]) if entry.get("perm") else None,
                                            entry.get("scale"), entry.get("zero_point") or 0,
                                            bool(entry.get("scalar")))
    return links


def link_tensors(reference: list[TensorSpec], candidate: list[TensorSpec], maps: list[MapEntry],
                 sidecar: dict | None, side: str) -> tuple[TensorLink, ...]:
    """One link per reference tensor; `side` is "inputs" or "outputs" (for messages)."""
    by_name = {c.name: c for c in candidate}
    by_clean = {_clean(c.name): c for c in candidate}
    recorded = _sidecar_links(sidecar, side) if sidecar else {}
    if recorded and not all(r.name in recorded for r in reference):
        recorded = {}  # the sidecar describes another reference: do not use half of it
    explicit = {m.reference: m for m in maps}
    links = []
    for index, ref in enumerate(reference):
        if ref.name in recorded:
            link = recorded[ref.name]
            cand = by_name.get(link.name)
            how = "the candidate's recorded mapping"
        elif ref.name in explicit:
            entry = explicit[ref.name]
            cand = by_name.get(entry.candidate) or by_clean.get(_clean(entry.candidate))
            if cand is None:
                raise BadInput(f"--map names candidate {side[:-1]} '{entry.candidate}', which does not exist.",
                               f"Candidate {side}: {', '.join(by_name)}.")
            link = TensorLink(cand.name, ref.name, entry.perm)
            how = "--map"
        else:
            cand = by_name.get(ref.name) or by_clean.get(_clean(ref.name))
            if cand is None and index < len(candidate) and len(candidate) == len(reference):
                cand = candidate[index]
            if cand is None:
                raise BadInput(f"The candidate has no {side[:-1]} matching the reference's '{ref.name}' "
                               f"(candidate {side}: {', '.join(by_name)}).",
                               f"Pair them with --map {ref.name}=CANDIDATE_NAME.")
            link = TensorLink(cand.name, ref.name)
            how = "name" if cand.name == ref.name or _clean(cand.name) == ref.name else "position"
        if cand is None:
            raise BadInput(f"The candidate's recorded mapping names '{link.name}', which it does not have.",
                           "The sidecar file does not belong to this model; delete it or pass --map.")
        expected = tuple(ref.shape[i] for i in link.perm) if link.perm and ref.shape else ref.shape
        if link.scalar and ref.shape == ():
            expected = (1,)
        if not _fits(expected, cand.shape):
            same_rank = expected is not None and cand.shape is not None and len(expected) == len(cand.shape)
            hint = (f"If the candidate is a transposed layout, pass --map {ref.name}={cand.name}:PERM "
                    f"(e.g. 0,2,3,1 for NCHW -> NHWC)." if same_rank else
                    "The ranks differ: these are not the same tensor; pair the right ones with --map REF=CAND.")
            raise BadInput(f"Shape mismatch for {side[:-1]} '{ref.name}': reference {_fmt(ref.shape)}, candidate "
                           f"'{cand.name}' {_fmt(cand.shape)} (paired by {how}).", hint)
        links.append(link)
    return tuple(links)


def _fmt(shape: tuple[Dim, ...] | None) -> str:
    return "?" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"
