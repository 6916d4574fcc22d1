"""Where `check` runs its models: N model workers on this machine, or Ray tasks on a cluster.

Each model is converted by `pipeline.convert` inside a model worker (`worker.py`): its crash,
hang (`timeout`) or memory blow-up ends that worker only, and comes back as that model's error.
Workers are reused model after model, so heavy frameworks are imported once per worker. Results
come back as they finish; the caller puts them in the config's order.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import BackendMissing, BadInput, ModelportError, ModelProcessDied
from .options import ConvertOptions
from .results import ConvertResult
from .worker import Worker, default_worker

Outcome = ConvertResult | ModelportError


@dataclass(frozen=True)
class ModelJob:
    index: int            # the model's place in the config
    name: str
    source: str
    options: ConvertOptions


class ZooEvents(Protocol):
    """What a zoo run reports as it goes (the CLI draws it); `slot` is the worker's number."""

    def planned(self, total: int) -> None: ...

    def started(self, slot: int, job: ModelJob) -> None: ...

    def step(self, slot: int, event: str, message: str) -> None: ...

    def finished(self, slot: int, job: ModelJob, outcome: Outcome, cached: bool = False) -> None: ...


class Unwatched:
    """ZooEvents for a run nobody watches."""

    def planned(self, total: int) -> None:
        pass

    def started(self, slot: int, job: ModelJob) -> None:
        pass

    def step(self, slot: int, event: str, message: str) -> None:
        pass

    def finished(self, slot: int, job: ModelJob, outcome: Outcome, cached: bool = False) -> None:
        pass


@dataclass(frozen=True)
class Limits:
    """The run's limits (--max-memory, --timeout); where unset, each model's own (config keys)."""
    max_memory: int | None = None   # per model worker
    timeout: float | None = None    # per model
    verbose: bool = False


RunModels = Callable[[list[ModelJob], ZooEvents, Callable[[ModelJob, Outcome], None]], None]
_CONVERT = "modelport.pipeline:convert"


def _convert_in(worker: Worker, job: ModelJob, limits: Limits, progress: Any = None) -> Outcome:
    try:
        max_memory = limits.max_memory if limits.max_memory is not None else job.options.max_memory
        timeout = limits.timeout if limits.timeout is not None else job.options.timeout
        result: ConvertResult = worker.call(_CONVERT, job.source, job.options, progress=progress,
                                            max_memory=max_memory, verbose=limits.verbose or job.options.verbose,
                                            timeout=timeout)
        return result
    except ModelportError as exc:
        return exc


