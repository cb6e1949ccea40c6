"""The one settings object: where the warehouse lives and what the faces share, read once per face.

:class:`AstroSettings` is built from the environment (``ASTROVISION_*`` variables) and explicit values
(``--home`` wins over ``$ASTROVISION_HOME``) ONCE at each face: the CLI's ``main``, the HTTP app factory
(through :class:`service.http.settings.Settings`, which holds the warehouse it was resolved to) and the
Dagster resource (:class:`dagster_project.resources.WarehouseResource`, whose config carries the root).
Nothing below a face reads these variables, and nothing writes ``os.environ``: a child process gets the
home in its run or resource config, or in the ``env=`` of its ``subprocess`` call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from .facade import Warehouse

__all__ = ["DEFAULT_HOME", "AstroSettings"]

DEFAULT_HOME = "astrovision-data"
"""The warehouse root when neither ``--home`` nor ``$ASTROVISION_HOME`` names one (relative to the working folder)."""


class AstroSettings(BaseSettings):
    """What ``$ASTROVISION_*`` and ``--home`` configure; immutable once resolved.

    Attributes
    ----------
    home : str
        Warehouse root, a directory or an object-store URI (``$ASTROVISION_HOME``, ``--home``).
    local_home : str
        Local state folder of an object-store root (``$ASTROVISION_LOCAL_HOME``); empty: the user cache.
    weights_dir : str
        Folder of encoder weight files (``$ASTROVISION_WEIGHTS_DIR``); empty: none.
    wandb_project : str
        Weights & Biases project training runs log to (``$ASTROVISION_WANDB_PROJECT``); empty: off.
    """

    model_config = SettingsConfigDict(env_prefix="ASTROVISION_", frozen=True, extra="ignore")

    home: str = Field(default=DEFAULT_HOME, description="warehouse root: a directory or s3://BUCKET/PREFIX")
    local_home: str = Field(default="", description="local state folder of an object-store root")
    weights_dir: str = Field(default="", description="folder of encoder weight files")
    wandb_project: str = Field(default="", description="W&B project of training runs (empty: off)")

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> AstroSettings:
        """The settings from the environment, ``home`` (e.g. ``--home``) overriding ``$ASTROVISION_HOME``.

        The home comes back normalised (a directory made absolute, a URI cleaned), so the object
        means the same warehouse whatever the working folder later is.

        Raises
        ------
        WarehouseError
            ``home`` is an unsupported URI.
        """
        from .location import normalise_root

        base = cls() if home is None else cls(home=str(home))
        return base.model_copy(update={"home": normalise_root(base.home or DEFAULT_HOME)})

    @property
    def local_root(self) -> Path | None:
        """:attr:`local_home` as an absolute path, or None when unset."""
        return Path(self.local_home).expanduser().resolve() if self.local_home else None

    def open_warehouse(self) -> Warehouse:
        """The :class:`warehouse.Warehouse` at :attr:`home` (created if needed)."""
        from .facade import Warehouse

        return Warehouse.open(self.home, local_root=self.local_root)

    def child_env(self, environ: dict[str, str] | None = None) -> dict[str, str]:
        """An environment for a child process (``subprocess``'s ``env=``): ``environ`` (default: this
        process's) with the home variables set to these settings; this process's environment is untouched."""
        env = dict(os.environ if environ is None else environ)
        env["ASTROVISION_HOME"] = self.home
        if self.local_home:
            env["ASTROVISION_LOCAL_HOME"] = str(self.local_root)
        return env
