"""The planner: expected wall time and storage of a catalogue on N workers, from costs measured here.

The model (``docs/benchmarks_scale.md`` checks it against measured 1- and 2-worker runs):

- a catalogue of ``N`` galaxies in shards of ``S`` is ``ceil(N / S)`` shard runs, the last one short;
- a shard of ``s`` galaxies takes ``s * sum(c_stage) / k + o`` seconds, where ``c_stage`` is the
  stage's measured core-seconds per galaxy, ``k`` the cores of one worker and ``o`` the measured
  start-up cost of one run with that executor (process start, loading the definitions, Dagster's
  bookkeeping, and what its steps measured beyond the in-process baseline, e.g. Dask's per-step pool): a stage is assumed to keep all the cores of its worker busy (the morphometrics pool
  and the image-encoding threads do; a worker has ``cores // W`` of a machine's cores);
- ``W`` workers take the shards in order, each the next one when it is free (what the runner does):
  the makespan of that list schedule;
- then the unpartitioned assets run once, serially: ``N * sum(u_stage) + o``;
- before the first run, a one-off start-up measured per executor (run processes spawned and the
  definitions imported in them, a Dask cluster started): ``t0``;
- storage is ``N * sum(b_table)``, the measured bytes per galaxy of each table the stages write.

The costs file (``stages/scale_costs.json``) is written by ``benchmarks/bench_scale.py``; its
``measured`` block says on what, when and under what load.

Every stage of the default job (:func:`project_stages`, the per-stage table of ``astrovision plan``):
the ``stage_costs`` block, fitted by ``benchmarks/rehearse_galaxy10.py --fit`` on rehearsals of the
README's ``ingest --source galaxy10 --all`` (one worker in process; its ``stage_costs_measured`` says
which runs). Each stage's wall and CPU seconds are ``fixed + N * per_galaxy + T * per_trained``:

- ``fixed`` is paid once per command (a pool's start, numba compiling the morphometrics kernels in a
  fresh tree, a model's load); every rehearsal ran in Galaxy10's shards of 1,000, so a per-shard start
  cost cannot be told apart from the per-galaxy one and is folded into ``per_galaxy``; the per-run start
  of other shard sizes is the first model's ``o`` above. ``runs`` (one per shard, ``ceil(N / S)``, for
  a per-shard stage, one for the others) is printed, not multiplied;
- ``N`` the galaxies; ``T`` the galaxies a training stage trains on under its budget,
  ``min(round(share * N), cap)`` with ``cap`` from :func:`stage_budgets` (``share``: the
  part of the catalogue in its training set, 1 for SimCLR, ~0.7 for the classifiers' train split);
  ``embeddings`` is fitted the same way, its ``random_vits14`` baseline as the capped part (``T`` the
  baseline's hash sample, :data:`features.embeddings.BASELINE_SAMPLE`, share 1);
- a training stage's training (its registry ``train_seconds``, the SSL record's seconds) is what scales
  with ``T``; its evaluation, calibration and conformal sets on val/test scale with ``N``. Where every
  rehearsal trained on about the same ``T`` (the cap), the two cannot be told apart and the fit puts
  all of it on ``N`` (``per_trained`` 0): per-epoch validation over val grows with ``N``.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from features.errors import InputError

__all__ = ["COSTS_FILE", "Costs", "Plan", "StageProjection", "load_costs", "plan", "project_stages", "stage_budgets",
           "start_key"]

COSTS_FILE = Path(__file__).with_name("scale_costs.json")
"""The measured costs the planner reads by default."""


def start_key(executor: str, workers: int) -> str:
    """Whose one-off start-up applies: ``serial`` (1 worker in process, nothing to start), else the
    executor's (run processes spawned, plus a Dask cluster for ``dask``)."""
    return "serial" if executor == "in_process" and workers == 1 else executor


