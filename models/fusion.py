"""Late fusion of embeddings, morphometrics and photometry: one small MLP per modality and a fusion head.

Late (decision-level) fusion in the sense of Baltrusaitis, Ahuja & Morency (2019, "Multimodal Machine
Learning: A Survey and Taxonomy", IEEE TPAMI 41, 423): each modality has its own branch
(``Linear -> GELU -> Dropout -> Linear -> GELU``), the branch outputs are multiplied by the galaxy's
missing-modality mask (a missing modality contributes zeros) and concatenated with the mask itself,
and a linear head (after dropout) gives the logits. The input of :class:`FusionNet` is one tensor (the
preprocessed features of every branch, then one mask column per branch), so MC dropout
(:mod:`models.mc_dropout`) runs on it like on the image models.

Preprocessing (:class:`FusionPreprocessor`, fitted on the training galaxies only): per modality, the
medians of the training galaxies that have it impute every NaN (a whole missing modality, or single
NaN values of a present one); each column that had NaNs among the training galaxies gets a 0/1
missing indicator (morphometrics and photometry only); then every column is standardised with the
training mean and standard deviation. During training a present modality is dropped at random
(``modality_dropout``, as "ModDrop", Neverova et al. 2016, IEEE TPAMI 38, 1692) so the head learns to
predict without it.

Training: AdamW at a constant rate, class-balanced cross entropy (:func:`models.loop.class_weights`),
mini-batch epochs on :func:`models.loop.train_loop` with early stopping on the validation balanced
accuracy (the same rule as every other model), seeded.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.fusion_data import MODALITIES, Modalities
from models.loop import LoopConfig, class_weights, train_loop
from models.metrics import balanced_accuracy

__all__ = ["FusionFit", "FusionNet", "FusionPreprocessor", "ablation", "ablation_table_md", "fit_fusion",
           "load_fusion", "missing_modalities_all", "save_fusion"]


class FusionNet(nn.Module):
    """One MLP branch per modality, masked, concatenated with the mask, and a linear head.

    Parameters
    ----------
    dims : dict
        Modality -> its preprocessed input width (in input order).
    num_classes : int
    hidden : int
    dropout : float
    """

    def __init__(self, dims: dict[str, int], num_classes: int, hidden: int = 64, dropout: float = 0.2) -> None:
        super().__init__()
        self.dims = dict(dims)
        self.branches = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, hidden),
                             nn.GELU()) for m, d in self.dims.items()})
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(len(dims) * (hidden + 1), num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts, start = [], 0
        n_mod = len(self.dims)
        mask = x[:, x.shape[1] - n_mod:]
        for k, (m, d) in enumerate(self.dims.items()):
            parts.append(self.branches[m](x[:, start:start + d]) * mask[:, k:k + 1])
            start += d
        return self.head(torch.cat([*parts, mask], dim=1))


@dataclass
class FusionPreprocessor:
    """Train-fitted imputation (medians), missing indicators and standardisation, per modality."""

    modalities: tuple[str, ...]
    width: dict[str, int] = field(default_factory=dict)
    median: dict[str, np.ndarray] = field(default_factory=dict)
    indicator: dict[str, np.ndarray] = field(default_factory=dict)
    mean: dict[str, np.ndarray] = field(default_factory=dict)
    scale: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def fit(cls, data: Modalities, modalities: Sequence[str]) -> FusionPreprocessor:
        """Fit on the training galaxies ``data`` (each modality from the rows that have it)."""
        pre = cls(tuple(modalities))
        for m in pre.modalities:
            x = data.x[m][data.present[m]]
            pre.width[m] = data.x[m].shape[1]
            with np.errstate(all="ignore"):
                med = np.nanmedian(x, axis=0) if len(x) else np.zeros(pre.width[m])
            pre.median[m] = np.where(np.isfinite(med), med, 0.0)
            pre.indicator[m] = (np.isnan(x).any(axis=0) if m != "embeddings" and len(x)
                                else np.zeros(pre.width[m], bool))
            filled = pre._impute(m, x)
            pre.mean[m] = filled.mean(axis=0) if len(x) else np.zeros(filled.shape[1])
            sd = filled.std(axis=0) if len(x) else np.ones(filled.shape[1])
            pre.scale[m] = np.where(sd > 1e-12, sd, 1.0)
        return pre

    def _impute(self, m: str, x: np.ndarray) -> np.ndarray:
        nan = np.isnan(x)
        filled = np.where(nan, self.median[m][None, :], x)
        return np.concatenate([filled, nan[:, self.indicator[m]].astype(np.float64)], axis=1)

    def dims(self) -> dict[str, int]:
        """Preprocessed width per modality (features plus indicators)."""
        return {m: self.width[m] + int(self.indicator[m].sum()) for m in self.modalities}

    def transform(self, data: Modalities) -> tuple[np.ndarray, np.ndarray]:
        """``(N, sum dims + n_modalities)`` float32 net input and the ``(N, n_modalities)`` presence mask."""
        n = len(data.galaxy_ids)
        blocks, mask = [], []
        for m in self.modalities:
            x, present = data.x[m], data.present[m].copy()
            if x.shape[1] != self.width[m]:  # the modality's table is gone: all missing
                x, present = np.full((n, self.width[m]), np.nan), np.zeros(n, bool)
            x = np.where(present[:, None], x, np.nan)
            blocks.append((self._impute(m, x) - self.mean[m]) / self.scale[m])
            mask.append(present)
        pres = np.stack(mask, axis=1) if mask else np.zeros((n, 0), bool)
        return np.concatenate([*blocks, pres.astype(np.float64)], axis=1).astype(np.float32), pres

    def arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for ``np.savez`` (no pickle)."""
        out: dict[str, np.ndarray] = {"modalities": np.asarray(self.modalities)}
        for m in self.modalities:
            out[f"{m}.width"] = np.asarray(self.width[m])
            for key in ("median", "indicator", "mean", "scale"):
                out[f"{m}.{key}"] = getattr(self, key)[m]
        return out

    @classmethod
    def from_arrays(cls, z: Any) -> FusionPreprocessor:
        pre = cls(tuple(str(m) for m in z["modalities"]))
        for m in pre.modalities:
            pre.width[m] = int(z[f"{m}.width"])
            for key in ("median", "indicator", "mean", "scale"):
                getattr(pre, key)[m] = np.asarray(z[f"{m}.{key}"])
        return pre


