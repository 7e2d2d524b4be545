"""Where self-contained work units run: in this process, a local process pool, or a Ray cluster.

An *executor* runs a picklable function on picklable work units and hands the results back as they
finish. Protocol:

* ``name``, ``workers`` (units that run at once);
* ``map_unordered(fn, units, timeout=None) -> iterator of (index, result)``: ``fn(units[i])`` for every
  unit, yielded in completion order; ``timeout`` (seconds) bounds the whole map: past it the units still
  running are cancelled and :class:`ExecutorTimeout` is raised. Ctrl-C (KeyboardInterrupt) while waiting
  cancels what is pending or running and goes on up;
* ``close()``: cancel what is left and release the workers.

:data:`EXECUTORS` maps ``--executor`` names to classes: ``local`` (this process for one worker, else a
pool of ``spawn``-ed processes) and ``ray`` (``ray`` starts or joins a local Ray instance with ``workers``
CPUs; ``ray://HOST:PORT`` connects to a running cluster, whose nodes need exactcomp installed). Units carry
everything they need (no shared memory), and whatever they prove is re-checked by the caller: a faulty
worker can waste time, not make a result unsound.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from exactcomp.errors import ExactcompError
from exactcomp.registry import Registry


class ExecutorTimeout(Exception):
    """A map ran past its ``timeout``; its running units were cancelled."""


def _single_thread_worker():
    """Each worker process uses one core (torch and the solvers' own threads)."""
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def _completions(handles: dict, next_done, cancel, timeout):
    """``(index, result)`` as the submitted ``handles`` (handle -> unit index) finish: ``next_done(pending,
    seconds_left)`` waits for some and returns ``([(handle, result)], still_pending)``; past ``timeout``
    :class:`ExecutorTimeout`; on any exit before the end (time-out, Ctrl-C, the caller closing the
    generator) ``cancel()`` stops what still runs."""
    end = None if timeout is None else time.monotonic() + timeout
    try:
        pending = set(handles)
        while pending:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                raise ExecutorTimeout
            done, pending = next_done(pending, left)
            for handle, result in done:
                yield handles[handle], result
    except BaseException:
        cancel()
        raise


class InProcess:
    """Runs the units one after the other in this process (``--workers 1``)."""

    name = "local"
    workers = 1

    def map_unordered(self, fn, units, timeout=None):
        end = None if timeout is None else time.monotonic() + timeout
        for i, unit in enumerate(units):
            if end is not None and time.monotonic() > end:
                raise ExecutorTimeout
            yield i, fn(unit)

    def close(self):
        pass


class LocalPool:
    """A pool of ``workers`` processes started with ``spawn`` (one core each)."""

    name = "local"

    def __init__(self, workers: int):
        import multiprocessing

        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_single_thread_worker)

    def map_unordered(self, fn, units, timeout=None):
        futures = {self.pool.submit(fn, unit): i for i, unit in enumerate(units)}

        def next_done(pending, left):
            done, rest = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
            return [(f, f.result()) for f in done], rest

        def cancel():
            for future in futures:
                future.cancel()
            self._stop_running()

        return _completions(futures, next_done, cancel, timeout)

    def _stop_running(self):
        """A process pool cannot cancel a running call: end its processes (a fresh pool replaces it)."""
        import multiprocessing

        _terminate(self.pool)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_single_thread_worker)

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


def _terminate(pool) -> None:
    """End a process pool's worker processes (running calls included)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


class RayExecutor:
    """Units as Ray tasks (one CPU each) on a local Ray instance or the cluster at ``address``."""

    name = "ray"

    def __init__(self, workers: int, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise ExactcompError("--executor ray needs the ray package: pip install 'exactcomp[ray]' "
                                 "(or pip install ray)") from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
                else:
                    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ...
                raise ExactcompError(f"--executor {address or 'ray'}: cannot start or reach Ray: "
                                     f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
            self.started = True
        self.workers = max(1, int(ray.cluster_resources().get("CPU", workers)))
        self._remote = {}

    def map_unordered(self, fn, units, timeout=None):
        ray = self.ray
        if fn not in self._remote:
            self._remote[fn] = ray.remote(num_cpus=1, max_retries=0)(fn)
        refs = {self._remote[fn].remote(unit): i for i, unit in enumerate(units)}

        def next_done(pending, left):
            done, rest = ray.wait(list(pending), num_returns=1, timeout=left)
            return [(r, ray.get(r)) for r in done], rest

        def cancel():
            for ref in refs:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - finished or already cancelled
                    pass

        return _completions(refs, next_done, cancel, timeout)

    def close(self):
        if self.started:
            self.ray.shutdown()


#: --executor name -> factory(workers, address).
def local_executor(workers: int, address=None):
    """This process for one worker, else a pool of worker processes."""
    return InProcess() if workers <= 1 else LocalPool(workers)


EXECUTORS = Registry("executor", {"local": local_executor, "ray": RayExecutor})


def get_executor(spec: str = "local", workers: int = 1):
    """The executor for ``spec``: ``local``, ``ray`` or ``ray://HOST:PORT`` (see module doc)."""
    if not isinstance(spec, str):
        return spec   # a user's own executor object
    name, address = ("ray", spec) if spec.startswith("ray://") else (spec, None)
    if name not in EXECUTORS:
        raise ExactcompError(f"unknown executor '{spec}'; choose {', '.join(EXECUTORS)} or ray://HOST:PORT")
    return EXECUTORS.load(name)(workers, address)
