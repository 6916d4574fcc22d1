"""LiteRT (the toolchain's own ai-edge-litert) as a runner server: the JSON-lines protocol of
modelport/toolchains/runner.py. Standalone: imports nothing from modelport.
Run inside the toolchain: `python -I serve_litert.py`, requests on stdin, answers on stdout."""

import json
import os
import sys
import time
import traceback


def main() -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the runtime prints goes to the log, never into the answers
    state: dict = {}
    for line in sys.stdin:
        try:
            answer = handle(json.loads(line), state)
        except Exception as exc:  # noqa: BLE001 - every failure is an answer
            traceback.print_exc()
            answer = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).strip()[:400]}"}
        answers.write(json.dumps(answer) + "\n")


def handle(request: dict, state: dict) -> dict:
    import numpy as np

    command = request["cmd"]
    if command == "load":
        from ai_edge_litert import __version__ as version
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=request["path"], num_threads=request.get("threads") or None)
        interpreter.allocate_tensors()
        runner = interpreter.get_signature_runner()
        details = runner.get_input_details(), runner.get_output_details()
        state.update(interpreter=interpreter, runner=runner)

        def specs(found: dict) -> list:
            return [{"name": name, "shape": [int(d) for d in info["shape_signature"]],
                     "dtype": np.dtype(info["dtype"]).name} for name, info in found.items()]

        return {"ok": True, "inputs": specs(details[0]), "outputs": specs(details[1]),
                "runtime": f"litert {version} (toolchain)"}
    runner = state["runner"]
    with np.load(request["inputs"], allow_pickle=False) as given:
        feeds = {name: given[name] for name in given.files}
    if command == "run":
        np.savez(request["outputs"], **runner(**feeds))
        return {"ok": True}
    if command == "time":
        for _ in range(int(request.get("warmup", 0))):
            runner(**feeds)
        seconds = []
        for _ in range(int(request["runs"])):
            start = time.perf_counter()
            runner(**feeds)
            seconds.append(time.perf_counter() - start)
        return {"ok": True, "seconds": seconds}
    return {"ok": False, "error": f"unknown command {command!r}"}


if __name__ == "__main__":
    main()
