"""Fine-tuning the encoder in use: DINOv2 (Oquab et al. 2023) when its weights resolve, else the encoder
``auto`` chose (Zoobot's, or the warehouse's own self-supervised ``ssl_resnet18``), plus a
probe-initialised head.

The encoder's feature is the concatenation of the final-norm CLS token and the mean of the patch
tokens, the same vector the embeddings stage stores (``vector`` and ``patch_mean``) and the linear
probe reads. The head standardises that feature with the probe's training mean and scale, then applies
the probe's weights, so at step 0 the fine-tuned model predicts what the probe predicts, at the probe's
scale (the research code put unscaled probe weights on raw features: epoch-1 loss 11.4). Without a
probe the head starts at zero (loss ``ln K``).

The encoder trains with layer-wise learning-rate decay (Clark et al. 2020, ELECTRA; Bao et al. 2022,
BEiT), built by timm from the ViT's ``group_matcher``: the patch embedding gets the smallest rate, each
block deeper a factor ``1 / decay`` more, the head its own multiple.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from models.backbones import Backbone, load_backbone
from models.classifier import EncoderClassifier, zero_linear

__all__ = [
    "DINOv2Classifier",
    "DINOv2Features",
    "StandardizedHead",
    "build_dinov2_finetune",
    "layerwise_param_groups",
    "standardise_head",
]

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class InputAdapter(nn.Module):
    """ImageNet-normalised stamps (what :mod:`models.data` gives every image model) -> the encoder's input.

    ``x * imagenet_std + imagenet_mean`` gives the [0, 1] pixels back; one output channel averages the
    three (Zoobot's greyscale encoders); then the encoder's own ``(x - mean) / std`` (Zoobot: mean 0,
    std 1). The buffers are not saved: they follow from the encoder's spec.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        from features.embeddings import IMAGENET_MEAN, IMAGENET_STD

        self.register_buffer("in_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.in_std + self.in_mean
        if self.mean.shape[1] == 1:
            x = x.mean(dim=1, keepdim=True)
        return (x - self.mean) / self.std


class DINOv2Features(nn.Module):
    """A timm encoder returning the probe's feature layout, ``concat(vector, patch_mean)``: ``(N, 2 D)``.

    A ViT: its CLS token and the mean of its patch tokens. A CNN (the warehouse's ``ssl_resnet18``,
    Zoobot's ConvNeXt): both halves are its pooled head input
    (:func:`features.embeddings.pooled_features`), as the embeddings table stores them. The timm model
    is the ``vit`` attribute whatever its family (the name the saved fine-tunes' keys carry).
    """

    def __init__(self, vit: nn.Module, adapter: InputAdapter | None = None) -> None:
        super().__init__()
        self.vit = vit
        self.adapter = adapter
        self.num_prefix_tokens = int(getattr(vit, "num_prefix_tokens", 1))
        self.num_features = 2 * int(vit.num_features)

    def train(self, mode: bool = True) -> DINOv2Features:
        """Train mode with every BatchNorm kept in eval mode (its running statistics frozen).

        A CNN encoder's BatchNorm statistics are those its stored embeddings (and so the probe the head
        starts from) were computed with; updating them from small fine-tuning batches moves every
        feature at once: on the demo one step at a learning rate of 1e-9 took the probe-initialised
        ``ssl_resnet18`` from 0.60 to 0.38 test balanced accuracy. Their affine weights still train.
        """
        super().train(mode)
        for module in self.modules():
            if isinstance(module, _BATCH_NORMS):
                module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from features.embeddings import pooled_features

        if self.adapter is not None:
            x = self.adapter(x)
        tokens = self.vit.forward_features(x)
        if tokens.ndim == 4:
            pooled = pooled_features(self.vit, tokens)
            return torch.cat([pooled, pooled], dim=1)
        return torch.cat([tokens[:, 0], tokens[:, self.num_prefix_tokens:].mean(dim=1)], dim=1)


class StandardizedHead(nn.Module):
    """``logits = W ((f - mean) / scale) + b``, the probe's form; ``mean`` and ``scale`` are buffers."""

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("scale", torch.ones(num_features))
        self.linear = zero_linear(num_features, num_classes)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear((f - self.mean) / self.scale)

    @torch.no_grad()
    def init_from_probe(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> None:
        """Copy a fitted :class:`models.probe.LinearProbe` (same feature layout, same class order)."""
        if coef.shape != tuple(self.linear.weight.shape):
            raise ValueError(f"probe weights {coef.shape} do not fit the head {tuple(self.linear.weight.shape)}")
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.scale.copy_(torch.as_tensor(scale, dtype=self.scale.dtype))
        self.linear.weight.copy_(torch.as_tensor(coef, dtype=self.linear.weight.dtype))
        self.linear.bias.copy_(torch.as_tensor(intercept, dtype=self.linear.bias.dtype))


@torch.no_grad()
def standardise_head(model: DINOv2Classifier, batches, max_batches: int = 4) -> int:
    """Set the head's ``mean`` / ``scale`` to the statistics of the model's own features.

    The stored embeddings the probe was fitted on come from the encoder at its native input size
    (224 px); at another size (the CPU demo's 56 px) or with other weights the feature distribution
    moves, and the probe's weights applied to it would give logits at the wrong scale. Standardising
    with the fine-tune model's features at its own input size puts the probe's weights back on the
    scale they were fitted at.

    Parameters
    ----------
    model : DINOv2Classifier
    batches : iterable of torch.Tensor
        Normalised image batches (training split, no augmentation).
    max_batches : int

    Returns
    -------
    int
        Number of feature vectors used (0: nothing changed).
    """
    was_training = model.training
    model.eval()
    feats = []
    for i, x in enumerate(batches):
        if i >= max_batches:
            break
        feats.append(model.forward_features(x).float())
    model.train(was_training)
    if not feats:
        return 0
    f = torch.cat(feats)
    scale = f.std(dim=0) if len(f) > 1 else torch.ones(f.shape[1])
    model.head.mean.copy_(f.mean(dim=0))
    model.head.scale.copy_(torch.where(scale > 1e-6, scale, torch.ones_like(scale)))
    return len(f)


class DINOv2Classifier(EncoderClassifier):
    """The encoder in use (:class:`DINOv2Features`: DINOv2, the warehouse's own, Zoobot's) plus
    :class:`StandardizedHead`."""

    def __init__(self, vit: nn.Module, num_classes: int, dropout: float = 0.0,
                 adapter: InputAdapter | None = None) -> None:
        encoder = DINOv2Features(vit, adapter)
        super().__init__(encoder, encoder.num_features, num_classes, dropout)
        self.head = StandardizedHead(self.num_features, num_classes)

    def param_groups(self, lr: float, weight_decay: float, layer_decay: float = 0.75,
                     head_lr_scale: float = 1.0) -> list[dict[str, Any]]:
        """Optimizer parameter groups with layer-wise decay (see :func:`layerwise_param_groups`)."""
        return layerwise_param_groups(self, lr, weight_decay, layer_decay, head_lr_scale)


def layerwise_param_groups(
    model: DINOv2Classifier,
    lr: float,
    weight_decay: float,
    layer_decay: float = 0.75,
    head_lr_scale: float = 1.0,
) -> list[dict[str, Any]]:
    """Optimizer groups: the encoder with timm's layer-wise decay, the head at ``lr * head_lr_scale``.

    The encoder's groups are :func:`timm.optim.param_groups_layer_decay` of the timm ViT, driven by its
    own ``group_matcher`` (stem: patch embedding and tokens; one group per block; the final norm joins the
    last block): with ``L`` blocks, the stem gets ``lr * layer_decay ** L``, block ``i`` (0-based)
    ``lr * layer_decay ** (L - 1 - i)``, so the last block and the final norm get ``lr``. 1-D parameters and the ViT's
    ``no_weight_decay()`` names (tokens, position embedding) get no weight decay.

    Returns
    -------
    list of dict
        ``params``, ``lr``, ``lr_scale`` (relative to ``lr``) and ``weight_decay`` per group; the
        head's groups last.
    """
    from timm.optim import param_groups_layer_decay

    vit = model.encoder.vit
    skip = vit.no_weight_decay() if hasattr(vit, "no_weight_decay") else ()
    groups = param_groups_layer_decay(vit, weight_decay=weight_decay, no_weight_decay_list=skip,
                                      layer_decay=layer_decay)
    head = [p for n, p in model.named_parameters() if not n.startswith("encoder.") and p.requires_grad]
    groups += [{"params": [p for p in head if p.ndim > 1], "weight_decay": weight_decay, "lr_scale": head_lr_scale},
               {"params": [p for p in head if p.ndim <= 1], "weight_decay": 0.0, "lr_scale": head_lr_scale}]
    groups = [g for g in groups if g["params"]]
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    return groups


def build_dinov2_finetune(
    num_classes: int,
    *,
    encoder: str = "dinov2_vits14",
    img_size: int = 224,
    pretrained: bool = True,
    weights_path: str | None = None,
    allow_random_init: bool = False,
    dropout: float = 0.0,
    drop_path_rate: float = 0.1,
) -> tuple[DINOv2Classifier, Backbone]:
    """The encoder in use at ``img_size`` plus a standardised linear head.

    Parameters
    ----------
    num_classes : int
    encoder : str
        An encoder of :func:`features.embeddings.encoder_spec`: a DINOv2 ViT (``dinov2_vits14``,
        ``dinov2_vitb14``, or the ``random_vits14`` baseline, random by definition, which needs
        ``allow_random_init``), the warehouse's own (``ssl_resnet18``: ``weights_path`` is its file
        under the warehouse root, which :func:`stages.trainers.finetune_inputs` fills in), or a Hub
        encoder (Zoobot's, ``hf_hub:<repo>``: resolved like its embeddings).
    img_size : int
        Input side; for a ViT a multiple of 14 (position embeddings are interpolated from the
        checkpoint's 518 px grid).
    pretrained, weights_path, allow_random_init
        See :func:`models.backbones.load_backbone`. ``pretrained=False`` builds the architecture only
        (to load a fine-tuned checkpoint).
    dropout, drop_path_rate : float
        ``drop_path_rate`` applies to the ViTs.

    Returns
    -------
    model : DINOv2Classifier
    backbone : Backbone
    """
    from features.embeddings import encoder_spec
    from features.errors import InputError

    try:
        spec = encoder_spec(encoder)
    except InputError as exc:
        raise ValueError(str(exc)) from None
    if not spec.is_vit:
        bb, spec = _encoder_backbone(encoder, pretrained=pretrained, weights_path=weights_path)
        adapter = None if (spec.mean, spec.std) == _imagenet() else InputAdapter(spec.mean, spec.std)
        return DINOv2Classifier(bb.model, num_classes, dropout=dropout, adapter=adapter), bb
    if img_size % 14:
        raise ValueError(f"img_size must be a multiple of the 14 px patch; got {img_size}")
    bb = load_backbone(spec.timm_name, spec.hf_repo, pretrained=pretrained, weights_path=weights_path,
                       allow_random_init=allow_random_init, num_classes=0, img_size=img_size,
                       drop_path_rate=drop_path_rate)
    return DINOv2Classifier(bb.model, num_classes, dropout=dropout), bb


def _imagenet() -> tuple[tuple[float, ...], tuple[float, ...]]:
    from features.embeddings import IMAGENET_MEAN, IMAGENET_STD

    return tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)


def _encoder_backbone(encoder: str, *, pretrained: bool, weights_path: str | None) -> tuple[Backbone, Any]:
    """A CNN encoder (the warehouse's own, a Hub one) with the weights its embeddings use, or its architecture."""
    from features.embeddings import encoder_spec, load_encoder
    from features.errors import OfflineError
    from features.hub_encoders import build_hub_model, hub_config
    from features.weights import WeightsOrigin, load_timm_model
    from models.errors import WeightsUnavailableError

    spec = encoder_spec(encoder)
    if pretrained:
        try:
            enc = load_encoder(encoder, weights_path or None)
        except OfflineError as exc:
            raise WeightsUnavailableError(str(exc)) from None
        model, spec = enc.model, enc.spec
        return Backbone(model, enc.weights_origin, enc.weights_sha256), spec
    if spec.hub:
        model, spec = build_hub_model(spec, None, hub_config(spec, None, allow_download=False))
    else:
        model = load_timm_model(spec.timm_name, None, **spec.create_kwargs(spec.img_size))
    return Backbone(model, WeightsOrigin.RANDOM_INIT), spec