@dataclass
class FusionFit:
    """A fitted fusion model: the net (eval mode), its preprocessor and its training record."""

    net: FusionNet
    pre: FusionPreprocessor
    history: list[dict[str, float]]
    best_epoch: int
    best_val_balanced_accuracy: float

    def predict_proba(self, data: Modalities) -> np.ndarray:
        """``(N, K)`` float32 class probabilities."""
        x, _ = self.pre.transform(data)
        self.net.eval()
        with torch.no_grad():
            return torch.softmax(self.net(torch.from_numpy(x)), dim=1).numpy().astype(np.float32)


def fit_fusion(train: Modalities, y_train: np.ndarray, val: Modalities, y_val: np.ndarray, *,
               modalities: Sequence[str], num_classes: int, seed: int = 0, hidden: int = 64, dropout: float = 0.2,
               epochs: int = 150, patience: int = 20, lr: float = 2e-3, weight_decay: float = 1e-2,
               batch_size: int = 128, modality_dropout: float = 0.1) -> FusionFit:
    """Fit a :class:`FusionNet` on ``modalities`` of the training galaxies; epoch chosen on val balanced accuracy.

    Raises
    ------
    ValueError
        No modality given.
    """
    if not modalities:
        raise ValueError("fusion needs at least one modality")
    threads = torch.get_num_threads()
    # one thread: these small matrix products are latency-bound, and two threads on a shared 2-core
    # machine made a fit ~12x slower (the probe's threadpool_limits(1), same reason)
    torch.set_num_threads(1)
    try:
        return _fit(train, y_train, val, y_val, modalities=modalities, num_classes=num_classes, seed=seed,
                    hidden=hidden, dropout=dropout, epochs=epochs, patience=patience, lr=lr,
                    weight_decay=weight_decay, batch_size=batch_size, modality_dropout=modality_dropout)
    finally:
        torch.set_num_threads(threads)