@dataclass(frozen=True)
class Costs:
    """Measured per-galaxy costs (see :func:`load_costs`)."""

    core_seconds_per_galaxy: dict[str, float]
    """Per-shard stage -> core-seconds per galaxy."""
    serial_seconds_per_galaxy: dict[str, float]
    """Unpartitioned stage (run once over the catalogue) -> seconds per galaxy."""
    bytes_per_galaxy: dict[str, float]
    """Table -> bytes on disk per galaxy."""
    tables_of_stage: dict[str, list[str]]
    """Stage -> the tables it writes."""
    run_overhead_s: dict[str, float]
    """Executor -> seconds of start-up per run, plus what that executor's per-shard steps took beyond the
    baseline's core-seconds (``benchmarks/bench_scale.py``'s ``step_extra_s``: on Dask, the process pool a
    ``morphometrics`` task starts)."""
    start_s: dict[str, float] = field(default_factory=dict)
    """:func:`start_key` -> seconds before the first run starts (once per command)."""
    measured: dict = field(default_factory=dict)
    """When, where and on what the costs were measured."""
    stage_costs: dict[str, dict] = field(default_factory=dict)
    """Every stage of the default job -> ``runs`` (``shard`` / ``once``), ``wall_s`` and ``cpu_s`` (each
    ``{"fixed", "per_galaxy", "per_trained"}``), and for a stage with a capped part ``budget`` (a key of
    :func:`stage_budgets`) and ``share`` (see :func:`project_stages`)."""
    stage_costs_measured: dict = field(default_factory=dict)
    """Which rehearsals ``stage_costs`` were fitted on (command, sizes, load, commit)."""


def load_costs(path: str | Path | None = None) -> Costs:
    """Read a costs file (default :data:`COSTS_FILE`); one-line :class:`InputError` if unusable."""
    path = Path(path) if path else COSTS_FILE
    try:
        raw = json.loads(path.read_text())
        costs = Costs(**{k: raw[k] for k in ("core_seconds_per_galaxy", "serial_seconds_per_galaxy",
                                             "bytes_per_galaxy", "tables_of_stage", "run_overhead_s")},
                      start_s=raw.get("start_s", {}), measured=raw.get("measured", {}),
                      stage_costs=raw.get("stage_costs", {}), stage_costs_measured=raw.get("stage_costs_measured", {}))
        for stage, c in costs.stage_costs.items():
            if c["runs"] not in ("shard", "once"):
                raise ValueError(f"stage {stage}: runs must be shard or once, not {c['runs']!r}")
            for part in ("wall_s", "cpu_s"):
                for term in ("fixed", "per_galaxy", "per_trained"):
                    float(c[part][term])  # a missing or non-numeric term is the error below
        return costs
    except FileNotFoundError:
        raise InputError(f"no costs file {path}: run benchmarks/bench_scale.py to measure one") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"costs file {path} is not a planner costs file ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class Plan:
    """What :func:`plan` expects."""

    galaxies: int
    shard_size: int
    workers: int
    cores_per_worker: float
    executor: str
    stages: tuple[str, ...]
    shards: int
    shard_seconds: float
    """A full shard's run, start-up included."""
    start_s: float
    """One-off start-up before the first run."""
    shards_wall_s: float
    serial_wall_s: float
    wall_s: float
    core_hours: float
    bytes_by_table: dict[str, float]

    @property
    def bytes_total(self) -> float:
        return float(sum(self.bytes_by_table.values()))


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not value > 0:
        raise InputError(f"plan: {name} must be positive; got {value!r}")


def _makespan(durations: Sequence[float], workers: int) -> float:
    """Finish time of shards taken in order by the first free of ``workers``."""
    free = [0.0] * min(workers, max(len(durations), 1))
    for d in durations:
        heapq.heapreplace(free, free[0] + d)
    return max(free)


