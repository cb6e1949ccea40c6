"""Dagster resources: the warehouse every asset reads from and writes to."""

from __future__ import annotations

import dagster as dg

from warehouse import Warehouse, resolve_root

__all__ = ["WarehouseResource"]


class WarehouseResource(dg.ConfigurableResource):
    """Opens the AstroVision warehouse at ``root`` (default: ``$ASTROVISION_HOME`` or ./astrovision-data)."""

    root: str = dg.Field(default="", description="Warehouse root directory; empty means the default.")  # type: ignore[assignment]

    def open(self) -> Warehouse:
        """The :class:`warehouse.Warehouse` at this root."""
        return Warehouse.open(self.root or resolve_root())
