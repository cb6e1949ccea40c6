"""The typed result of one training asset: the metadata keys the CLI and the UI read, owned by one class.

The training assets write :meth:`TrainResult.to_metadata` into their materialization and ``astrovision
train`` reads it back with :meth:`TrainResult.from_metadata`, so renaming a key changes both sides at
once. No torch, no Dagster (plain values; the asset adds its Dagster-typed extras beside them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["TrainResult"]

_OFF = "off (no wandb_project)"


def _plain(value: Any) -> Any:
    """A metadata value as stored (Dagster wraps some in ``MetadataValue``; its ``value`` is the plain one)."""
    return getattr(value, "value", value)


@dataclass(frozen=True)
class TrainResult:
    """What one training asset produced, as far as its readers need.

    Attributes
    ----------
    name : str
        Registry name (also the asset name).
    version : int or None
        The registered version; None when the run was skipped.
    tracking : str
        Where the run was also logged (W&B), or why that failed; empty when off.
    skipped_reason : str
        Non-empty when the label set could not train this model (nothing registered).
    """

    name: str
    version: int | None = None
    tracking: str = ""
    skipped_reason: str = ""

    MODEL = "model"
    VERSION = "version"
    TRACKING = "experiment_tracking"
    SKIPPED = "skipped"
    REASON = "reason"

    @property
    def skipped(self) -> bool:
        return bool(self.skipped_reason)

    def to_metadata(self) -> dict[str, Any]:
        """The keys this class owns, as plain metadata values."""
        if self.skipped:
            return {self.SKIPPED: True, self.REASON: self.skipped_reason}
        return {self.MODEL: f"{self.name} v{self.version}", self.VERSION: int(self.version or 0),
                self.TRACKING: self.tracking or _OFF}

    @classmethod
    def from_metadata(cls, name: str, metadata: dict[str, Any]) -> TrainResult:
        """Read back what :meth:`to_metadata` wrote (values may be Dagster ``MetadataValue`` objects)."""
        if _plain(metadata.get(cls.SKIPPED)):
            return cls(name, skipped_reason=str(_plain(metadata.get(cls.REASON, "skipped"))))
        tracking = str(_plain(metadata.get(cls.TRACKING, "")))
        return cls(name, int(_plain(metadata[cls.VERSION])), "" if tracking == _OFF else tracking)
