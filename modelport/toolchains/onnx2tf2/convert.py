"""ONNX -> TFLite with onnx2tf 2.x's TensorFlow-free `flatbuffer_direct` backend. Runs inside the
onnx2tf2 toolchain (see docs/toolchains.md): `python -I convert.py request.json result.json`.

request: {"model": the ONNX file (a copy: onnx2tf rewrites its input), "output_dir": a folder for
onnx2tf's files, "keep_nchw": [input names], "keep_nhwc": [input names], "seed": int}
result: {"ok": true, "tflite": the float32 .tflite, "onnx2tf": version} or {"ok": false, "error"}
"""

import contextlib
import inspect
import io
import json
import re
import sys
import traceback
from pathlib import Path


def main(request_path: str, result_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    result: dict = {"ok": False}
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            result = convert(request)
    except BaseException as exc:  # onnx2tf calls sys.exit on some failures
        if isinstance(exc, KeyboardInterrupt):
            raise
        traceback.print_exc()
        # onnx2tf says why in its own "ERROR:" lines, then exits 1: quote the last one
        said = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in printed.getvalue().splitlines() if "ERROR" in ln]
        message = said[-1] if said else f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        result = {"ok": False, "error": f"onnx2tf 2.x failed: {message.removeprefix('ERROR:').strip()[:400]}",
                  "hint": "Run with --verbose for onnx2tf's log."}
    finally:
        sys.stdout.write(printed.getvalue())
    Path(result_path).write_text(json.dumps(result))


def _onnxsim_in_fork(*, input_onnx_file_path: str, append_param: list) -> str:
    """onnx2tf's `_run_onnxsim_inplace_safely`, with the `onnxsim` command's own `main()` run in a
    fork of this process instead of a new Python: onnx2tf runs onnxsim three times per model and
    each new interpreter spent ~0.7 s importing onnx and onnxsim. Same arguments, same staging
    file and atomic replace, and a crash or failure still only fails that onnxsim step (onnx2tf
    then warns and goes on, as with the command)."""
    import os
    import subprocess
    import tempfile

    source = os.path.abspath(input_onnx_file_path)
    handle, staging = tempfile.mkstemp(prefix=f".{os.path.basename(source)}.onnxsim_", suffix=".onnx",
                                       dir=os.path.dirname(source))
    os.close(handle)
    os.unlink(staging)
    command = ["onnxsim", source, staging, *append_param]
    with tempfile.TemporaryFile() as printed:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: the onnxsim command, in-process
            code = 1
            try:
                os.dup2(printed.fileno(), 1)
                os.dup2(printed.fileno(), 2)
                from onnxsim import main as onnxsim_main

                sys.argv = command
                try:
                    code = onnxsim_main() or 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - any failure is this step's exit status
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        printed.seek(0)
        output = printed.read()
    code = os.waitstatus_to_exitcode(status)
    try:
        if code != 0 or not os.path.exists(staging):
            raise subprocess.CalledProcessError(code or 1, command, output=output)
        os.replace(staging, source)
        return output.decode("utf-8", "replace")
    finally:
        if os.path.exists(staging):
            os.unlink(staging)


def convert(request: dict) -> dict:
    import numpy as np
    import onnx2tf
    from onnx2tf import onnx2tf as impl

    if hasattr(impl, "_run_onnxsim_inplace_safely"):
        import onnxsim  # noqa: F401 - imported once here, so each forked onnxsim starts warm

        impl._run_onnxsim_inplace_safely = _onnxsim_in_fork

    rng = np.random.default_rng(request.get("seed", 0))
    if hasattr(impl, "download_test_image_data"):
        # onnx2tf downloads sample images for 3-channel inputs; seeded data stands in (no network).
        impl.download_test_image_data = lambda: rng.uniform(0.0, 1.0, (20, 128, 128, 3)).astype(np.float32)
    out = Path(request["output_dir"])
    wanted = {
        "input_onnx_file_path": request["model"],
        "output_folder_path": str(out),
        "tflite_backend": "flatbuffer_direct",
        "non_verbose": True,
        "copy_onnx_input_output_names_to_tflite": True,
        "output_signaturedefs": True,
        "keep_ncw_or_nchw_or_ncdhw_input_names": request.get("keep_nchw") or None,
        "keep_nwc_or_nhwc_or_ndhwc_input_names": request.get("keep_nhwc") or None,
    }
    accepted = inspect.signature(impl.convert).parameters  # onnx2tf.convert is a *args wrapper
    impl.convert(**{k: v for k, v in wanted.items() if k in accepted})
    found = sorted(out.glob("*_float32.tflite"))
    if not found:
        return {"ok": False, "error": "onnx2tf 2.x wrote no float32 .tflite",
                "hint": "Run with --verbose for onnx2tf's log."}
    return {"ok": True, "tflite": str(found[0]), "onnx2tf": getattr(onnx2tf, "__version__", "?")}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
