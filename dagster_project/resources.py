"""Dagster resources: the warehouse every asset reads from and writes to."""


import dagster as dg
from pydantic import Field

from warehouse import Warehouse, resolve_root

__all__ = ["WarehouseResource"]


class WarehouseResource(dg.ConfigurableResource):
    """Opens the AstroVision warehouse at ``root`` (default: ``$ASTROVISION_HOME`` or ./astrovision-data)."""

    root: str = Field(default="", description="Warehouse root directory; empty means the default.")

    def open(self) -> Warehouse:
        """The :class:`warehouse.Warehouse` at this root."""
        return Warehouse.open(self.root or resolve_root())
