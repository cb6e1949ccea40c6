"""Where the steps of a run execute: in the CLI's process, one process per step, or on a Dask cluster.

Three executors, all Dagster's own:

- ``in_process``: :meth:`dagster.JobDefinition.execute_in_process`, one shard after another (``--workers 1``);
- ``multiprocess``: Dagster's multiprocess executor (``multi_or_in_process_executor`` in its
  ``multiprocess`` mode): each step of a run in a child process, the runs of several shards at once;
- ``dask``: ``dagster_dask.dask_executor``: each step a Dask task on a cluster (a ``LocalCluster`` started
  here, or an existing scheduler such as a dask-jobqueue SLURM cluster), the runs of several shards at once.

The last two need a reconstructable job (a pointer a child process or a Dask worker can import):
:func:`reconstructable_job` points at :mod:`dagster_project.definitions` or, for Dask, at
:mod:`dagster_project.dask_definitions` (the same assets and jobs with the Dask executor).

Cores are split, not multiplied: with ``W`` shards at once every step gets ``cores // W`` of them
(:func:`cores_per_shard`): the morphometrics process pool, the BLAS/OpenMP threads and torch's intra-op
threads of a step. The unpartitioned run of such a command runs its independent steps side by side
instead (Dagster's multiprocess executor, at most ``W`` steps at once, each with the same share), so the
cores stay busy after the shards too.

The CLI's default is :func:`auto_workers`: as many shards at once as the machine has cores, never more
than there are shards (one shard: in process, with every core, as before).
"""

from __future__ import annotations

import importlib
import os
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from features.errors import InputError

__all__ = [
    "EXECUTORS",
    "GPU_ASSETS",
    "Execution",
    "auto_workers",
    "check_workers",
    "cores",
    "cores_per_shard",
    "dask_cluster",
    "execution_run_config",
    "job_of",
    "reconstructable_job",
    "split_cores_config",
    "step_threads",
]

EXECUTORS = ("in_process", "multiprocess", "dask")
"""The ``--executor`` choices."""

GPU_ASSETS = ("embeddings", "ssl_encoder", "cnn", "efficientnet_b0", "dinov2_probe", "dinov2_finetune", "unet",
              "predictions", "masks")
"""Assets whose step runs a neural network (torch): the ones to send to a GPU worker on a cluster
(``docs/scale_out.md``). Everything else (ingest, morphometrics, photometry, SQL, maps) is CPU work."""

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Execution:
    """How :func:`dagster_project.runner.run_pipeline` executes the shard runs.

    Attributes
    ----------
    executor : str
        One of :data:`EXECUTORS`.
    workers : int or None
        Shard runs in flight at once (and the Dask ``LocalCluster``'s worker processes); None: chosen by
        :meth:`resolved` from the shards and the cores (:func:`auto_workers`).
    dask_address : str or None
        An existing Dask scheduler (``tcp://host:8786``); None starts a ``LocalCluster`` of ``workers``
        single-threaded worker processes for the command's duration.
    """

    executor: str = "in_process"
    workers: int | None = 1
    dask_address: str | None = None

    def __post_init__(self) -> None:
        if self.workers is not None:
            check_workers(self.workers)
        if self.executor not in EXECUTORS:
            raise InputError(f"--executor must be one of {list(EXECUTORS)}; got {self.executor!r}")
        if self.dask_address and self.executor != "dask":
            raise InputError(f"--dask-address needs --executor dask (got --executor {self.executor})")

    @classmethod
    def of(cls, workers: int | None = 1, executor: str | None = None, dask_address: str | None = None) -> Execution:
        """The CLI's choice: ``--executor`` defaults to ``dask`` with a scheduler address, else ``in_process``;
        ``workers`` None is chosen per command (:meth:`resolved`)."""
        if executor is None:
            executor = "dask" if dask_address else "in_process"
        return cls(executor=executor, workers=workers, dask_address=dask_address)

    def resolved(self, shards: int) -> Execution:
        """This execution with ``workers`` fixed: as given, or :func:`auto_workers` of ``shards``."""
        if self.workers is not None:
            return self
        return Execution(executor=self.executor, workers=auto_workers(shards), dask_address=self.dask_address)

    @property
    def in_process(self) -> bool:
        return self.executor == "in_process"


