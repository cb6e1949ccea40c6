"""Dagster resources: the warehouse every asset reads from and writes to, under the shard's source lock."""


from contextlib import ExitStack

import dagster as dg
from pydantic import Field, PrivateAttr

from warehouse import Warehouse
from warehouse.settings import AstroSettings

__all__ = ["WarehouseResource", "run_sources"]

_PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def run_sources(tags: dict[str, str]) -> set[str]:
    """The source names of the shards a run writes, from its partition tags (none for an unpartitioned run).

    A shard key starts with its source's name (``<name>-00003``, ``<name>-hpx8-301``); names hold no ``-``.
    """
    return {tags[t].split("-", 1)[0] for t in _PARTITION_TAGS if tags.get(t)}


class WarehouseResource(dg.ConfigurableResource):
    """Opens the AstroVision warehouse at ``root`` (default: ``$ASTROVISION_HOME`` or ./astrovision-data).

    This is the Dagster face's settings: ``root`` and ``local_home`` are resolved through
    :class:`warehouse.settings.AstroSettings` once, when the resource opens the warehouse; the CLI's runs
    carry both in their resource config (:mod:`dagster_project.runner`), so a run process, a step process
    or a Dask worker opens the CLI's warehouse whatever its environment says.

    A run that writes shards (a partitioned run, from the CLI, the UI or the API alike) holds the per-source
    lock of their source (:func:`stages.sources.source_locks`, the lock ``astrovision ingest`` takes) from
    the resource's set-up to its teardown, so a shard re-materialized from the UI waits for a CLI ingest of
    the same source and the other way round. A run launched by a process that holds that lock already
    (the CLI's own runs) does not wait for its parent.
    """

    root: str = Field(default="", description="Warehouse root directory; empty means the default.")
    local_home: str = Field(default="", description="Local state folder of an object-store root; empty: "
                                                    "$ASTROVISION_LOCAL_HOME or the user cache.")
    source_lock_timeout_s: float = Field(
        default=-1.0, description="Seconds a run waits for another writer of its source; negative: no limit.")
    _locks: ExitStack | None = PrivateAttr(default=None)

    def open(self) -> Warehouse:
        """The :class:`warehouse.Warehouse` at this root."""
        return self.settings().open_warehouse()

    def settings(self) -> AstroSettings:
        """The :class:`AstroSettings` of this resource: its config over the environment's."""
        settings = AstroSettings.resolve(self.root or None)
        return settings.model_copy(update={"local_home": self.local_home}) if self.local_home else settings

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Take the source lock of the run's shards (waiting, and saying so in the run's log)."""
        from stages.sources import source_locks

        run = context.dagster_run
        names = run_sources(dict(run.tags)) if run is not None else set()
        if not names:
            return
        stack = ExitStack()
        timeout = None if self.source_lock_timeout_s < 0 else self.source_lock_timeout_s
        taken = stack.enter_context(source_locks(self.open(), names, timeout=timeout, on_wait=context.log.info))
        if taken:
            context.log.debug(f"holding the source lock of {', '.join(taken)}")
        self._locks = stack

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Release the source locks taken at set-up."""
        if self._locks is not None:
            self._locks.close()
            self._locks = None
