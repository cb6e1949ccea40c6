"""Named asset jobs, one per Dagster group plus the whole graph, so the UI's run list says what ran.

Every write of the ``astrovision`` CLI is a run of one of these jobs (see :mod:`dagster_project.runner`):
``ingest`` runs ``ingest_job``, ``embed`` runs ``embed_job``, ``train`` runs ``training_job``,
``photometry match`` runs ``features_job``, and ``demo`` / ``ingest --all`` / ``materialize`` (several
groups) run ``pipeline_job``, each restricted to the assets the command asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

__all__ = ["GROUP_JOBS", "JOBS", "PIPELINE_JOB", "job_for_groups", "run_config_fields"]

PIPELINE_JOB = "pipeline_job"
"""The job over every asset (several groups, or all of them)."""

GROUP_JOBS: dict[str, str] = {
    "ingest": "ingest_job",
    "features": "features_job",
    "embeddings": "embed_job",
    "training": "training_job",
    "segmentation": "segmentation_job",
    "analysis": "analysis_job",
    "anomaly": "anomaly_job",
}
"""Dagster group -> the job that materializes it."""

_DESCRIPTIONS = {
    "ingest_job": "galaxies, images (and truth) per shard, then the duplicate groups",
    "features_job": "morphometrics and photometry per shard",
    "embed_job": "embeddings per shard, then the ANN vector index",
    "training_job": "splits, the classifiers and their predictions",
    "segmentation_job": "Otsu pseudo-labels, the U-Net trained on them, its masks",
    "analysis_job": "PCA/UMAP maps of the embeddings, then their correlations with physics and CV R^2",
    "anomaly_job": "the active-learning ranking of a label, retrained on people's labels",
}

JOBS = [
    *(dg.define_asset_job(job, selection=dg.AssetSelection.groups(group), description=_DESCRIPTIONS[job])
      for group, job in GROUP_JOBS.items()),
    dg.define_asset_job(PIPELINE_JOB, selection=dg.AssetSelection.all(),
                        description="the whole asset graph (every group)"),
]
"""The job definitions registered in :data:`dagster_project.definitions.defs`."""


def job_for_groups(groups: Sequence[str] | None) -> str:
    """The job that covers ``groups``: that group's own job for one group, else :data:`PIPELINE_JOB`."""
    if groups is not None and len(set(groups)) == 1 and groups[0] in GROUP_JOBS:
        return GROUP_JOBS[groups[0]]
    return PIPELINE_JOB


def run_config_fields(model: str) -> frozenset[str]:
    """The run-config fields of a training asset (``cnn``, ``fusion``, ...), for the CLI's options.

    The faces read this instead of importing the asset modules' config classes.
    """
    from dagster_project.defs.training.config import model_config

    return frozenset(model_config(model).model_fields)
