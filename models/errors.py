"""Errors the training stage raises for the user to read (the CLI prints them as one line, exit 2).

All derive from :class:`features.errors.InputError`, so ``astrovision`` reports them without a traceback.
"""

from __future__ import annotations

from features.errors import InputError

__all__ = ["LabelError", "MissingInputError", "SplitError", "TrainingError", "WeightsUnavailableError"]


class TrainingError(InputError):
    """A training run that cannot start or cannot finish for a reason the user can fix."""


class LabelError(TrainingError):
    """The label column is unusable: NaN or non-integer values, fewer than two classes, unknown column."""


class SplitError(TrainingError):
    """The splits are unusable: missing, leaking across train/val/test, or a split lacks a class."""


class MissingInputError(TrainingError):
    """A table the model reads (embeddings, images, splits) does not exist or lacks galaxies."""


class WeightsUnavailableError(TrainingError):
    """Pretrained weights could not be resolved and random initialisation was not allowed."""
