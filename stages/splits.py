"""Split sets for training: build one into ``splits``, read one back with the rare-class rule applied.

What :mod:`stages.training` and the ``splits`` asset call. No Dagster and no argparse here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.errors import MissingInputError, SplitError, TooFewClassesError
from models.labels import Labels, resolve_labels
from models.splits import (
    DEFAULT_FRACTIONS,
    SPLIT_NAMES,
    check_no_leak,
    class_counts,
    make_splits,
    split_content_hash,
    split_set_name,
    usable_classes,
)
from stages.split_leaks import split_leaks
from warehouse.sqltext import quote

__all__ = ["SplitData", "SplitsOutcome", "build_splits", "describe_excluded", "load_split", "read_labels"]


@dataclass
class SplitsOutcome:
    """What :func:`build_splits` wrote."""

    split_name: str
    label_column: str
    seed: int
    counts: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    n_unlabelled: int
    n_groups_shared: int
    table_version: int
    excluded: dict[str, dict[str, int]] = field(default_factory=dict)
    """Classes the rare-class rule will leave out of every model trained on this split set."""
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    content_hash: str = ""
    """:func:`models.splits.split_content_hash` of the rows written."""


def read_labels(wh: Any, label_column: str, names: dict[int, str] | None = None) -> tuple[Labels, dict[str, str | None]]:
    """Labels of every galaxy for ``label_column`` and the duplicate group of each galaxy."""
    if not wh.exists("galaxies"):
        raise MissingInputError(f"table 'galaxies' does not exist in {wh.root}; ingest a source first")
    gal = wh.read("galaxies", columns=["galaxy_id", "label", "label_name", "extra_json", "duplicate_group"])
    ids = gal.column("galaxy_id").to_pylist()
    labels = resolve_labels(
        ids,
        column=label_column,
        label=gal.column("label").to_pylist(),
        label_name=gal.column("label_name").to_pylist(),
        extra_json=gal.column("extra_json").to_pylist(),
        names=names,
    )
    return labels, dict(zip(ids, gal.column("duplicate_group").to_pylist()))


def build_splits(
    wh: Any,
    *,
    label_column: str = "label",
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    names: dict[int, str] | None = None,
    run_id: str | None = None,
) -> SplitsOutcome:
    """Split the labelled galaxies (:func:`models.splits.make_splits`) and store them in ``splits``.

    The split set is named by its content's recipe, :func:`models.splits.split_set_name` of the label
    column, ``seed`` (the split seed) and ``fractions``, so split sets of other fractions are never
    overwritten. It is replaced in one commit (:meth:`warehouse.Warehouse.replace`): rows of galaxies that
    are no longer labelled go, so the stored set always equals the computed one; the groups are those of
    ``galaxies`` now (a model trained on an earlier version of the set is told apart by its
    ``split_hash``).

    Raises
    ------
    models.errors.LabelError
        Unusable label column (:class:`~models.errors.TooFewClassesError` for a single class).
    models.errors.SplitError
        The computed split leaks (never expected; checked before anything is written).
    """
    labels, groups = read_labels(wh, label_column, names)
    group = [groups.get(g) for g in labels.galaxy_ids]
    assign = make_splits(labels.galaxy_ids, labels.values, group, fractions=fractions, seed=seed)
    name = split_set_name(label_column, seed, fractions)
    problems = check_no_leak(assign.galaxy_ids, list(assign.split), group)
    if problems:
        raise SplitError(f"split {name} would leak: {'; '.join(problems[:5])}")
    name_of = labels.name_of
    rows = {
        "galaxy_id": labels.galaxy_ids,
        "split_name": [name] * len(labels.galaxy_ids),
        "split": [str(s) for s in assign.split],
        "label_column": [label_column] * len(labels.galaxy_ids),
        "label": labels.values.astype(np.int16).tolist(),
        "label_name": [name_of[int(v)] for v in labels.values],
        "seed": [seed] * len(labels.galaxy_ids),
        "duplicate_group": group,
    }
    import pyarrow as pa

    version = wh.replace("splits", pa.table(rows), where=f"split_name = {quote(name)}", run_id=run_id)
    cc = class_counts(list(assign.split), labels.values.tolist())
    rule = usable_classes(list(assign.split), labels.values.tolist())
    return SplitsOutcome(
        split_name=name,
        label_column=label_column,
        seed=seed,
        counts=assign.counts(),
        class_counts={s: {name_of[c]: n for c, n in sorted(v.items())} for s, v in cc.items()},
        n_unlabelled=labels.n_unlabelled,
        n_groups_shared=sum(1 for g in group if g),
        table_version=int(version),
        excluded={name_of[c]: per for c, per in rule.excluded.items()},
        fractions=tuple(float(x) for x in fractions),  # type: ignore[arg-type]
        content_hash=split_content_hash(rows["galaxy_id"], rows["split"], rows["label"]),
    )


@dataclass
class SplitData:
    """One split set read back for training: ids and class indices per split, the classes kept.

    ``excluded`` names the classes the rare-class rule (:func:`models.splits.usable_classes`) left out,
    with their galaxies per split; their galaxies are not in ``ids`` and ``y``.
    """

    split_name: str
    label_column: str
    table_version: int
    ids: dict[str, list[str]]
    y: dict[str, np.ndarray]
    classes: tuple[int, ...]
    names: tuple[str, ...]
    excluded: dict[str, dict[str, int]] = field(default_factory=dict)
    content_hash: str = ""
    """:func:`models.splits.split_content_hash` of every row of the set (excluded classes included)."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def classes_json(self) -> str:
        return json.dumps([{"label": int(c), "name": n} for c, n in zip(self.classes, self.names)])

    def excluded_json(self) -> str:
        """The registry's ``excluded_classes_json``: ``[{"name", "train", "val", "test"}, ...]``."""
        return json.dumps([{"name": n, **per} for n, per in self.excluded.items()])