def _fit(train: Modalities, y_train: np.ndarray, val: Modalities, y_val: np.ndarray, *, modalities: Sequence[str],
         num_classes: int, seed: int, hidden: int, dropout: float, epochs: int, patience: int, lr: float,
         weight_decay: float, batch_size: int, modality_dropout: float) -> FusionFit:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pre = FusionPreprocessor.fit(train, modalities)
    net = FusionNet(pre.dims(), num_classes, hidden=hidden, dropout=dropout)
    counts = np.bincount(y_train, minlength=num_classes)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(counts))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    n_mod = len(pre.modalities)
    x_train, y_t = torch.from_numpy(pre.transform(train)[0]), torch.from_numpy(np.asarray(y_train, np.int64))
    x_val = torch.from_numpy(pre.transform(val)[0])

    def batches(epoch: int) -> Iterator[torch.Tensor]:
        order = rng.permutation(len(y_t))
        for i in range(0, len(order), batch_size):
            yield torch.from_numpy(order[i:i + batch_size])

    def step(idx: torch.Tensor) -> tuple[torch.Tensor, int]:
        xb = x_train[idx].clone()
        if modality_dropout > 0 and n_mod > 1:
            drop = torch.from_numpy(rng.random((len(idx), n_mod)) < modality_dropout)
            xb[:, xb.shape[1] - n_mod:] *= (~drop).float()
        return loss_fn(net(xb), y_t[idx]), len(idx)

    def score(epoch: int) -> dict[str, float]:
        net.eval()
        with torch.no_grad():
            val_pred = net(x_val).argmax(dim=1).numpy()
        return {"val_balanced_accuracy": balanced_accuracy(y_val, val_pred) if len(y_val) else 0.0}

    loop = LoopConfig(epochs=epochs, patience=patience, schedule="constant", select="val_balanced_accuracy")
    out = train_loop(net, opt, batches, step, loop, steps_per_epoch=max(1, math.ceil(len(y_t) / batch_size)),
                     score=score)
    net.eval()
    return FusionFit(net, pre, out.history, out.best_epoch, out.best_score)


def save_fusion(fit: FusionFit, directory: Path, *, num_classes: int, hidden: int, dropout: float) -> None:
    """Write ``fusion.pt`` (state dict) and ``fusion_preprocess.npz`` (plain arrays) into ``directory``."""
    torch.save({"state": fit.net.state_dict(), "dims": fit.net.dims, "num_classes": num_classes, "hidden": hidden,
                "dropout": dropout}, directory / "fusion.pt")
    np.savez(directory / "fusion_preprocess.npz", **fit.pre.arrays())


def load_fusion(directory: Path) -> tuple[FusionNet, FusionPreprocessor]:
    """The net (eval mode) and preprocessor written by :func:`save_fusion`."""
    blob = torch.load(directory / "fusion.pt", map_location="cpu", weights_only=True)
    net = FusionNet(blob["dims"], blob["num_classes"], hidden=blob["hidden"], dropout=blob["dropout"])
    net.load_state_dict(blob["state"])
    net.eval()
    with np.load(directory / "fusion_preprocess.npz", allow_pickle=False) as z:
        pre = FusionPreprocessor.from_arrays(z)
    return net, pre


def _quant(x: np.ndarray, lo: float, hi: float) -> list[float]:
    return [float(v) for v in np.nanquantile(x, [lo, hi])]


def _subset_predictions(args: tuple[Modalities, np.ndarray, Modalities, np.ndarray, Modalities, tuple[str, ...],
                                    int, int, dict[str, Any]]) -> np.ndarray:
    """Test predictions of one subset's :func:`fit_fusion`: what a pool worker of :func:`ablation` runs."""
    train, y_train, val, y_val, test, subset, num_classes, seed, fit_kwargs = args
    f = fit_fusion(train, y_train, val, y_val, modalities=subset, num_classes=num_classes, seed=seed, **fit_kwargs)
    return f.predict_proba(test).argmax(axis=1)