def check_workers(workers: object) -> int:
    """``--workers`` must be a positive integer; one-line :class:`InputError` otherwise."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"--workers must be a positive integer (at least 1); got {workers!r}")
    return workers


def auto_workers(shards: int) -> int:
    """The default ``--workers``: one shard run per core, at most one per shard (at least 1).

    One shard keeps the whole machine in this process (its steps use every core); with more, shards run
    side by side, each step with its share of the cores, which keeps the cores busier than one shard
    whose steps each try to use them all (image decoding, small torch models, Python between them).
    """
    return max(1, min(cores(), int(shards)))


def cores() -> int:
    """The cores this process may use (its CPU affinity on Linux)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return max(os.cpu_count() or 1, 1)


def cores_per_shard(workers: int) -> int:
    """Cores for each of ``workers`` shards running at once: ``cores() // workers``, at least 1."""
    return max(1, cores() // max(1, workers))


def execution_run_config(execution: Execution, address: str | None = None,
                         max_concurrent: int = 1) -> dict[str, Any]:
    """The ``execution`` section of a shard run's config for ``execution`` (empty for in-process runs).

    ``max_concurrent`` 1: the steps of one shard follow each other, so ``workers`` bounds the steps in
    flight over all shards (each with :func:`cores_per_shard` cores). The unpartitioned run, alone in
    its phase, passes ``workers``: its independent steps side by side.
    """
    if execution.executor == "multiprocess":
        return {"execution": {"config": {"multiprocess": {"max_concurrent": int(max_concurrent)}}}}
    if execution.executor == "dask":
        return {"execution": {"config": {"cluster": {"existing": {"address": address or execution.dask_address}}}}}
    return {}


def split_cores_config(run_config: Mapping[str, Any], workers: int, selected: set[str]) -> dict[str, Any]:
    """``run_config`` with the morphometrics pool sized to :func:`cores_per_shard` unless it was set."""
    config = dict(run_config)
    if workers > 1 and "morphometrics" in selected:
        ops = dict(config.get("ops", {}))
        morph = dict(ops.get("morphometrics", {}))
        morph_config = dict(morph.get("config", {}))
        morph_config.setdefault("workers", cores_per_shard(workers))
        ops["morphometrics"] = {**morph, "config": morph_config}
        config["ops"] = ops
    return config


@contextmanager
def step_threads(workers: int) -> Iterator[None]:
    """Limit BLAS/OpenMP threads of the step processes started inside (torch, numpy) to
    :func:`cores_per_shard`, unless the user set them; restores the environment after."""
    n = str(cores_per_shard(workers))
    added = [v for v in _THREAD_VARS if v not in os.environ]
    for var in added:
        os.environ[var] = n
    try:
        yield
    finally:
        for var in added:
            os.environ.pop(var, None)


def job_of(module: str, job_name: str):
    """The job ``job_name`` of ``<module>.defs``: what a step process or a Dask worker imports again."""
    return importlib.import_module(module).defs.resolve_job_def(job_name)


def reconstructable_job(executor: str, job_name: str):
    """A reconstructable ``job_name`` (:func:`dagster.build_reconstructable_job` of :func:`job_of`) that
    step processes and Dask workers import again: from :mod:`dagster_project.definitions`, or for Dask
    from :mod:`dagster_project.dask_definitions`."""
    import dagster as dg

    module = "dagster_project.dask_definitions" if executor == "dask" else "dagster_project.definitions"
    return dg.build_reconstructable_job(__name__, "job_of", reconstructable_args=(module, job_name),
                                        reconstructor_working_directory=os.getcwd())


@contextmanager
def dask_cluster(execution: Execution) -> Iterator[str | None]:
    """The Dask scheduler address for ``execution``: the given one, or a ``LocalCluster`` of
    ``workers`` single-threaded worker processes started here and closed on exit. None when not Dask."""
    if execution.executor != "dask":
        yield None
        return
    if execution.dask_address:
        yield execution.dask_address
        return
    try:
        import dask
        from dask.distributed import LocalCluster
    except ImportError:
        raise InputError("--executor dask needs the optional dependency: pip install 'astrovision[dask]'") from None
    # Steps start process pools of their own (morphometrics, the demo's renderer): Dask's default
    # daemonic worker processes may not have children. The workers start with the default SIGTERM: a CLI
    # started from a background shell has it ignored, the workers would inherit that, and so would the
    # `tail` processes of Dagster's log capture, which then outlive their SIGTERM and cost 30 s a step.
    inherited = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with dask.config.set({"distributed.worker.daemon": False}):
            cluster = LocalCluster(n_workers=execution.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
    finally:
        signal.signal(signal.SIGTERM, inherited)
    with cluster:
        yield cluster.scheduler_address