def plan(costs: Costs, galaxies: int, shard_size: int, workers: int, *, cores_per_worker: float,
         executor: str = "in_process", stages: Sequence[str] | None = None) -> Plan:
    """Expected wall time and storage (see the module docstring for the model and its assumptions).

    Parameters
    ----------
    costs : Costs
    galaxies, shard_size, workers : int
        Catalogue size, galaxies per shard, shard runs at once.
    cores_per_worker : float
        Cores each worker has (one machine of C cores: ``C / workers``; a cluster: its job's cores).
    executor : str
        Whose run start-up cost applies (a key of ``costs.run_overhead_s``).
    stages : sequence of str, optional
        Stages to count; default every measured one.

    Raises
    ------
    features.errors.InputError
        A size that is not positive, an unknown stage or executor.
    """
    for name, value in (("--galaxies", galaxies), ("--shard-size", shard_size), ("--workers", workers),
                        ("--cores-per-worker", cores_per_worker)):
        _positive(name, value)
    known = [*costs.core_seconds_per_galaxy, *costs.serial_seconds_per_galaxy]
    chosen = tuple(stages) if stages else tuple(known)
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise InputError(f"plan: no measured cost for stage(s) {unknown}; measured: {known}")
    if executor not in costs.run_overhead_s:
        raise InputError(f"plan: no measured run start-up for executor {executor!r}; "
                         f"measured: {sorted(costs.run_overhead_s)}")
    overhead = costs.run_overhead_s[executor]
    start = costs.start_s.get(start_key(executor, workers), 0.0)
    per_galaxy = sum(costs.core_seconds_per_galaxy.get(s, 0.0) for s in chosen) / cores_per_worker
    n_shards = math.ceil(galaxies / shard_size)
    sizes = [shard_size] * (n_shards - 1) + [galaxies - shard_size * (n_shards - 1)]
    shards_wall = _makespan([s * per_galaxy + overhead for s in sizes], workers) if per_galaxy else 0.0
    serial = sum(costs.serial_seconds_per_galaxy.get(s, 0.0) for s in chosen)
    serial_wall = galaxies * serial + overhead if serial else 0.0
    core_s = galaxies * sum(costs.core_seconds_per_galaxy.get(s, 0.0) for s in chosen) + galaxies * serial
    tables = {t for s in chosen for t in costs.tables_of_stage.get(s, [])}
    return Plan(galaxies=galaxies, shard_size=shard_size, workers=workers, cores_per_worker=cores_per_worker,
                executor=executor, stages=chosen, shards=n_shards, shard_seconds=shard_size * per_galaxy + overhead,
                start_s=start, shards_wall_s=shards_wall, serial_wall_s=serial_wall,
                wall_s=start + shards_wall + serial_wall,
                core_hours=core_s / 3600,
                bytes_by_table={t: galaxies * costs.bytes_per_galaxy[t] for t in sorted(tables)
                                if t in costs.bytes_per_galaxy})


@dataclass(frozen=True)
class StageProjection:
    """One stage of :func:`project_stages`."""

    stage: str
    runs: int
    trained: int
    """Galaxies it trains on under its budget (0: not a training stage)."""
    cap: int
    """Its budget (0: none)."""
    wall_s: float
    cpu_s: float


def stage_budgets() -> dict[str, int]:
    """Every cap a stage's cost is fitted against: :data:`models.config.TRAIN_BUDGETS` and, as
    ``random_vits14``, the baseline's sample (:data:`features.embeddings.BASELINE_SAMPLE`)."""
    from features.embeddings import BASELINE_SAMPLE
    from models.config import TRAIN_BUDGETS

    return {**TRAIN_BUDGETS, "random_vits14": BASELINE_SAMPLE}


def project_stages(costs: Costs, galaxies: int, shard_size: int,
                   budgets: dict[str, int] | None = None) -> list[StageProjection]:
    """Wall and CPU seconds of every stage of the default job (one worker in process), slowest first.

    Parameters
    ----------
    costs : Costs
        With ``stage_costs`` (see the module docstring for the model).
    galaxies, shard_size : int
    budgets : dict, optional
        Budget -> most galaxies it covers; default :func:`stage_budgets` (the ``demo`` preset's
        training budgets, the default everywhere, and the baseline's sample).

    Raises
    ------
    features.errors.InputError
        A size that is not positive, or a costs file without ``stage_costs``.
    """
    for name, value in (("--galaxies", galaxies), ("--shard-size", shard_size)):
        _positive(name, value)
    if not costs.stage_costs:
        raise InputError("plan: this costs file has no per-stage costs (stage_costs); fit them with "
                         "benchmarks/rehearse_galaxy10.py --fit")
    budgets = stage_budgets() if budgets is None else budgets
    shards = math.ceil(galaxies / shard_size)
    out = []
    for stage, c in costs.stage_costs.items():
        runs = shards if c["runs"] == "shard" else 1
        cap = int(budgets.get(c.get("budget", ""), 0))
        trained = round(float(c.get("share", 0.0)) * galaxies)
        trained = min(trained, cap) if cap else trained
        wall, cpu = (p["fixed"] + galaxies * p["per_galaxy"] + trained * p["per_trained"]
                     for p in (c["wall_s"], c["cpu_s"]))
        out.append(StageProjection(stage, runs, trained, cap, max(wall, 0.0), max(cpu, 0.0)))
    return sorted(out, key=lambda p: -p.wall_s)
