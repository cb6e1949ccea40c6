"""What a stored image looks like to a model: one normalisation for training, embedding and query.

Every model input in AstroVision starts from :func:`model_input`: the classifiers' training data
(:class:`models.data.GalaxyImageDataset`), the stored embeddings (:func:`features.embeddings.embed_images`
over the ``images`` table) and a query image (``astrovision similar --image``, which reads the file
with the same decoder as the folder source). A galaxy is therefore one input whichever path reads it;
each model then only resizes it to its own side and applies its own mean / std.

The mapping depends on the pixels alone (their dtype and values), never on the batch, the shard or the
query, so the same array always gives the same input:

* unsigned-integer (and boolean) images are display-ready composites (Galaxy10 DECaLS, the demo
  survey, PNG / JPEG folders): divided by the dtype's maximum (``uint8 / 255``), nothing else;
* floating-point (and signed-integer) images are fluxes (FITS cut-outs): a linear stretch between the
  0.5 and 99.5 percentiles of the image's finite pixels (:data:`STRETCH_PERCENTILES`; the minimum and
  maximum when over 99% of the pixels share one value), one pair of limits for all channels, clipped
  to ``[0, 1]``. Shared limits keep the bands on one scale, so the colour that separates red
  ellipticals from blue spirals survives; a per-channel stretch would paint every galaxy grey. This
  assumes the bands share a flux unit (as Legacy Surveys cut-outs in nanomaggies do). A percentile
  stretch needs no noise model, unlike an asinh stretch (Lupton et al. 2004, PASP 116, 133), whose
  softening parameter would have to be estimated per image;
* non-finite pixels become 0 (the sky floor) and are flagged ``IMAGE_NAN`` by
  :func:`features.sources.base.image_flags`; a flux image without two distinct finite values is all
  0 (flagged ``IMAGE_BLANK`` there).

Channels: one is repeated to grey RGB; two get their mean as the third; three are used as stored;
of four, the first three (the alpha channel of an RGBA composite; the first three bands of a flux
cube). Five or more are refused.
"""

from __future__ import annotations

import numpy as np

from features.errors import InputError

__all__ = ["STRETCH_PERCENTILES", "model_input", "model_input_uint8"]

STRETCH_PERCENTILES = (0.5, 99.5)
"""Percentiles of a flux image's finite pixels mapped to 0 and 1 by :func:`model_input`."""


def _channels(image: np.ndarray, what: str) -> np.ndarray:
    """``(H, W, 3)`` view or copy of an ``(H, W)`` / ``(H, W, C)`` array, ``C`` in 1-4 (see module)."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[0] < 2 or arr.shape[1] < 2 or not 1 <= arr.shape[2] <= 4:
        raise InputError(f"{what}: expected (H, W) or (H, W, C) with C in 1-4 and H, W >= 2; got shape {arr.shape}")
    c = arr.shape[2]
    if c == 1:
        return np.repeat(arr, 3, axis=2)
    if c == 2:
        return np.concatenate([arr, arr.mean(axis=2, keepdims=True, dtype=np.float64).astype(arr.dtype)], axis=2)
    return arr[:, :, :3]


def _stretch(flux: np.ndarray) -> np.ndarray:
    x = np.asarray(flux, dtype=np.float64)
    finite = np.isfinite(x)
    out = np.zeros(x.shape, dtype=np.float32)
    if not finite.any():
        return out
    values = x[finite]
    lo, hi = np.percentile(values, STRETCH_PERCENTILES)
    if not hi > lo:  # over 99% of the pixels share one value: stretch between the extremes instead
        lo, hi = values.min(), values.max()
        if not hi > lo:
            return out
    scaled = np.clip((np.where(finite, x, lo) - lo) / (hi - lo), 0.0, 1.0)
    out[...] = scaled
    return out


def model_input(image: np.ndarray, *, what: str = "image") -> np.ndarray:
    """A stored image as the model sees it: ``float32 (H, W, 3)`` in ``[0, 1]``.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` pixels as the ``images`` table stores them (``C`` from 1 to 4):
        unsigned integers for composites, floats for fluxes (see the module docstring for the rules).
    what : str
        How error messages name the image (e.g. ``"image 3"`` or a file name).

    Returns
    -------
    numpy.ndarray
        ``float32 (H, W, 3)``: ``uint8 / 255`` for composites; for fluxes
        ``clip((x - p0.5) / (p99.5 - p0.5), 0, 1)`` with the percentiles of all finite pixels of the
        (up to three) channels used (their minimum and maximum when the two percentiles are equal);
        non-finite pixels 0. A flux image with fewer than two distinct finite values is all 0.

    Raises
    ------
    features.errors.InputError
        A shape other than the above, or a dtype that is not numeric, naming ``what``.

    Examples
    --------
    >>> model_input(np.full((2, 2), 51, np.uint8))[0, 0].tolist()
    [0.20000000298023224, 0.20000000298023224, 0.20000000298023224]
    >>> float(model_input(np.array([[0.0, 1.0], [2.0, np.nan]], np.float32)).max())
    1.0
    """
    arr = np.asarray(image)
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise InputError(f"{what}: unsupported pixel dtype {arr.dtype}")
    rgb = _channels(arr, what)
    if kind == "b":
        return rgb.astype(np.float32)
    if kind == "u":
        return rgb.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    return _stretch(rgb)


def model_input_uint8(image: np.ndarray, *, what: str = "image") -> np.ndarray:
    """:func:`model_input` in 8 bits: ``uint8 (H, W, 3)``, ``round(255 * model_input(image))``.

    What the classifiers' training cache and the displayed stamps hold. A uint8 composite comes back
    unchanged (its RGB channels), so only flux images are quantised (by at most 1/510).

    Parameters
    ----------
    image : numpy.ndarray
    what : str
        How error messages name the image.

    Returns
    -------
    numpy.ndarray
        ``uint8 (H, W, 3)``, C-contiguous.
    """
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(_channels(arr, what))
    return np.round(model_input(arr, what=what) * 255.0).astype(np.uint8)
