"""Which runs a CLI command makes, in which order: a pure planner over the asset graph.

:func:`plan_runs` turns a selection of assets and a list of shards into :class:`RunSpec` values and
launches nothing; :mod:`dagster_project.launch` executes them. The graph it plans over is plain data
(:class:`AssetNode` per asset key), read once from Dagster definitions by :func:`asset_graph`, so the
planner is unit-tested on hand-made graphs without a Dagster run.

The order (the runner's semantics since the shard partitions came in):

- per-shard assets that read only other per-shard assets run first, one run per shard;
- then the unpartitioned assets (duplicate groups, splits, models, ...) in one run;
- a per-shard asset reading an unpartitioned one (``embeddings`` reads ``ssl_encoder``) runs in a
  later per-shard phase, and so on down the graph;
- a dependency outside the selection orders nothing (it is taken as already materialized).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from features.errors import InputError

__all__ = ["AssetNode", "RunSpec", "asset_graph", "plan_runs", "select_assets"]


@dataclass(frozen=True)
class AssetNode:
    """One asset as the planner sees it.

    Attributes
    ----------
    partitioned : bool
        Whether it has a partitions definition (the shards).
    deps : tuple of str
        The asset keys (user strings) it reads.
    group : str
        Its Dagster group (``"default"`` when none was given).
    kinds : frozenset of str
        Its Dagster kinds (``"pytorch"``, ``"lance"``, ...).
    """

    partitioned: bool
    deps: tuple[str, ...] = ()
    group: str = "default"
    kinds: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RunSpec:
    """One Dagster run to launch.

    Attributes
    ----------
    label : str
        How reports name it: ``"shard <key>"`` or ``"unpartitioned assets"``, with ``" (phase k)"``
        from the third phase on.
    partition : str or None
        The shard key of a per-shard run; None for the unpartitioned run.
    assets : tuple of str
        The asset keys (user strings) it materializes, in definition order.
    phase : int
        Its phase (0-based); every run of a phase may run at once, a phase starts after the previous one.
    """

    label: str
    partition: str | None
    assets: tuple[str, ...]
    phase: int


def asset_graph(defs) -> dict[str, AssetNode]:
    """The planner's view of ``defs`` (a :class:`dagster.Definitions`): asset key -> node, in definition order."""
    import dagster as dg

    graph: dict[str, AssetNode] = {}
    for a in defs.assets or []:
        if not isinstance(a, dg.AssetsDefinition):
            continue
        for spec in a.specs:
            graph[spec.key.to_user_string()] = AssetNode(
                partitioned=a.partitions_def is not None,
                deps=tuple(d.asset_key.to_user_string() for d in spec.deps),
                group=spec.group_name or "default",
                kinds=frozenset(spec.kinds or ()),
            )
    return graph


def select_assets(graph: Mapping[str, AssetNode], groups: Sequence[str] | None = None,
                  names: Sequence[str] | None = None) -> dict[str, AssetNode]:
    """The assets of ``groups`` (default all) and, if given, only those named, in the graph's order.

    Raises
    ------
    features.errors.InputError
        An unknown group or asset name, in one line with the known ones.
    """
    known_groups = sorted({node.group for node in graph.values()})
    unknown = sorted(set(groups or ()) - set(known_groups))
    if unknown:
        raise InputError(f"unknown Dagster group(s) {unknown}; known: {known_groups}")
    missing = sorted(set(names or ()) - set(graph))
    if missing:
        raise InputError(f"unknown asset(s) {missing}; known: {sorted(graph)}")
    return {key: node for key, node in graph.items()
            if (not groups or node.group in groups) and (not names or key in names)}


def _phase_of(selection: Mapping[str, AssetNode]) -> dict[str, int]:
    """Asset -> phase number: even for per-shard phases, odd for unpartitioned ones."""
    phase: dict[str, int] = {}

    def of(key: str) -> int:
        if key not in phase:
            node = selection[key]
            p = 0 if node.partitioned else 1
            for dep in node.deps:
                if dep in selection:
                    p = max(p, of(dep) + (selection[dep].partitioned != node.partitioned))
            phase[key] = p
        return phase[key]

    for key in selection:
        of(key)
    return phase


def plan_runs(selection: Mapping[str, AssetNode], shards: Sequence[str], *,
              include_unpartitioned: bool = True) -> list[RunSpec]:
    """The runs that materialize ``selection`` over ``shards``, phase by phase (module docstring).

    Parameters
    ----------
    selection : mapping of str to AssetNode
        The chosen assets (:func:`select_assets`), in definition order.
    shards : sequence of str
        Shard keys: one run per shard in each per-shard phase (none for an empty sequence).
    include_unpartitioned : bool
        Plan the unpartitioned runs too.

    Returns
    -------
    list of RunSpec
        In launch order; runs of one phase are adjacent, and their phase numbers are consecutive
        from 0 over the phases that have runs.
    """
    phase = _phase_of(selection)
    runs: list[RunSpec] = []
    for i, p in enumerate(sorted(set(phase.values()))):
        keys = tuple(k for k in selection if phase[k] == p)
        after = f" (phase {i + 1})" if i > 1 else ""
        n = len({r.phase for r in runs})
        if p % 2 == 0:
            runs += [RunSpec(f"shard {s}{after}", s, keys, n) for s in shards]
        elif include_unpartitioned:
            runs.append(RunSpec(f"unpartitioned assets{after}", None, keys, n))
    return runs
