"""Run the asset graph in process for the CLI: every shard's assets, then the unpartitioned ones.

The runs are ordinary Dagster runs recorded in the instance under the warehouse root, so
``astrovision ui`` shows them (lineage, metadata, checks) and any asset can be re-materialized there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from tqdm.auto import tqdm

from dagster_project.partitions import SHARDS
from dagster_project.resources import WarehouseResource
from warehouse import Warehouse

__all__ = ["PipelineReport", "add_shards", "instance_for", "run_pipeline"]

_QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
"""Dagster's console logger stays quiet: the runner reports failures itself, one line each."""


def _root_cause(err) -> str:
    """The first error below Dagster's wrappers ("OfflineError: ..."), in one line.

    Not the innermost one: the project's own errors carry the message meant for the user and chain the
    low-level exception (a DNS failure, an h5py error) beneath them.
    """
    while err is not None and (err.cls_name or "").startswith("Dagster") and err.cause is not None:
        err = err.cause
    text = (err.message or "").strip().splitlines() if err else []
    return text[-1] if text else "failed"



def instance_for(wh: Warehouse) -> dg.DagsterInstance:
    """The persistent Dagster instance stored under the warehouse root (``<root>/dagster``)."""
    home = Path(wh.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    yaml = home / "dagster.yaml"
    if not yaml.exists():
        yaml.write_text("telemetry:\n  enabled: false\n")
    os.environ.setdefault("DAGSTER_HOME", str(home))
    return dg.DagsterInstance.from_config(str(home))


def add_shards(instance: dg.DagsterInstance, keys: Sequence[str]) -> None:
    """Register shard keys as dynamic partitions (existing keys are left alone)."""
    existing = set(instance.get_dynamic_partitions(SHARDS.name))
    new = [k for k in keys if k not in existing]
    if new:
        instance.add_dynamic_partitions(SHARDS.name, new)


@dataclass
class PipelineReport:
    """What a pipeline run did: per-step success and each materialization's metadata."""

    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, dict] = field(default_factory=dict)
    checks_failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def _asset_defs(defs: dg.Definitions) -> list[dg.AssetsDefinition]:
    return [a for a in (defs.assets or []) if isinstance(a, dg.AssetsDefinition)]


def _collect(result: dg.ExecuteInProcessResult, report: PipelineReport, label: str) -> None:
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization  # type: ignore[union-attr]
        key = mat.asset_key.to_user_string()
        name = f"{key}[{mat.partition}]" if mat.partition else key
        report.succeeded.append(name)
        report.metadata[name] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if not data.passed:  # type: ignore[union-attr]
                report.checks_failed.append(
                    f"{data.asset_key.to_user_string()}:{data.check_name} ({label})"  # type: ignore[union-attr]
                )
        if event.is_step_failure:
            err = event.event_specific_data.error  # type: ignore[union-attr]
            report.failed[f"{event.step_key} ({label})"] = _root_cause(err)


def run_pipeline(
    wh: Warehouse,
    shards: Sequence[str],
    *,
    groups: Sequence[str] | None = None,
    include_unpartitioned: bool = True,
    defs: dg.Definitions | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> PipelineReport:
    """Materialize the asset graph in process.

    Parameters
    ----------
    wh : Warehouse
    shards : sequence of str
        Shard keys to materialize (added as dynamic partitions if new).
    groups : sequence of str, optional
        Only assets of these Dagster groups (e.g. ``["ingest"]``); default all.
    include_unpartitioned : bool
        Also run the unpartitioned assets (duplicate groups, splits, models, ...) after the shards.
    defs : Definitions, optional
        Defaults to :data:`dagster_project.definitions.defs`.
    progress : bool
        Show a progress bar over steps.
    log : callable
        Where one-line progress messages go.
    """
    if defs is None:
        from dagster_project.definitions import defs as project_defs

        defs = project_defs
    instance = instance_for(wh)
    add_shards(instance, shards)
    assets = _asset_defs(defs)
    chosen = [a for a in assets if groups is None or set(a.group_names_by_key.values()) & set(groups)]
    partitioned = [k for a in chosen if a.partitions_def is not None for k in a.keys]
    unpartitioned = [k for a in chosen if a.partitions_def is None for k in a.keys]
    resources = {"warehouse": WarehouseResource(root=str(wh.root))}
    report = PipelineReport()
    logging.getLogger("dagster").setLevel(logging.CRITICAL)
    steps: list[tuple[str, str | None, list[dg.AssetKey]]] = []
    if partitioned:
        steps += [(f"shard {s}", s, partitioned) for s in shards]
    if include_unpartitioned and unpartitioned:
        steps.append(("unpartitioned assets", None, unpartitioned))
    bar = tqdm(steps, desc="materialize", unit="run", disable=not progress)
    for label, partition, keys in bar:
        bar.set_postfix_str(label)
        result = dg.materialize(
            assets,
            selection=keys,
            partition_key=partition,
            instance=instance,
            resources=resources,
            run_config=_QUIET_RUN_CONFIG,
            raise_on_error=False,
            tags={"astrovision/trigger": "cli"},
        )
        before = set(report.failed)
        _collect(result, report, label)
        for step in sorted(set(report.failed) - before):
            log(f"FAILED {step}: {report.failed[step]}")
        if any(step.startswith("galaxies ") for step in set(report.failed) - before):
            break  # without its galaxies nothing downstream can be computed
    bar.close()
    return report
