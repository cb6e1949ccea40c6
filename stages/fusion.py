"""The fusion model's training step: read the three modalities of a split set, fit, ablate.

The ``fusion`` kind's fitting step in :data:`stages.training.FIT_STEPS` (then :func:`stages.finish.finish_run`
gates, calibrates, conformalizes and registers it like every other model). No Dagster, no argparse.

A modality that no training galaxy has (e.g. photometry of a folder source whose SDSS query could not be
made offline) is left out of the model - its branch is not built - and said so in the notes, the log and
the registry; every galaxy then carries ``Flag.MODALITY_MISSING`` in ``fusion_inputs``. The run goes on
with the other modalities; with none left it stops with a :class:`models.errors.MissingInputError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from features.weights import WeightsOrigin, WeightsProvenance
from models.config import FusionConfig
from models.errors import MissingInputError
from models.fusion_data import MODALITIES, Modalities
from models.splits import SPLIT_NAMES
from stages.model_inputs import read_modalities
from stages.trainers import subsample

__all__ = ["DEMO_CATALOGUE_PREFIX", "embeddings_provenance", "train_fusion"]

LogFn = Callable[[str], None]
Used = dict[str, tuple[list[str], np.ndarray]]


def embeddings_provenance(wh: Any, table: str) -> WeightsProvenance:
    """The weights behind a stored embeddings table (random init when any row says so)."""
    if not wh.exists(table):
        return WeightsProvenance(WeightsOrigin.SCRATCH, via=f"no {table}: embeddings modality missing")
    stored = wh.read(table, columns=["weights_origin", "weights_sha256"])
    origins = sorted({WeightsOrigin(o) for o in stored.column("weights_origin").to_pylist()})
    shas = set(stored.column("weights_sha256").to_pylist())
    random = any(o.is_random for o in origins)
    return WeightsProvenance(WeightsOrigin.RANDOM_INIT if random else origins[0],
                             sha256=shas.pop() if len(shas) == 1 else None,
                             via=f"embeddings {table}: {', '.join(origins)}")


DEMO_CATALOGUE_PREFIX = "catalogue:sdss_like_"
"""``photometry.source`` of the demo survey's synthetic catalogue (:func:`stages.photometry.demo_catalogue`)."""


def _photometry_sources(wh: Any, ids: list[str]) -> dict[str, int]:
    """Training galaxies per ``photometry.source`` (which catalogue or service the values came from)."""
    if not wh.exists("photometry"):
        return {}
    t = wh.read("photometry", columns=["galaxy_id", "source"]).to_pydict()
    wanted = set(ids)
    out: dict[str, int] = {}
    for g, src in zip(t["galaxy_id"], t["source"]):
        if g in wanted:
            out[src] = out.get(src, 0) + 1
    return out


def _coverage(data: dict[str, Modalities]) -> dict[str, dict[str, int]]:
    return {s: {m: int(d.present[m].sum()) for m in MODALITIES} | {"n": len(d.galaxy_ids)} for s, d in data.items()}


