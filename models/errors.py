"""Errors the training stage raises for the user to read (the CLI prints them as one line, exit 2).

All derive from :class:`features.errors.InputError`, so ``astrovision`` reports them without a traceback.
"""

from __future__ import annotations

from features.errors import InputError

__all__ = [
    "LabelError",
    "MissingInputError",
    "SplitError",
    "TooFewClassesError",
    "TrainingError",
    "WeightsUnavailableError",
]


class TrainingError(InputError):
    """A training run that cannot start or cannot finish for a reason the user can fix."""


class LabelError(TrainingError):
    """The label column is unusable: NaN or non-integer values, fewer than two classes, unknown column."""


class TooFewClassesError(LabelError):
    """Fewer than two classes to train on: a single class, or too few left after the rare-class rule.

    Attributes
    ----------
    excluded : dict
        Class name -> galaxies per split (``{"train": n, "val": n, "test": n}``) of the classes left out
        (empty when the label column itself has a single class).

    Notes
    -----
    Nothing is trained then. The Dagster assets report the model as skipped, with this message, instead
    of failing the run; ``astrovision train`` prints it as an error.
    """

    def __init__(self, message: str, excluded: dict[str, dict[str, int]] | None = None) -> None:
        super().__init__(message)
        self.excluded = dict(excluded or {})


class SplitError(TrainingError):
    """The splits are unusable: missing, leaking across train/val/test, or a split lacks a class."""


class MissingInputError(TrainingError):
    """A table the model reads (embeddings, images, splits) does not exist or lacks galaxies."""


class WeightsUnavailableError(TrainingError):
    """Pretrained weights could not be resolved and random initialisation was not allowed."""
