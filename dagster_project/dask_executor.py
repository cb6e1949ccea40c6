"""``dagster_dask``'s executor with two fixes needed to run several shard runs on one Dask cluster.

The executor of ``dagster-dask`` 0.29.27 (the release beside dagster 1.13) has two defects this project
meets, both upstream issues:

- a Dask task is named ``<job>.<step>``, so concurrent runs of one job on one cluster share task
  keys and Dask runs only the first run's step, reporting the others done without running them
  (dagster-io/dagster#21418); here the run id is part of the key;
- the run (a ``DagsterRun``) is passed to ``Client.submit`` as a plain argument, and Dask's task spec
  (dask 2025+) walks every tuple it is given: Dagster's ``@record`` values (a partitioned run's
  partition subset) refuse iteration, so every partitioned run failed before its first step
  ("Iteration is not allowed on `@record`"). Here the arguments travel in an opaque box, and the box
  has a Dask ``sizeof`` (dagster-io/dagster#33771's warnings, same cause).

Everything else - the cluster types and their configuration, resource requirements from the
``dagster-dask/resource_requirements`` tag, the worker function - is ``dagster_dask``'s own.
"""

from __future__ import annotations

import importlib
import signal
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import dask.distributed
from dagster import DagsterEvent, Executor, executor, multiple_process_executor_requirements
from dagster_dask.executor import DaskExecutor, get_dask_resource_requirements, query_on_dask_worker
from dagster_dask.executor import dask_executor as _upstream
from dask.sizeof import sizeof

__all__ = ["RunScopedDaskExecutor", "dask_executor"]

_CLUSTERS = {
    "local": ("dask.distributed", "LocalCluster"), "ssh": ("dask.distributed", "SSHCluster"),
    "yarn": ("dask_yarn", "YarnCluster"), "kube": ("dask_kubernetes", "KubeCluster"),
    **{kind: ("dask_jobqueue", f"{kind.upper() if kind != 'moab' else 'Moab'}Cluster")
       for kind in ("pbs", "moab", "sge", "lsf", "slurm", "oar")},
}
"""``cluster`` config key -> the class dagster_dask builds (module, name)."""


class _Box:
    """An opaque value for ``Client.submit``: Dask neither walks nor sizes what it holds."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __getstate__(self) -> tuple[Any]:
        return (self.value,)

    def __setstate__(self, state: tuple[Any]) -> None:
        (self.value,) = state


@sizeof.register(_Box)
def _sizeof_box(box: _Box) -> int:
    return 64 * 1024


_T = TypeVar("_T")


def _interruptible(items: Iterable[_T]) -> Iterator[_T]:
    """``items``, with Ctrl-C raising :class:`KeyboardInterrupt` while waiting for the next one.

    Dagster defers SIGINT during a run and lets executors take it while they wait (its private
    ``iterate_with_context(raise_execution_interrupts, ...)``, which dagster_dask uses); the run's
    interrupt handling catches :class:`KeyboardInterrupt` alike. Only the main thread may set handlers.
    """
    iterator = iter(items)
    while True:
        if threading.current_thread() is not threading.main_thread():
            previous = None
        else:
            previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            item = next(iterator)
        except StopIteration:
            return
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        yield item


def _run_step(dependencies: list, args: _Box) -> _Box:
    """On a Dask worker: ``dagster_dask``'s worker function on the unboxed arguments; events boxed."""
    return _Box(list(query_on_dask_worker(dependencies, *args.value)))


class RunScopedDaskExecutor(DaskExecutor):
    """:class:`dagster_dask.executor.DaskExecutor` whose tasks are named by run and step, arguments boxed."""

    def _cluster(self, job_name: str) -> Any:
        if self.cluster_type == "existing":
            return self.cluster_configuration["address"]
        module, name = _CLUSTERS[self.cluster_type]
        return getattr(importlib.import_module(module), name)(**self.build_dict(job_name))

    def execute(self, plan_context, execution_plan) -> Iterator[DagsterEvent]:  # type: ignore[override]
        if not plan_context.instance.is_persistent:
            raise ValueError("Dask execution requires a persistent DagsterInstance")
        run = plan_context.dagster_run
        with dask.distributed.Client(self._cluster(plan_context.job_name)) as client:
            futures: dict[str, Any] = {}
            for level in execution_plan.get_steps_to_execute_by_level():
                for step in level:
                    deps = [futures[key] for step_input in step.step_inputs for key in step_input.dependency_keys]
                    args = _Box((plan_context.reconstructable_job, run, plan_context.run_config, [step.key],
                                 plan_context.instance.get_ref(), execution_plan.known_state))
                    futures[step.key] = client.submit(
                        _run_step, deps, args, key=f"{plan_context.job_name}.{step.key}.{run.run_id}",
                        resources=get_dask_resource_requirements(step.tags), pure=False)
            done = dask.distributed.as_completed(list(futures.values()), with_results=True)
            for _, box in _interruptible(done):
                yield from box.value


@executor(name="dask", requirements=multiple_process_executor_requirements(),
          config_schema=_upstream.config_schema)
def dask_executor(init_context) -> Executor:
    """``dagster_dask.dask_executor`` (same configuration) running :class:`RunScopedDaskExecutor`."""
    ((cluster_type, cluster_configuration),) = init_context.executor_config["cluster"].items()
    return RunScopedDaskExecutor(cluster_type, cluster_configuration)
