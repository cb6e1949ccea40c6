"""Typed run configuration of the training assets (``dg.Config``; every field has a default).

Model fields left at ``None`` take the value of the chosen ``preset`` (``demo``: sized for a CPU and the
demo survey; ``full``: the documented GPU settings; see :mod:`models.config`). ``astrovision train``
passes its options through these classes, so a CLI run and a UI run of the same asset take the same
settings; :data:`MODEL_CONFIGS` says which model takes which (:func:`model_config`: a model not listed,
such as a newly registered kind, takes :class:`ModelConfig`).
"""

import dagster as dg
from pydantic import Field

__all__ = [
    "MODEL_CONFIGS",
    "DINOv2FinetuneConfig",
    "DINOv2ProbeConfig",
    "FusionConfig",
    "ImageModelConfig",
    "ModelConfig",
    "PredictionsConfig",
    "SplitsConfig",
    "model_config",
]


class SplitsConfig(dg.Config):
    """Run configuration of ``splits``."""

    label_column: str = Field(default="label", description="'label' or a key of galaxies.extra_json (e.g. 'ring')")
    seed: int = Field(default=0, description="split seed: seed of the stratified group shuffle (in the split set's name)")
    train_fraction: float = Field(default=0.70, description="fraction of each class in train")
    val_fraction: float = Field(default=0.15, description="fraction of each class in val")
    test_fraction: float = Field(default=0.15, description="fraction of each class in test")


class ModelConfig(dg.Config):
    """Run configuration of a training asset: the fields every model takes (a new kind's default)."""

    preset: str = Field(default="demo", description="'demo' (CPU, small stamps, few epochs) or 'full' (GPU)")
    label_column: str = Field(default="label", description="target column; its split set is built if missing")
    seed: int = Field(default=0, description="training seed (initialisation, shuffling, subsample, bootstraps)")
    split_seed: int = Field(default=0, description="seed of the split set to train on (built if missing)")
    split_fractions: list[float] = Field(
        default=[0.70, 0.15, 0.15], description="train, val, test fractions of the split set to train on")
    max_train: int | None = Field(default=None, description="cap on training galaxies (0: all)")
    gate_confidence: float | None = Field(
        default=None, description="one-sided confidence with which the model must beat the same-run "
        "majority-class and pixel baselines on test (default 0.95)")
    wandb_project: str | None = Field(default=None, description="also log to this Weights & Biases project "
                                      "(needs the wandb extra; empty: off)")

    def overrides(self) -> dict:
        """Fields to pass to :func:`models.config.make_config` (None means: the preset's value).

        The one place where an asset's run config becomes its model's own config
        (:attr:`models.registry.ModelSpec.config_cls`): each field here is a field of that class."""
        return {k: v for k, v in self.model_dump().items() if k != "preset" and v is not None}


class ImageModelConfig(ModelConfig):
    """Run configuration of ``cnn`` and ``efficientnet_b0``."""

    allow_random_init: bool | None = Field(
        default=None, description="train from random init when no pretrained weights resolve (demo: true)")

    img_size: int | None = Field(default=None, description="stamp side in pixels (demo 64, full 128/224)")
    epochs: int | None = Field(default=None, description="maximum epochs (early stopping on val balanced accuracy)")
    batch_size: int | None = Field(default=None, description="batch size")
    lr: float | None = Field(default=None, description="peak learning rate (AdamW, cosine schedule)")
    label_smoothing: float | None = Field(default=None, description="cross-entropy label smoothing")
    class_balanced: bool | None = Field(default=None, description="inverse-frequency class weights")
    device: str = Field(default="auto", description="auto, cpu or cuda")
    num_workers: int | None = Field(default=None, description="data-loader workers (-1: automatic)")
    weights_path: str | None = Field(default=None, description="local pretrained weights file")


class DINOv2ProbeConfig(ModelConfig):
    """Run configuration of ``dinov2_probe``."""

    encoder: str = Field(default="auto", description="embeddings_<encoder> to read; auto: what the embeddings stage wrote")


class DINOv2FinetuneConfig(ImageModelConfig):
    """Run configuration of ``dinov2_finetune``."""

    encoder: str = Field(default="auto", description="DINOv2 encoder (auto: the one the probe used)")
    layer_decay: float | None = Field(default=None, description="layer-wise learning-rate decay")
    init_from_probe: bool | None = Field(default=None, description="start the head from the latest probe")


class FusionConfig(ModelConfig):
    """Run configuration of ``fusion``."""

    encoder: str = Field(default="auto", description="frozen encoder whose stored embeddings_<encoder> to fuse "
                         "(auto: what the embeddings stage wrote; a fine-tuned classifier is refused)")
    epochs: int | None = Field(default=None, description="maximum epochs (early stopping on val balanced accuracy)")
    hidden: int | None = Field(default=None, description="width of each modality branch")
    dropout: float | None = Field(default=None, description="dropout rate of the branches and the head")
    ablate: bool | None = Field(default=None, description="also fit every modality subset (ablation table)")


class PredictionsConfig(dg.Config):
    """Run configuration of ``predictions``."""

    models: list[str] = Field(default=[], description="only these model names; empty: every registered model")
    batch_size: int = Field(default=64, description="inference batch size")
    device: str = Field(default="auto", description="auto, cpu or cuda")
    mc_passes: int = Field(default=8, description="MC-dropout passes for models with dropout (0: off)")


MODEL_CONFIGS: dict[str, type[dg.Config]] = {
    "cnn": ImageModelConfig,
    "efficientnet_b0": ImageModelConfig,
    "dinov2_probe": DINOv2ProbeConfig,
    "dinov2_finetune": DINOv2FinetuneConfig,
    "fusion": FusionConfig,
}
"""Training asset -> its run-config class."""


def model_config(model: str) -> type[dg.Config]:
    """The run-config class of a model's training asset (:class:`ModelConfig` for a model not listed)."""
    return MODEL_CONFIGS.get(model, ModelConfig)
