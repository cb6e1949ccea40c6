"""The warehouse a command works on: the one named by the settings the CLI resolved once in ``main``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from warehouse import Warehouse
    from warehouse.settings import AstroSettings

__all__ = ["settings_of", "warehouse_of"]


def settings_of(args: argparse.Namespace) -> AstroSettings:
    """The :class:`AstroSettings` ``main`` put on ``args`` (resolved here for a caller that built ``args`` itself)."""
    from warehouse.settings import AstroSettings  # pydantic-settings: paid by a command, not by --help

    settings = getattr(args, "settings", None)
    return settings if isinstance(settings, AstroSettings) else AstroSettings.resolve(getattr(args, "home", None))


def warehouse_of(args: argparse.Namespace) -> Warehouse:
    """The :class:`warehouse.Warehouse` at the command's home (``--home``, else ``$ASTROVISION_HOME``, else the default)."""
    return settings_of(args).open_warehouse()