def train_fusion(wh: Any, name: str, cfg: FusionConfig, split: Any, tmp: Path, log: LogFn,
                 notes: list[str]) -> tuple[dict[str, np.ndarray], Used, WeightsProvenance, dict[str, Any]]:
    """Fit :class:`models.fusion.FusionNet` on ``split`` and, with ``cfg.ablate``, every modality subset.

    Returns what :func:`stages.finish.finish_run` needs: val/test probabilities, the galaxies used per
    split, the weights provenance (that of the embeddings) and the fit record (``modalities``,
    ``modalities_missing_for_all``, per-split ``coverage``, ``history``, ``ablation``).
    """
    from models.data import embeddings_table
    from models.fusion import ablation, ablation_table_md, fit_fusion, save_fusion

    table = embeddings_table(cfg.encoder)
    used: Used = {}
    data: dict[str, Modalities] = {}
    for s in SPLIT_NAMES:
        ids, y = split.ids[s], split.y[s]
        if s == "train":
            ids, y = subsample(ids, y, cfg.max_train, cfg.seed)
        used[s] = (list(ids), y)
        data[s] = read_modalities(wh, ids, cfg.encoder)
    absent = [m for m in MODALITIES if not data["train"].present[m].any()]
    for m in absent:
        why = data["train"].notes.get(m, "no training galaxy has it")
        notes.append(f"modality {m} MISSING for every training galaxy ({why}): left out of the model, "
                     "every galaxy flagged MODALITY_MISSING")
        log(f"fusion: {notes[-1]}")
    modalities = [m for m in MODALITIES if m not in absent]
    if not modalities:
        raise MissingInputError(f"fusion: no modality is present for any training galaxy of {split.split_name!r} "
                                f"({'; '.join(f'{m}: {w}' for m, w in data['train'].notes.items())})")
    coverage = _coverage(data)
    sources = _photometry_sources(wh, used["train"][0])
    if any(src.startswith(DEMO_CATALOGUE_PREFIX) for src in sources):
        notes.append("photometry is the demo survey's synthetic SDSS-like catalogue (magnitudes of the rendered "
                     "galaxies with SDSS-depth noise, features.sources.synthetic.catalogue), not SDSS")
        log(f"fusion: {notes[-1]}")
    for m in modalities:
        lacking = {s: coverage[s]["n"] - coverage[s][m] for s in SPLIT_NAMES}
        if any(lacking.values()):
            log(f"fusion: {m} missing (imputed, flagged) for " + ", ".join(f"{s} {n}" for s, n in lacking.items()))
    kwargs = {"hidden": cfg.hidden, "dropout": cfg.dropout, "epochs": cfg.epochs, "patience": cfg.patience,
              "lr": cfg.lr, "weight_decay": cfg.weight_decay, "batch_size": cfg.batch_size,
              "modality_dropout": cfg.modality_dropout}
    t0 = time.perf_counter()
    fitted = fit_fusion(data["train"], used["train"][1], data["val"], used["val"][1], modalities=modalities,
                        num_classes=split.num_classes, seed=cfg.seed, **kwargs)
    seconds = time.perf_counter() - t0
    save_fusion(fitted, tmp, num_classes=split.num_classes, hidden=cfg.hidden, dropout=cfg.dropout)
    probs = {s: fitted.predict_proba(data[s]) for s in ("val", "test")}
    log(f"fusion: {'+'.join(modalities)}, epoch {fitted.best_epoch} chosen on val (balanced accuracy "
        f"{fitted.best_val_balanced_accuracy:.4f}), {len(used['train'][1])} training galaxies, {seconds:.1f} s")
    info: dict[str, Any] = {
        "modalities": modalities, "modalities_missing_for_all": absent, "coverage": coverage,
        "encoder": cfg.encoder, "embeddings_table": table, "history": fitted.history,
        "best_epoch": fitted.best_epoch, "best_val_balanced_accuracy": fitted.best_val_balanced_accuracy,
        "seconds": seconds, "n_train_used": len(used["train"][1]), "input_dims": fitted.pre.dims(),
        "photometry_sources": sources, "photometry_columns": data["train"].columns["photometry"],
        "morphometrics_columns": data["train"].columns["morphometrics"],
    }
    if cfg.ablate:
        t1 = time.perf_counter()
        result = ablation(data["train"], used["train"][1], data["val"], used["val"][1], data["test"], used["test"][1],
                          modalities=modalities, num_classes=split.num_classes, seed=cfg.seed,
                          n_boot=cfg.gate_resamples, fitted={tuple(modalities): probs["test"].argmax(axis=1)},
                          **kwargs)
        result["seconds"] = time.perf_counter() - t1
        result["modalities_missing_for_all"] = absent
        info["ablation"] = result
        log("fusion ablation (test):\n" + ablation_table_md(result))
    origin = embeddings_provenance(wh, table) if "embeddings" in modalities else WeightsProvenance(
        WeightsOrigin.SCRATCH, via="no embeddings modality")
    if origin.is_random:
        log(f"fusion: the embeddings in {table} come from a RANDOM-WEIGHTS encoder")
    return probs, used, origin, info
