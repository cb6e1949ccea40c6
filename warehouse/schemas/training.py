"""Tables of the training stage (registered on import): ``splits``, ``models``, ``predictions``.

* ``splits`` holds one row per (galaxy, split set). A split set (``split_name``, e.g.
  ``label-s0-f70.15.15``) is a train/val/test assignment for one label column, split seed (``seed``) and
  fractions, all three in the name; duplicate groups never straddle two splits.
* ``models`` is the model registry: one row per training run (``name``, ``version``), with the config,
  the metrics, the artefact directory and the Lance version of every table it read, so the exact training
  set can be read back with time travel; its gate against the same-run baselines (``gate_passed``, and
  every number behind it in ``gate_json``: only versions that passed get predictions) and the classes the
  rare-class rule left out of its label set (``excluded_classes_json``: name and galaxies per split). The
  split set it trained on is pinned by ``split_version`` (the Lance version of ``splits`` it read) and
  ``split_hash`` (:func:`models.splits.split_content_hash`); ``seed`` is the training seed and
  ``split_seed`` the split's. ``test_balanced_accuracy_low`` / ``_high``: its 95% bootstrap interval.
* ``predictions`` holds, per galaxy and model version, the class probabilities and the predicted class,
  and the ``split_hash`` of the split set its ``split`` column comes from (the model's, read at
  ``split_version``; never a split set rebuilt since); ``temperature`` (fitted on the model's val split
  by NLL, :mod:`models.calibration`) and ``calibrated_probabilities`` = ``softmax(log p / T)``; the
  conformal sets at the model's alpha (LAC score, :mod:`models.conformal`): ``conformal_set``
  (class-conditional, class names) and its ``conformal_set_size``, and the ``marginal_set``;
  ``predictive_entropy`` and ``mutual_information`` over MC-dropout passes (:mod:`models.mc_dropout`),
  null for a model without dropout, with the reason in ``mc_dropout``.
* ``fusion_inputs`` holds, per galaxy and ``fusion`` version predicted, the modalities it lacked
  (imputed) and ``flags`` (``Flag.MODALITY_MISSING`` when any).
"""

from __future__ import annotations

import pyarrow as pa

from warehouse.schemas import TableSpec, register

SPLITS = register(
    TableSpec(
        name="splits",
        keys=("galaxy_id", "split_name"),
        description="train/val/test assignment per galaxy and split set (stratified, duplicate groups kept together)",
        columns=pa.schema(
            [
                pa.field("galaxy_id", pa.string(), nullable=False),
                pa.field("split_name", pa.string(), nullable=False),
                pa.field("split", pa.string(), nullable=False),
                pa.field("label_column", pa.string(), nullable=False),
                pa.field("label", pa.int16(), nullable=False),
                pa.field("label_name", pa.string()),
                pa.field("seed", pa.int64(), nullable=False),
                pa.field("duplicate_group", pa.string()),
            ]
        ),
    )
)

MODELS = register(
    TableSpec(
        name="models",
        keys=("name", "version"),
        description="model registry: one row per training run with config, metrics, artefact and input table versions",
        columns=pa.schema(
            [
                pa.field("name", pa.string(), nullable=False),
                pa.field("version", pa.int32(), nullable=False),
                pa.field("kind", pa.string(), nullable=False),
                pa.field("label_column", pa.string(), nullable=False),
                pa.field("split_name", pa.string(), nullable=False),
                pa.field("classes_json", pa.string(), nullable=False),
                pa.field("config_json", pa.string(), nullable=False),
                pa.field("seed", pa.int64(), nullable=False),
                pa.field("split_seed", pa.int64()),
                pa.field("split_version", pa.int64()),
                pa.field("split_hash", pa.string()),
                pa.field("metrics_json", pa.string(), nullable=False),
                pa.field("test_balanced_accuracy", pa.float64()),
                pa.field("test_balanced_accuracy_low", pa.float64()),
                pa.field("test_balanced_accuracy_high", pa.float64()),
                pa.field("gate_passed", pa.bool_(), nullable=False),
                pa.field("gate_json", pa.string(), nullable=False),
                pa.field("excluded_classes_json", pa.string(), nullable=False),
                pa.field("artefact_path", pa.string(), nullable=False),
                pa.field("table_versions_json", pa.string(), nullable=False),
                pa.field("weights_origin", pa.string(), nullable=False),
                pa.field("train_seconds", pa.float64()),
            ]
        ),
    )
)

PREDICTIONS = register(
    TableSpec(
        name="predictions",
        keys=("galaxy_id", "model_name", "model_version"),
        description="class probabilities and predicted class per galaxy and model version",
        columns=pa.schema(
            [
                pa.field("galaxy_id", pa.string(), nullable=False),
                pa.field("model_name", pa.string(), nullable=False),
                pa.field("model_version", pa.int32(), nullable=False),
                pa.field("probabilities", pa.list_(pa.float32()), nullable=False),
                pa.field("predicted_label", pa.int16(), nullable=False),
                pa.field("predicted_name", pa.string()),
                pa.field("split", pa.string()),
                pa.field("split_hash", pa.string()),
                pa.field("temperature", pa.float64()),
                pa.field("calibrated_probabilities", pa.list_(pa.float32())),
                pa.field("conformal_set", pa.list_(pa.string())),
                pa.field("conformal_set_size", pa.int32()),
                pa.field("marginal_set", pa.list_(pa.string())),
                pa.field("predictive_entropy", pa.float64()),
                pa.field("mutual_information", pa.float64()),
                pa.field("mc_dropout", pa.string()),
            ]
        ),
    )
)


FUSION_INPUTS = register(
    TableSpec(
        name="fusion_inputs",
        keys=("galaxy_id", "model_name", "model_version"),
        description="per galaxy and fusion model version: the input modalities it lacked (imputed with the "
        "training medians) and Flag.MODALITY_MISSING",
        columns=pa.schema(
            [
                pa.field("galaxy_id", pa.string(), nullable=False),
                pa.field("model_name", pa.string(), nullable=False),
                pa.field("model_version", pa.int32(), nullable=False),
                pa.field("missing_modalities", pa.list_(pa.string()), nullable=False),
                pa.field("flags", pa.int64(), nullable=False),
            ]
        ),
        metadata={"flags": "features.flags.Flag.MODALITY_MISSING (bit 33) when any modality was imputed"},
    )
)
