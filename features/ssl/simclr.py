"""SimCLR: the projection head and the NT-Xent contrastive loss.

Chen, Kornblith, Norouzi & Hinton (2020), "A Simple Framework for Contrastive Learning of Visual
Representations", ICML (SimCLR). Two views of each of ``N`` images are encoded, projected by a small
MLP ``g`` and L2-normalised to ``z``; for the positive pair ``(i, j)`` the loss is

.. math::

    \\ell_{i,j} = -\\log \\frac{\\exp(\\mathrm{sim}(z_i, z_j)/\\tau)}
                              {\\sum_{k \\ne i} \\exp(\\mathrm{sim}(z_i, z_k)/\\tau)}

over the ``2N - 1`` other views of the batch (the ``2N - 2`` views of other images are the negatives),
averaged over all ``2N`` anchors. As in the paper the representation kept is the backbone's pooled
output ``h``, before the projection head, which is discarded after training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProjectionHead", "nt_xent"]


class ProjectionHead(nn.Module):
    """SimCLR's projection MLP ``g``: Linear - BatchNorm - ReLU - Linear (Chen et al. 2020, sec. 2.1).

    Parameters
    ----------
    in_dim : int
        Width of the backbone's pooled features.
    hidden_dim, out_dim : int
    """

    def __init__(self, in_dim: int, hidden_dim: int = 256, out_dim: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_dim, out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """NT-Xent loss of two batches of projections, ``z1[i]`` and ``z2[i]`` being views of image ``i``.

    Parameters
    ----------
    z1, z2 : torch.Tensor
        ``[N, D]`` projections (normalised here), ``N >= 2``.
    temperature : float
        ``tau`` of the module docstring's formula.

    Returns
    -------
    torch.Tensor
        The scalar mean loss; ``log(2N - 1)`` when all projections are equal (the collapsed solution).

    Raises
    ------
    ValueError
        Batches of other shapes, or fewer than two images (no negatives).
    """
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
        raise ValueError(f"nt_xent needs two [N, D] batches with N >= 2, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))  # an anchor is not its own negative
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)