def run_local(jobs: list[ModelJob], events: ZooEvents, done: Callable[[ModelJob, Outcome], None],
              workers: int = 1, limits: Limits = Limits()) -> None:
    """Run `jobs` on `workers` model workers (threads here, each driving one child process);
    `done(job, outcome)` is called as each finishes, from the thread that ran it."""
    own_pool = workers > 1  # else the process's own worker: a serial check shares it with the other API calls
    pool = [Worker() for _ in range(min(workers, len(jobs)))] if own_pool else [default_worker()]
    todo: queue.Queue[ModelJob] = queue.Queue()
    for job in jobs:
        todo.put(job)
    failures: list[BaseException] = []
    stopping = threading.Event()  # set on Ctrl-C: a model cut short then is not a result

    def serve(slot: int, worker: Worker) -> None:
        while True:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            events.started(slot, job)
            try:
                outcome = _convert_in(worker, job, limits, lambda e, m: events.step(slot, e, m))
                if stopping.is_set():
                    return
                done(job, outcome)
                events.finished(slot, job, outcome)
            except BaseException as exc:  # noqa: BLE001 - (an interrupt, or our bug): stop this thread, tell main
                failures.append(exc)
                return

    threads = [threading.Thread(target=serve, args=(slot, worker), daemon=True, name=f"modelport-job-{slot}")
               for slot, worker in enumerate(pool)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # (short waits: Ctrl-C reaches this thread between them)
    except BaseException:
        stopping.set()
        while not todo.empty():  # nothing new starts; the running models are told to stop
            todo.get_nowait()
        for worker in pool:
            worker.interrupt()
        for thread in threads:
            thread.join(90)
        raise
    finally:
        if own_pool:
            for worker in pool:
                worker.close()
    real = [f for f in failures if not isinstance(f, ModelportError)]
    if real:
        raise real[0]


def _ray_task(job: ModelJob, limits: Limits) -> Outcome:
    """One model as a Ray task: in a model worker of this Ray worker process (kept for the next
    task), so a crash or hang still ends as this model's error. A model's error is the task's
    (as Ray users expect of a failed task); the driver turns it back into that model's row."""
    outcome = _convert_in(default_worker(), job, limits)
    if isinstance(outcome, ModelportError):
        raise outcome
    return outcome


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BackendMissing("`--executor ray` needs Ray, which is not installed.",
                             "pip install 'modelport[ray]' (with -c constraints.txt), or use --jobs N.") from None
    return ray


def run_ray(jobs: list[ModelJob], events: ZooEvents, done: Callable[[ModelJob, Outcome], None],
            address: str | None = None, cpus_per_model: float = 1.0, workers: int | None = None,
            limits: Limits = Limits()) -> None:
    """Run `jobs` as Ray tasks: on the cluster at `address`, or on a Ray started here on loopback
    with `workers` CPUs (and stopped after). A task that raises, or whose Ray worker dies, is that
    model's error; the others complete."""
    if address:
        _check_reachable(address)
    # (a local Ray's environment is in place before Ray is imported: it reads some of it then)
    with (contextlib.nullcontext() if address else _local_ray_environment()):
        ray = _ray()
        started_here = not ray.is_initialized()
        if started_here:
            try:
                if address:
                    ray.init(address=address, log_to_driver=limits.verbose, configure_logging=False)
                else:
                    ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                             log_to_driver=limits.verbose, configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"the Ray cluster at {address}" if address else "a local Ray"
                raise BadInput(f"Could not start or reach {where}: {exc}",
                               "Check --address (host:port of the head's GCS, or ray://host:10001) and that the "
                               "cluster runs the same Ray and Python versions as here.") from None
    try:
        task = ray.remote(num_cpus=cpus_per_model, max_retries=0)(_ray_task)
        # (which Ray worker runs which task is Ray's to decide: progress counts finished models)
        pending = {task.remote(job, limits): job for job in jobs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                job = pending.pop(ref)
                outcome = _ray_outcome(ray, ref)
                done(job, outcome)
                events.finished(-1, job, outcome)
    finally:
        if started_here:
            ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail fast on an address nothing answers at: Ray itself retries for minutes."""
    import socket

    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise BadInput(f"--address '{address}' is not host:port.",
                       "Give the head node's GCS address (host:6379) or its Ray Client address (ray://host:10001).")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise BadInput(f"Nothing answers at the Ray address {address}: {exc.strerror or exc}.",
                       "Start the cluster's head (`ray start --head`) and check the host and port.") from None


@contextlib.contextmanager
def _local_ray_environment() -> Iterator[None]:
    """The environment a local Ray starts its processes with (they inherit it):
    - on loopback only: Ray binds its services (unauthenticated) to the machine's address
      otherwise, where anyone on the network could submit work;
    - no usage report, and its cloud-metadata probe (made even with reports off: the dashboard
      process asks 169.254.169.254 and metadata.google.internal which cloud it is on) is sent to a
      closed local port instead of the network."""
    from ._lazy import restore_entries

    saved = {k: os.environ.get(k) for k in (*_RAY_ENV, "NO_PROXY", "no_proxy")}
    os.environ.pop("NO_PROXY", None)
    os.environ.pop("no_proxy", None)
    os.environ.update(_RAY_ENV)
    try:
        yield
    finally:
        restore_entries(os.environ, saved)


_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
            "HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}


def _ray_outcome(ray: Any, ref: Any) -> Outcome:
    try:
        result: Outcome = ray.get(ref)
        return result
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, ModelportError):
            return cause
        return ModelProcessDied(f"The Ray task running the model raised {type(cause).__name__}: {cause}.",
                                "Run the model alone with `modelport convert --verbose` to see the trace.")
    except ray.exceptions.RayError as exc:  # the Ray worker (or its node) died under the task
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ModelProcessDied(f"The Ray worker running the model died: {message}",
                                "Check the node's memory and the Ray logs (/tmp/ray/session_latest/logs).")
