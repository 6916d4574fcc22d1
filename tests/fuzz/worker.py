"""Fuzz worker: mutate one valid model (bytes, and zip members or protobuf fields where the
format has them) and feed each mutant to detection and `inspect`, in this process.

    python tests/fuzz/worker.py MODEL EXAMPLES

Only a result or a ModelportError with exit code 2 or 3 is acceptable; anything else (another
exception, a hang past the alarm) prints the mutant's path and exits 1. A crash of this process
(a native library dying) is seen by the test as a non-zero exit too. Run by tests/e2e/test_fuzz.py
in a child process, so a segfault in a framework cannot take the test run down."""

from __future__ import annotations

import io
import shutil
import signal
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelport import api, registry
from modelport.errors import ModelportError, ModelProcessDied

SECONDS_PER_EXAMPLE = 60


def _mutate_bytes(data: bytes, draw: st.DataObject) -> bytes:
    kind = draw.draw(st.sampled_from(["flip", "truncate", "insert", "splice_zeros", "huge_varint"]))
    if not data:
        return data
    at = draw.draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ draw.draw(st.integers(1, 255))]) + data[at + 1:]
    if kind == "truncate":
        return data[:at]
    if kind == "insert":
        return data[:at] + draw.draw(st.binary(min_size=1, max_size=16)) + data[at:]
    if kind == "splice_zeros":
        return data[:at] + b"\0" * draw.draw(st.integers(1, 64)) + data[at + 64:]
    return data[:at] + b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f" + data[at + 9:]  # a huge protobuf varint


def _mutate_zip(data: bytes, draw: st.DataObject) -> bytes:
    """Keep the archive valid, mutate one member's bytes (so the readers behind the zip are hit)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    names = source.namelist()
    victim = draw.draw(st.sampled_from(names))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in names:
            member = source.read(name)
            target.writestr(name, _mutate_bytes(member, draw) if name == victim else member)
    return out.getvalue()


def _mutate_onnx(data: bytes, draw: st.DataObject) -> bytes:
    """Structure-aware: valid protobuf, hostile contents (huge dims, unknown ops, dangling names)."""
    import onnx

    model = onnx.load_from_string(data)
    graph = model.graph
    choice = draw.draw(st.sampled_from(["dims", "op", "input", "drop_initializer", "opset"]))
    if choice == "dims" and graph.input:
        for dim in graph.input[0].type.tensor_type.shape.dim:
            dim.dim_value = draw.draw(st.sampled_from([0, 1, 2**31 - 1, 2**40]))
    elif choice == "op" and graph.node:
        graph.node[draw.draw(st.integers(0, len(graph.node) - 1))].op_type = draw.draw(
            st.sampled_from(["ConstantOfShape", "Loop", "NoSuchOp", "Resize", "Tile"]))
    elif choice == "input" and graph.node:
        graph.node[0].input[0] = draw.draw(st.text(min_size=1, max_size=8))
    elif choice == "drop_initializer" and graph.initializer:
        del graph.initializer[0]
    else:
        model.opset_import[0].version = draw.draw(st.sampled_from([1, 7, 99, 10**6]))
    return model.SerializeToString()


def _mutant_file(original: bytes, kind: str, data: st.DataObject) -> bytes:
    if original.startswith(b"PK\x03\x04") and data.draw(st.booleans()):
        return _mutate_zip(original, data)
    if kind == "onnx" and data.draw(st.booleans()):
        return _mutate_onnx(original, data)
    return _mutate_bytes(original, data)


def main(model: Path, examples: int) -> int:
    kind = registry.detect(model).format
    work = Path(tempfile.mkdtemp(prefix="modelport-fuzz-"))
    # A folder model (SavedModel, TF.js) is copied whole and one of its files mutated.
    members = sorted(p.relative_to(model) for p in model.rglob("*") if p.is_file()) if model.is_dir() else []
    original = b"" if model.is_dir() else model.read_bytes()
    target = work / (model.name if model.is_dir() else f"mutant{model.suffix}")

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"no answer within {SECONDS_PER_EXAMPLE} s")

    signal.signal(signal.SIGALRM, on_alarm)

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one(data: st.DataObject) -> None:
        if members:
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(model, target)
            member = data.draw(st.sampled_from(members))
            (target / member).write_bytes(_mutate_bytes((model / member).read_bytes(), data))
        else:
            target.write_bytes(_mutant_file(original, kind, data))
        signal.alarm(SECONDS_PER_EXAMPLE)
        try:
            registry.detect(target)
            api.inspect(str(target), api.ModelOptions())
        except ModelportError as exc:
            # A model worker that died is a crash, however cleanly the command reports it.
            assert not isinstance(exc, ModelProcessDied), exc.one_line()
            assert exc.exit_code in (2, 3), f"exit {exc.exit_code}: {exc.one_line()}"
        finally:
            signal.alarm(0)

    try:
        one()
    except Exception:
        kept = work / f"failing{'' if model.is_dir() else model.suffix}"
        target.replace(kept)
        traceback.print_exc()
        print(f"FAILING INPUT: {kept}", file=sys.stderr)
        return 1
    print(f"{examples} mutants of {model.name} ({kind}): no hang, no crash, only exit 0, 2 or 3")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2])))
