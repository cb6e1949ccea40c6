"""Predictions of registered model versions for any galaxies, and the ``predictions`` table rows.

A registered version is rebuilt from its artefact directory alone: the architecture from the stored
config (no pretrained weights needed: the trained state dict replaces them) plus ``model.pt``, or the
probe's ``probe.npz``. :func:`predict_all` fills the ``predictions`` table for every galaxy and every
registered model version that passed its gate (the registry's ``gate_passed``: the model beat the
same-run baselines on its test split), computing only the (galaxy, version) pairs that are missing. A
version that failed its gate is left out and said so; the others are written all the same.

The ``split`` of each prediction is the one the model was trained on: its split set read at the
registry's ``split_version`` and checked against its ``split_hash``, never the split set of that name
today (it may have been rebuilt since). When that version is gone (vacuumed) and today's set differs,
``split`` is left null and the summary says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from features.parallel import step_cores
from models.config import RunConfig, config_from_json, resolve_device
from models.errors import MissingInputError
from stages.versions import get_model, list_models
from warehouse.sqltext import quote

__all__ = ["Predictor", "load_predictor", "predict_all", "prediction_rows", "training_split"]

LogFn = Callable[[str], None]


@dataclass
class Predictor:
    """A trained model version ready to predict.

    Attributes
    ----------
    name : str
    version : int
    kind : {"images", "embeddings"}
    classes : list of int
        Label value of each output.
    names : list of str
    config : RunConfig
        The model's own config class (:attr:`models.registry.ModelSpec.config_cls`).
    split_name : str
    """

    name: str
    version: int
    kind: str
    classes: list[int]
    names: list[str]
    config: RunConfig
    split_name: str
    split_hash: str | None = None
    split_version: int | None = None
    temperature: float | None = None
    """Fitted on val at training (``metrics_json["calibration"]``); None for versions trained before."""
    conformal: Any = None
    """The LAC :class:`models.conformal.Conformalizer` of ``conformal.joblib``; None for versions trained before."""
    preprocess: Any = None
    """Fusion only: its :class:`models.fusion.FusionPreprocessor`."""
    fusion_missing: list[list[str]] | None = None
    """Fusion only: per galaxy of the last :meth:`predict`, the modalities it lacked (imputed)."""
    _model: Any = None

    def available(self, wh: Any) -> set[str] | None:
        """Galaxies this model can predict (None: every galaxy with an image)."""
        if self.kind == "embeddings":
            from models.data import embeddings_table

            table = embeddings_table(self.config.encoder)
            if not wh.exists(table):
                return set()
            return set(wh.read(table, columns=["galaxy_id"]).column("galaxy_id").to_pylist())
        return None

    def predict(self, wh: Any, galaxy_ids: Sequence[str], *, batch_size: int = 64,
                device: str = "auto") -> np.ndarray:
        """``(N, K)`` float32 class probabilities for ``galaxy_ids`` (in order)."""
        ids = list(galaxy_ids)
        if not ids:
            return np.zeros((0, len(self.classes)), np.float32)
        if self.kind == "embeddings":
            from models.data import embeddings_table
            from stages.model_inputs import read_embeddings

            x = read_embeddings(wh, embeddings_table(self.config.encoder), ids)
            return self._model.predict_proba(x).astype(np.float32)
        if self.kind == "fusion":
            import torch

            x = self._fusion_input(wh, ids)
            with torch.no_grad():
                return torch.softmax(self._model(torch.from_numpy(x)), dim=1).numpy().astype(np.float32)
        from models.data import GalaxyImageDataset, make_loader
        from models.fit import evaluate
        from stages.trainers import input_stamp

        dev = resolve_device(device)
        self._model.to(dev)
        ds = GalaxyImageDataset(wh, ids, None, img_size=self.config.img_size, cache_mb=0,
                                stamp=input_stamp(self.config), threads=step_cores())
        probs, _ = evaluate(self._model, make_loader(ds, batch_size=batch_size, shuffle=False), dev,
                            amp=self.config.amp)
        return probs

    def _fusion_input(self, wh: Any, ids: Sequence[str]) -> np.ndarray:
        """The fused net input of ``ids``; keeps each galaxy's missing modalities in :attr:`fusion_missing`."""
        from stages.model_inputs import read_modalities

        data = read_modalities(wh, ids, self.config.encoder)
        x, present = self.preprocess.transform(data)
        used = list(self.preprocess.modalities)
        self.fusion_missing = [[m for m in data.x if m not in used] +
                               [m for k, m in enumerate(used) if not present[i, k]] for i in range(len(ids))]
        return x

    def fusion_rows(self, galaxy_ids: Sequence[str]) -> dict[str, list[Any]]:
        """``fusion_inputs`` rows of the galaxies last predicted: missing modalities and ``Flag.MODALITY_MISSING``."""
        from features.flags import Flag

        missing = self.fusion_missing
        return {"galaxy_id": list(galaxy_ids), "model_name": [self.name] * len(missing),
                "model_version": [self.version] * len(missing), "missing_modalities": missing,
                "flags": [int(Flag.MODALITY_MISSING) if m else 0 for m in missing]}

    def mc_dropout_status(self) -> str | None:
        """None when MC dropout applies; else why not (stored with the null entropy / mutual information)."""
        if self.kind == "embeddings":
            return f"no MC dropout: {self.name} is a linear probe on stored embeddings (no dropout layer)"
        from models.mc_dropout import dropout_layers

        if not dropout_layers(self._model):
            return f"no MC dropout: {self.name} has no dropout layer with a positive rate"
        return None

    def mc_dropout(self, wh: Any, galaxy_ids: Sequence[str], *, passes: int = 8, batch_size: int = 64,
                   device: str = "auto", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Predictive entropy and mutual information per galaxy over ``passes`` MC-dropout passes."""
        from models.data import GalaxyImageDataset, make_loader, prepare_batch
        from models.mc_dropout import entropy, mc_dropout_probs, mutual_information
        from stages.trainers import input_stamp

        dev = resolve_device(device)
        self._model.to(dev)
        if self.kind == "fusion":
            import torch

            x = torch.from_numpy(self._fusion_input(wh, galaxy_ids)).to(dev)
            samples = mc_dropout_probs(self._model, (x[i:i + batch_size] for i in range(0, len(x), batch_size)),
                                       passes, seed=seed)
            return entropy(samples.mean(axis=0)), mutual_information(samples)
        ds = GalaxyImageDataset(wh, list(galaxy_ids), None, img_size=self.config.img_size, cache_mb=0,
                                stamp=input_stamp(self.config), threads=step_cores())
        batches = (prepare_batch(x, dev) for x, _ in make_loader(ds, batch_size=batch_size, shuffle=False))
        samples = mc_dropout_probs(self._model, batches, passes, seed=seed)
        return entropy(samples.mean(axis=0)), mutual_information(samples)


def load_predictor(wh: Any, name: str, version: int | None = None) -> Predictor:
    """Rebuild a registered model version from its artefact directory.

    Raises
    ------
    MissingInputError
        Unknown model or version, or its artefact directory is missing.
    """
    row = get_model(wh, name, version)
    cfg = config_from_json(row["name"], row["config_json"])
    classes = json.loads(row["classes_json"])
    path = Path(row["artefact_path"])
    conformal = None
    if (path / "conformal.joblib").is_file():
        import joblib

        conformal = joblib.load(path / "conformal.joblib").get("lac")
    pred = Predictor(name=row["name"], version=int(row["version"]), kind=row["kind"],
                     classes=[c["label"] for c in classes], names=[c["name"] for c in classes],
                     config=cfg, split_name=row["split_name"], split_hash=row.get("split_hash"),
                     split_version=row.get("split_version"),
                     temperature=json.loads(row["metrics_json"]).get("calibration", {}).get("temperature"),
                     conformal=conformal)
    if row["kind"] == "embeddings":
        from models.probe import LinearProbe

        file = path / "probe.npz"
        if not file.is_file():
            raise MissingInputError(f"{name} v{row['version']}: artefact {file} is missing")
        pred._model = LinearProbe.load(file)
        return pred
    if row["kind"] == "fusion":
        from models.fusion import load_fusion

        if not (path / "fusion.pt").is_file():
            raise MissingInputError(f"{name} v{row['version']}: artefact {path / 'fusion.pt'} is missing")
        pred._model, pred.preprocess = load_fusion(path)
        return pred
    import torch

    from models.registry import build_model

    file = path / "model.pt"
    if not file.is_file():
        raise MissingInputError(f"{name} v{row['version']}: artefact {file} is missing")
    model, _ = build_model(name, len(classes), cfg, pretrained=False)
    model.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    model.eval()
    pred._model = model
    return pred


def prediction_rows(pred: Predictor, galaxy_ids: Sequence[str], probs: np.ndarray,
                    split_of: dict[str, str] | None = None,
                    mc: tuple[np.ndarray, np.ndarray] | None = None, mc_note: str | None = None,
                    ) -> dict[str, list[Any]]:
    """Columns of ``predictions`` rows for one model version (``mc``: entropy and mutual information)."""
    from models.calibration import apply_temperature, log_probs

    k = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    split_of = split_of or {}
    t = pred.temperature
    calibrated = (apply_temperature(log_probs(probs), t).astype(np.float32) if t is not None and len(probs)
                  else None)
    none: list[Any] = [None] * len(galaxy_ids)
    sets = marginal = None
    if pred.conformal is not None and calibrated is not None:
        sets, marginal = pred.conformal.class_sets(calibrated), pred.conformal.marginal_sets(calibrated)
    return {
        "galaxy_id": list(galaxy_ids),
        "model_name": [pred.name] * len(galaxy_ids),
        "model_version": [pred.version] * len(galaxy_ids),
        "probabilities": [p.astype(np.float32).tolist() for p in probs],
        "predicted_label": [int(pred.classes[i]) for i in k],
        "predicted_name": [pred.names[i] for i in k],
        "split": [split_of.get(g) for g in galaxy_ids],
        "split_hash": [pred.split_hash if split_of else None] * len(galaxy_ids),
        "temperature": [t] * len(galaxy_ids),
        "calibrated_probabilities": [p.tolist() for p in calibrated] if calibrated is not None else none,
        "conformal_set": [[pred.names[j] for j in np.flatnonzero(r)] for r in sets] if sets is not None else none,
        "conformal_set_size": [int(r.sum()) for r in sets] if sets is not None else none,
        "marginal_set": ([[pred.names[j] for j in np.flatnonzero(r)] for r in marginal] if marginal is not None
                         else none),
        "predictive_entropy": [float(v) for v in mc[0]] if mc is not None else none,
        "mutual_information": [float(v) for v in mc[1]] if mc is not None else none,
        "mc_dropout": [mc_note] * len(galaxy_ids),
    }


def training_split(wh: Any, pred: Predictor) -> tuple[dict[str, str], str]:
    """``galaxy_id -> split`` of the split set ``pred`` was trained on, and how it was found.

    Read at the recorded ``split_version`` and checked against ``split_hash``; when that version can no
    longer be read, today's set of the same name is used only if its content hash is the same.
    Returns an empty mapping (and the reason) when neither matches.
    """
    from models.splits import split_content_hash

    if not wh.exists("splits"):
        return {}, "no splits table"
    where = f"split_name = {quote(pred.split_name)}"
    cols = ["galaxy_id", "split", "label"]
    attempts = [("recorded version", pred.split_version)] if pred.split_version is not None else []
    attempts.append(("current version", None))
    for how, version in attempts:
        try:
            t = wh.read("splits", version=version, where=where, columns=cols).to_pydict()
        except (OSError, ValueError, RuntimeError):
            continue  # the recorded version was vacuumed
        if not t["galaxy_id"]:
            continue
        if pred.split_hash and split_content_hash(t["galaxy_id"], t["split"], t["label"]) != pred.split_hash:
            continue
        return dict(zip(t["galaxy_id"], t["split"])), how
    return {}, (f"split set {pred.split_name} #{pred.split_hash} of v{pred.version} is no longer readable and "
                "today's set of that name differs: split left null")


def predict_all(
    wh: Any,
    *,
    run_id: str | None = None,
    log: LogFn | None = None,
    models: Sequence[str] | None = None,
    batch_size: int = 64,
    chunk: int = 2048,
    device: str = "auto",
    gated: bool = True,
    mc_passes: int = 8,
) -> dict[str, dict[str, Any]]:
    """Predict every galaxy with every registered model version that passed its gate; write only what is missing.

    Parameters
    ----------
    wh : warehouse.Warehouse
    run_id : str, optional
    log : callable, optional
    models : sequence of str, optional
        Restrict to these model names.
    batch_size, chunk : int
        Inference batch size; galaxies written per upsert.
    device : str
    gated : bool
        Leave out versions whose gate failed (default); ``False`` predicts with every version.
    mc_passes : int
        MC-dropout passes per galaxy (:mod:`models.mc_dropout`) for models with dropout; 0 turns it off
        (then ``mc_dropout`` says so and entropy / mutual information stay null).

    Returns
    -------
    dict
        Per ``"<name> v<version>"``: ``written``, ``already``, ``unavailable`` (e.g. no embedding) and
        ``gate`` (``"passed"`` or ``"failed"``); a version left out by its gate has ``left_out`` True and
        nothing written.
    """
    import pyarrow as pa

    log = log or (lambda message: None)
    if not wh.exists("galaxies"):
        raise MissingInputError(f"table 'galaxies' does not exist in {wh.root}")
    all_ids = wh.read("galaxies", columns=["galaxy_id"]).column("galaxy_id").to_pylist()
    summary: dict[str, dict[str, Any]] = {}
    for row in list_models(wh):
        if models is not None and row["name"] not in models:
            continue
        if row["kind"] == "segmentation":  # per-pixel masks: the masks table, written by stages.segmentation
            continue
        key = f"{row['name']} v{row['version']}"
        verdict = "passed" if row["gate_passed"] else "failed"
        if gated and not row["gate_passed"]:
            summary[key] = {"written": 0, "already": 0, "unavailable": 0, "gate": verdict, "left_out": True}
            log(f"predictions {key}: left out, its gate failed "
                f"({json.loads(row['gate_json']).get('reason', 'no reason recorded')})")
            continue
        done: set[str] = set()
        if wh.exists("predictions"):
            done = set(wh.read("predictions", columns=["galaxy_id"],
                               where=f"model_name = {quote(row['name'])} AND model_version = {int(row['version'])}")
                       .column("galaxy_id").to_pylist())
        todo = [g for g in all_ids if g not in done]
        if not todo:
            summary[key] = {"written": 0, "already": len(done), "unavailable": 0, "gate": verdict,
                            "left_out": False}
            continue
        pred = load_predictor(wh, row["name"], int(row["version"]))
        avail = pred.available(wh)
        ready = todo if avail is None else [g for g in todo if g in avail]
        split_of, split_from = training_split(wh, pred)
        if not split_of:
            log(f"predictions {key}: {split_from}")
        status = pred.mc_dropout_status() if mc_passes >= 2 else "no MC dropout: turned off (mc_passes < 2)"
        note = status or f"MC dropout, {mc_passes} passes (dropout on, batch norm eval)"
        for i in range(0, len(ready), chunk):
            ids = ready[i:i + chunk]
            probs = pred.predict(wh, ids, batch_size=batch_size, device=device)
            mc = None if status else pred.mc_dropout(wh, ids, passes=mc_passes, batch_size=batch_size,
                                                     device=device, seed=pred.config.seed)
            wh.upsert("predictions", pa.table(prediction_rows(pred, ids, probs, split_of, mc, note)), run_id=run_id)
            if pred.kind == "fusion":
                wh.upsert("fusion_inputs", pa.table(pred.fusion_rows(ids)), run_id=run_id)
        summary[key] = {"written": len(ready), "already": len(done), "unavailable": len(todo) - len(ready),
                        "gate": verdict, "left_out": False, "split_from": split_from, "mc_dropout": note}
        log(f"predictions {key}: {len(ready)} written, {len(done)} already there, "
            f"{len(todo) - len(ready)} without input")
    return summary