def describe_excluded(excluded: dict[str, dict[str, int]], limit: int = 4) -> str:
    items = [f"{n!r} (" + ", ".join(f"{s} {c}" for s, c in per.items()) + ")" for n, per in excluded.items()]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def load_split(wh: Any, split_name: str, version: int | None = None) -> SplitData:
    """Read a split set, check it does not leak under today's duplicate groups, and apply the rare-class rule.

    The leak check reads the groups from the current ``galaxies`` (:func:`stages.split_leaks.split_leaks`),
    not the copy stored with the split: a split set built before an ingest grouped one of its training
    galaxies with a test galaxy is refused, with the advice to rebuild it.

    A class without a galaxy in each of train, val and test is left out of the label set (its
    galaxies are dropped from every split) and named in :attr:`SplitData.excluded`.

    Raises
    ------
    models.errors.SplitError
        No such split set, or a galaxy or (current) duplicate group in two splits.
    models.errors.TooFewClassesError
        Fewer than two classes have a galaxy in every split; the message names the counts.
    """
    if not wh.exists("splits"):
        raise SplitError(f"table 'splits' does not exist in {wh.root}; materialize the splits asset first")
    t = wh.read("splits", version=version, where=f"split_name = {quote(split_name)}",
                columns=["galaxy_id", "split", "label_column", "label", "label_name", "duplicate_group"])
    if t.num_rows == 0:
        raise SplitError(f"no split set {split_name!r} in the splits table (materialize splits for it first)")
    d = t.to_pydict()
    problems, _ = split_leaks(wh, split_name, version=version)
    if problems:
        raise SplitError(
            f"split set {split_name!r} leaks under the current duplicate groups of 'galaxies' "
            f"({len(problems)} problem(s): {'; '.join(problems[:3])}); rebuild it (materialize splits, "
            "or build_splits) before training on it")
    name_of: dict[int, str] = {}
    for v, nm in zip(d["label"], d["label_name"]):
        name_of.setdefault(int(v), nm or str(v))
    rule = usable_classes(d["split"], d["label"])
    excluded = {name_of[c]: per for c, per in rule.excluded.items()}
    if len(rule.kept) < 2:
        kept = ", ".join(repr(name_of[c]) for c in rule.kept) or "none"
        raise TooFewClassesError(
            f"split set {split_name!r} ({t.num_rows} galaxies): fewer than two classes have a galaxy in each "
            f"of train, val and test (kept: {kept}; left out: {describe_excluded(excluded)}); nothing to "
            "train: add galaxies or use another label column", excluded)
    classes = rule.kept
    index = {c: k for k, c in enumerate(classes)}
    ids: dict[str, list[str]] = {s: [] for s in SPLIT_NAMES}
    ys: dict[str, list[int]] = {s: [] for s in SPLIT_NAMES}
    for g, s, v in zip(d["galaxy_id"], d["split"], d["label"]):
        if int(v) in index:
            ids[s].append(g)
            ys[s].append(index[int(v)])
    table_version = int(version) if version is not None else int(wh.dataset("splits").version)
    return SplitData(split_name, d["label_column"][0], table_version, ids,
                     {s: np.asarray(ys[s], dtype=np.int64) for s in SPLIT_NAMES}, classes,
                     tuple(name_of[c] for c in classes), excluded,
                     split_content_hash(d["galaxy_id"], d["split"], d["label"]))
