"""Monte Carlo dropout: predictive entropy and mutual information per galaxy.

Gal & Ghahramani (2016, "Dropout as a Bayesian Approximation", ICML): ``T`` stochastic forward passes
with the dropout layers sampling (train mode) and everything else in eval mode (batch norm uses its
running statistics, so a pass does not depend on the other galaxies of the batch). With ``p_t`` the
class probabilities of pass ``t`` and ``p = mean_t p_t``:

* predictive entropy ``H[p] = -sum_k p_k log p_k`` (total uncertainty, nats);
* mutual information ``I = H[p] - mean_t H[p_t]`` (the epistemic part: disagreement between passes;
  Houlsby et al. 2011 "BALD", Depeweg et al. 2018).

A model without a dropout layer of positive rate (the linear probe, the DINOv2 fine-tune of the demo)
has no such passes: :func:`dropout_layers` is empty and the caller stores nulls with the reason, never
zeros that would read as "certain".
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

__all__ = ["dropout_layers", "entropy", "mc_dropout_probs", "mutual_information"]

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The dropout modules of ``model`` with a positive rate."""
    return [m for m in model.modules() if isinstance(m, _DROPOUT) and float(m.p) > 0]


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) along the last axis; ``0 log 0 = 0``."""
    p = np.asarray(probs, dtype=np.float64)
    return -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)).sum(axis=-1)


def mutual_information(samples: np.ndarray) -> np.ndarray:
    """``H[mean_t p_t] - mean_t H[p_t]`` for ``samples`` of shape ``(T, N, K)``; >= 0 up to rounding."""
    s = np.asarray(samples, dtype=np.float64)
    return np.maximum(entropy(s.mean(axis=0)) - entropy(s).mean(axis=0), 0.0)


@torch.no_grad()
def mc_dropout_probs(model: nn.Module, batches: Iterable[torch.Tensor], passes: int = 8, *,
                     seed: int = 0) -> np.ndarray:
    """``(T, N, K)`` softmax probabilities of ``passes`` stochastic passes (dropout on, batch norm eval).

    Parameters
    ----------
    model : torch.nn.Module
        Must have a dropout layer of positive rate (:func:`dropout_layers`); raises ``ValueError`` else.
    batches : iterable of torch.Tensor
        Prepared input batches (on the model's device), iterated once; each is passed ``passes`` times.
    passes : int
        ``T``, at least 2.
    seed : int
        Seeds the dropout masks (``torch.manual_seed``), so the numbers repeat.
    """
    layers = dropout_layers(model)
    if not layers:
        raise ValueError("the model has no dropout layer with a positive rate: MC dropout does not apply")
    if passes < 2:
        raise ValueError(f"MC dropout needs at least 2 passes; got {passes}")
    was_training = model.training
    model.eval()
    for m in layers:
        m.train()
    torch.manual_seed(seed)
    out: list[np.ndarray] = []
    try:
        for x in batches:
            out.append(np.stack([torch.softmax(model(x).float(), dim=1).cpu().numpy() for _ in range(passes)]))
    finally:
        model.train(was_training)
    if not out:
        return np.zeros((passes, 0, 0), np.float32)
    return np.concatenate(out, axis=1).astype(np.float32)
