"""What a registered encoder is: :class:`EncoderSpec` (no torch, no timm at import).

Kept apart from :mod:`features.embeddings` so :mod:`features.hub_encoders` can define Zoobot's entries
without an import circle.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "UNIT_MEAN", "UNIT_STD", "EncoderSpec"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UNIT_MEAN = (0.0, 0.0, 0.0)
"""Pixels in [0, 1] as they are (Zoobot's input): mean 0, std 1."""
UNIT_STD = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class EncoderSpec:
    """A registered encoder.

    Attributes
    ----------
    name : str
        Registry name, also the suffix of its warehouse table ``embeddings_<name>``.
    timm_name : str
        The timm model to build (for an ``hf_hub:`` encoder: empty until its ``config.json`` is read).
    hf_repo : str or None
        Hugging Face repository of its weights; ``None`` for a random baseline.
    dim : int
        Embedding width (0 for an ``hf_hub:`` / ``timm:`` encoder until it is built).
    img_size : int
        Input side in pixels.
    seed : int or None
        Seed of the random initialisation (random baselines only).
    description : str
    timm_kwargs : tuple of (str, value) pairs
        Extra arguments for :func:`timm.create_model`.
    trained_here : bool
        Its weights are trained in the warehouse by the ``ssl_encoder`` asset (:mod:`stages.ssl`).
    init_repo : str or None
        For ``trained_here`` encoders: pretrained weights (a Hugging Face repository in timm's layout)
        that training continues from when they resolve; ``None``: always from scratch.
    mean, std : tuple of float
        Per-channel normalisation after scaling to [0, 1] (ImageNet's unless the model card says otherwise).
    in_chans : int
        3 (RGB) or 1 (greyscale: the mean of the three channels).
    hub : bool
        Built by timm from a Hub repository in timm's layout (:mod:`features.hub_encoders`).
    in_domain : bool
        Pretrained on galaxies (Zoobot): ``auto`` prefers it when its weights resolve.
    source : str
        The name it was asked for when that is not ``name`` (``hf_hub:<owner>/<repo>``,
        ``timm:<model>``): what the table's ``encoder`` column stores, so a query image can load it again.
    stamp : str
        What the encoder sees: ``"frame"`` (the whole image resized) or ``"galaxy"`` (a stamp centred
        and scaled on the galaxy, :func:`features.ssl.stamps.galaxy_stamps`, in training and here).
    """

    name: str
    timm_name: str
    hf_repo: str | None
    dim: int
    img_size: int = 224
    seed: int | None = None
    description: str = ""
    timm_kwargs: tuple[tuple[str, object], ...] = ()
    trained_here: bool = False
    init_repo: str | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    in_chans: int = 3
    hub: bool = False
    in_domain: bool = False
    source: str = ""
    stamp: str = "frame"

    @property
    def is_random(self) -> bool:
        """Whether this encoder is a random-weights baseline."""
        return self.hf_repo is None and not self.trained_here

    @property
    def load_name(self) -> str:
        """The name :func:`features.embeddings.load_encoder` loads it by."""
        return self.source or self.name

    @property
    def is_vit(self) -> bool:
        """Whether it is a plain ViT (tokens, a CLS token, a patch grid that fixes the input size)."""
        return self.timm_name.startswith("vit")

    def create_kwargs(self, img_size: int) -> dict[str, object]:
        """Arguments of :func:`timm.create_model` (a ViT takes its input size, a CNN any size)."""
        size = {"img_size": int(img_size)} if self.is_vit else {}
        return {"num_classes": 0, **size, **dict(self.timm_kwargs)}
