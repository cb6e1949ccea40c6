"""Leak-free train / validation / test splits.

Galaxy10 DECaLS holds about 59 near-duplicate pairs (the same galaxy cut twice); a random split puts
one copy in training and the other in test, and the test score measures memory, not morphology. Here
the unit of splitting is the *duplicate group* (``galaxies.duplicate_group``; a galaxy without one is a
group of its own), so a group never straddles two splits, and the split is stratified by class in the
manner of scikit-learn's ``StratifiedGroupKFold``: for each class, its groups are shuffled with a fixed
seed and each goes to the split whose galaxy count lies furthest below its target
(``fraction * n_class``). A class with at least three groups gets at least one group in every split.

The rare-class rule (:func:`usable_classes`): a class enters a model's label set only when it has at
least one galaxy in each of train, val and test of the split set (with this splitter: at least three
duplicate groups). The others are left out of that model's training, validation and test, and named
with their counts in its registry row; a split set with fewer than two usable classes trains nothing.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.errors import SplitError

__all__ = [
    "DEFAULT_FRACTIONS",
    "SPLIT_NAMES",
    "LabelSet",
    "SplitAssignment",
    "check_no_leak",
    "class_counts",
    "make_splits",
    "split_content_hash",
    "split_set_name",
    "usable_classes",
]

SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")


DEFAULT_FRACTIONS: tuple[float, float, float] = (0.70, 0.15, 0.15)
"""Train, val and test fractions of the default split set."""


def _percent(x: float) -> str:
    return f"{round(100 * float(x), 1):g}".replace(".", "p")


def split_set_name(label_column: str, seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> str:
    """The ``split_name`` of a split set: label column, split seed and fractions in percent.

    ``("label", 0)`` -> ``"label-s0-f70.15.15"``; ``("ring", 1, (0.5, 0.25, 0.25))`` ->
    ``"ring-s1-f50.25.25"`` (a fractional percent is written with ``p``: ``33p3``). Split sets that
    differ in fractions never share a name, so building one never overwrites another.
    """
    f = _check_fractions(fractions)
    return f"{label_column}-s{int(seed)}-f" + ".".join(_percent(x) for x in f)


def split_content_hash(galaxy_ids: Sequence[str], splits: Sequence[str], labels: Sequence[int]) -> str:
    """A short SHA-256 of a split set's content: the sorted ``(galaxy_id, split, label)`` rows.

    Two split sets hash alike iff every galaxy has the same split and label in both, whatever the
    table version or row order; a model records the hash it was trained on, so a split set rebuilt
    under the same name (new galaxies, new duplicate groups) is told apart from the one it used.
    """
    h = hashlib.sha256()
    for g, s, y in sorted(zip(galaxy_ids, splits, (int(v) for v in labels))):
        h.update(f"{g}\t{s}\t{y}\n".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class SplitAssignment:
    """The split of each galaxy, in input order.

    Attributes
    ----------
    galaxy_ids : list of str
    split : numpy.ndarray of str
        ``"train"``, ``"val"`` or ``"test"`` per galaxy.
    group : list of str
        The group each galaxy was split with (its duplicate group, or its own id).
    """

    galaxy_ids: list[str]
    split: np.ndarray
    group: list[str]

    def ids(self, name: str) -> list[str]:
        """Galaxy ids of one split, in input order."""
        return [g for g, s in zip(self.galaxy_ids, self.split) if s == name]

    def counts(self) -> dict[str, int]:
        """Galaxies per split."""
        return {name: int((self.split == name).sum()) for name in SPLIT_NAMES}


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3:
        raise SplitError(f"fractions must be (train, val, test); got {tuple(fractions)}")
    f = tuple(float(x) for x in fractions)
    if any(x <= 0 for x in f) or abs(sum(f) - 1.0) > 1e-6:
        raise SplitError(f"fractions must be positive and sum to 1; got {f}")
    return f  # type: ignore[return-value]


def make_splits(
    galaxy_ids: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    groups: Sequence[str | None] | None = None,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> SplitAssignment:
    """Stratified, group-aware train/val/test split.

    Parameters
    ----------
    galaxy_ids : sequence of str
        Unique ids.
    labels : sequence of int
        Class of each galaxy (any integers).
    groups : sequence of str or None, optional
        Duplicate group of each galaxy; ``None`` means the galaxy is alone.
    fractions : (float, float, float)
        Target fractions of galaxies in train, val and test (per class).
    seed : int
        Seed of the shuffle; the result depends only on the seed and the set of (id, label, group),
        not on input order.

    Returns
    -------
    SplitAssignment

    Notes
    -----
    A group whose members carry different labels is stratified by its most common label (ties: the
    smallest). Exact fractions are impossible for small classes; the greedy largest-deficit rule keeps
    every split within one group of its target.
    """
    f = _check_fractions(fractions)
    ids = list(galaxy_ids)
    y = np.asarray(labels)
    if len(y) != len(ids):
        raise SplitError(f"{len(ids)} galaxy ids but {len(y)} labels")
    if len(set(ids)) != len(ids):
        dup = next(g for g, c in Counter(ids).items() if c > 1)
        raise SplitError(f"galaxy id {dup!r} appears more than once")
    grp = [g if g else gid for gid, g in zip(ids, groups if groups is not None else [None] * len(ids))]

    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(grp):
        members[g].append(i)
    by_class: dict[int, list[str]] = defaultdict(list)
    for g, idx in members.items():
        counts = Counter(int(y[i]) for i in idx)
        top = max(counts.values())
        by_class[min(c for c, n in counts.items() if n == top)].append(g)

    rng = np.random.default_rng(seed)
    split_of_group: dict[str, int] = {}
    for c in sorted(by_class):
        units = sorted(by_class[c])
        units = [units[i] for i in rng.permutation(len(units))]
        sizes = [len(members[u]) for u in units]
        targets = np.asarray(f) * sum(sizes)
        current = np.zeros(3)
        for k, (u, size) in enumerate(zip(units, sizes)):
            if len(units) >= 3 and k < 3:
                s = (1, 2, 0)[k]  # one group each to val, test, train first
            else:
                s = int(np.argmax(targets - current))
            split_of_group[u] = s
            current[s] += size

    split = np.asarray([SPLIT_NAMES[split_of_group[g]] for g in grp], dtype=object)
    return SplitAssignment(galaxy_ids=ids, split=split, group=grp)


def check_no_leak(
    galaxy_ids: Sequence[str],
    splits: Sequence[str],
    groups: Sequence[str | None],
) -> list[str]:
    """Problems that would leak test data into training; an empty list means none.

    Parameters
    ----------
    galaxy_ids, splits, groups : sequences of equal length
        One row per (galaxy, split) assignment of one split set; ``groups`` may hold ``None``.

    Returns
    -------
    list of str
        One line per galaxy id found in two splits and per duplicate group found in two splits.
    """
    problems: list[str] = []
    id_splits: dict[str, set[str]] = defaultdict(set)
    group_splits: dict[str, set[str]] = defaultdict(set)
    for gid, s, g in zip(galaxy_ids, splits, groups):
        id_splits[gid].add(s)
        if g:
            group_splits[g].add(s)
    for gid, ss in id_splits.items():
        if len(ss) > 1:
            problems.append(f"galaxy {gid} is in {sorted(ss)}")
    for g, ss in group_splits.items():
        if len(ss) > 1:
            problems.append(f"duplicate group {g} straddles {sorted(ss)}")
    return problems


def class_counts(splits: Sequence[str], labels: Sequence[int]) -> dict[str, dict[int, int]]:
    """Galaxies per class in each split: ``{"train": {label: n}, ...}``."""
    out: dict[str, dict[int, int]] = {name: {} for name in SPLIT_NAMES}
    for s, y in zip(splits, labels):
        out.setdefault(s, {})
        out[s][int(y)] = out[s].get(int(y), 0) + 1
    return out


@dataclass(frozen=True)
class LabelSet:
    """The classes a model trains on, and those the rare-class rule left out.

    Attributes
    ----------
    kept : tuple of int
        Label values with enough galaxies in every split, sorted.
    excluded : dict
        Label value -> galaxies per split (``{"train": n, "val": n, "test": n}``) of each class left out.
    """

    kept: tuple[int, ...]
    excluded: dict[int, dict[str, int]]


def usable_classes(splits: Sequence[str], labels: Sequence[int], *, min_per_split: int = 1) -> LabelSet:
    """Apply the rare-class rule: keep a class iff each of train, val and test holds ``min_per_split`` of it.

    Parameters
    ----------
    splits : sequence of str
        ``"train"``, ``"val"`` or ``"test"`` per galaxy.
    labels : sequence of int
        Label value per galaxy.
    min_per_split : int
        Galaxies of a class each split must hold (1: the class can be trained, selected on and tested).

    Returns
    -------
    LabelSet
        Every class of ``labels`` is either kept or excluded; an empty input keeps nothing.
    """
    counts = class_counts(splits, labels)
    classes = sorted({int(y) for y in labels})
    kept: list[int] = []
    excluded: dict[int, dict[str, int]] = {}
    for c in classes:
        per = {s: counts.get(s, {}).get(c, 0) for s in SPLIT_NAMES}
        if all(n >= min_per_split for n in per.values()):
            kept.append(c)
        else:
            excluded[c] = per
    return LabelSet(kept=tuple(kept), excluded=excluded)