def ablation(train: Modalities, y_train: np.ndarray, val: Modalities, y_val: np.ndarray, test: Modalities,
             y_test: np.ndarray, *, modalities: Sequence[str], num_classes: int, seed: int = 0, n_boot: int = 2000,
             fitted: dict[tuple[str, ...], np.ndarray] | None = None, workers: int | None = None,
             **fit_kwargs: Any) -> dict[str, Any]:
    """Every non-empty subset of ``modalities``: test balanced accuracy, its CI, and the paired difference to the best single.

    Each subset is a :func:`fit_fusion` of its own (same seed, same galaxies). The test galaxies are
    resampled ``n_boot`` times (:func:`models.baselines.bootstrap_balanced_accuracy`: the same draws for
    every subset, so differences are paired); intervals are the 2.5th and 97.5th percentiles. A gain
    over the best single modality is claimed only where the difference's interval excludes zero.

    Parameters
    ----------
    fitted : dict, optional
        Subset -> test predictions already computed (the full model), not refitted.
    workers : int, optional
        Processes fitting the subsets side by side (each fit is single-threaded and seeded, so the
        predictions are the same); default the step's cores (:func:`features.parallel.step_cores`) from
        :data:`features.parallel.POOL_MIN_ROWS` galaxies, one below (a worker's start costs more there).

    Returns
    -------
    dict
        ``rows`` (one per subset: ``modalities``, ``balanced_accuracy``, ``ci95``, and for multi-modality
        subsets ``difference_vs_best_single``, ``difference_ci95``, ``gain`` True/False), ``best_single``,
        ``n_test``, ``n_boot``, ``rule``.
    """
    from features.parallel import ordered_pool, pool_workers
    from models.baselines import bootstrap_balanced_accuracy

    fitted = dict(fitted or {})
    subsets = [s for r in range(1, len(modalities) + 1) for s in itertools.combinations(modalities, r)]
    todo = [s for s in subsets if s not in fitted]
    n_rows = len(np.asarray(y_train)) + len(np.asarray(y_val)) + len(np.asarray(y_test))
    with ordered_pool(pool_workers(workers, n_rows), preload=["models.fusion"]) as pmap:
        made = pmap(_subset_predictions, [(train, y_train, val, y_val, test, s, num_classes, seed, fit_kwargs)
                                          for s in todo])
    new = dict(zip(todo, made))
    preds = {s: np.asarray(fitted[s]) if s in fitted else new[s] for s in subsets}
    keys = {"+".join(s): s for s in preds}
    point, reps = bootstrap_balanced_accuracy(y_test, {k: preds[s] for k, s in keys.items()}, n_boot=n_boot,
                                              seed=seed)
    singles = [k for k, s in keys.items() if len(s) == 1]
    best = max(singles, key=lambda k: point[k])
    rows = []
    for k, s in keys.items():
        row: dict[str, Any] = {"modalities": k, "n_modalities": len(s), "balanced_accuracy": point[k],
                               "ci95": _quant(reps[k], 0.025, 0.975)}
        if k != best:
            diff = reps[k] - reps[best]
            ci = _quant(diff, 0.025, 0.975)
            row.update({"difference_vs_best_single": point[k] - point[best], "difference_ci95": ci,
                        "gain": bool(ci[0] > 0), "loss": bool(ci[1] < 0)})
        rows.append(row)
    return {"rows": rows, "best_single": best, "n_test": len(y_test), "n_boot": int(n_boot),
            "rule": ("a subset gains over the best single modality only where the 95% paired-bootstrap interval of "
                     "its difference excludes zero (lower bound > 0)")}


def ablation_table_md(result: dict[str, Any]) -> str:
    """The ablation as a markdown table, with the rule and the verdict in words under it."""
    lines = ["| modalities | test balanced accuracy [95% CI] | difference vs best single [95% CI] | verdict |",
             "|---|---|---|---|"]
    for r in result["rows"]:
        lo, hi = r["ci95"]
        if "difference_ci95" in r:
            dlo, dhi = r["difference_ci95"]
            diff = f"{r['difference_vs_best_single']:+.3f} [{dlo:+.3f}, {dhi:+.3f}]"
            verdict = "gain (CI excludes 0)" if r["gain"] else ("worse (CI excludes 0)" if r["loss"]
                                                                else "no claim (CI includes 0)")
        else:
            diff, verdict = "-", "best single modality"
        lines.append(f"| {r['modalities']} | {r['balanced_accuracy']:.3f} [{lo:.3f}, {hi:.3f}] | {diff} | {verdict} |")
    gains = [r["modalities"] for r in result["rows"] if r.get("gain")]
    lines.append("")
    lines.append(f"{result['n_test']} test galaxies, {result['n_boot']} paired bootstrap resamples; {result['rule']}. "
                 + (f"Gain claimed for: {', '.join(gains)}." if gains else
                    f"No subset's gain over {result['best_single']} excludes zero: no gain is claimed."))
    return "\n".join(lines)


def missing_modalities_all(data: Modalities) -> list[str]:
    """Modalities no galaxy of ``data`` has."""
    return [m for m in MODALITIES if not data.present[m].any()]
