"""Tables of the segmentation stage (registered on import): ``pseudo_labels`` and ``masks``.

* ``pseudo_labels``: per galaxy and recipe (``method``, e.g. ``multiotsu3-luminance-v1``), the Otsu
  background / disk / bulge label image (``features.segmentation.otsu``) as a PNG (values 0, 1, 2), its
  thresholds, sky level and RMS, and the flags saying when Otsu failed (``SEG_OTSU_FAILED``, ...). A
  new recipe gets a new ``method``; Lance versions keep every earlier write.
* ``masks``: per galaxy and ``unet`` model version, the predicted label image (PNG, 0 / 1 / 2, the
  stored stamp's size) and the features measured on it (``features.segmentation.shape``: area in
  pixels and arcsec^2, centroid, ellipticity, bulge fraction), with the IoU and Dice of the galaxy mask
  and of the Otsu pseudo-label against the demo's true mask where the ``truth`` table has one.
"""

from __future__ import annotations

import pyarrow as pa

from warehouse.schemas import TableSpec, register

_F = pa.float64()

PSEUDO_LABELS = register(
    TableSpec(
        name="pseudo_labels",
        keys=("galaxy_id", "method"),
        description="Otsu background/disk/bulge pseudo-label per galaxy and recipe, thresholds, flags when Otsu failed",
        columns=pa.schema(
            [
                pa.field("galaxy_id", pa.string(), nullable=False),
                pa.field("method", pa.string(), nullable=False),
                pa.field("mask_png", pa.large_binary(), nullable=False),
                pa.field("height", pa.int32(), nullable=False),
                pa.field("width", pa.int32(), nullable=False),
                pa.field("threshold_low", _F),
                pa.field("threshold_high", _F),
                pa.field("background", _F),
                pa.field("rms", _F),
                pa.field("area_px", pa.int32(), nullable=False),
                pa.field("bulge_px", pa.int32(), nullable=False),
                pa.field("flags", pa.int64(), nullable=False),
            ]
        ),
    )
)

MASKS = register(
    TableSpec(
        name="masks",
        keys=("galaxy_id", "model_name", "model_version"),
        description="predicted galaxy mask per galaxy and segmentation model version, mask features, IoU vs truth",
        columns=pa.schema(
            [
                pa.field("galaxy_id", pa.string(), nullable=False),
                pa.field("model_name", pa.string(), nullable=False),
                pa.field("model_version", pa.int32(), nullable=False),
                pa.field("mask_png", pa.large_binary(), nullable=False),
                pa.field("height", pa.int32(), nullable=False),
                pa.field("width", pa.int32(), nullable=False),
                pa.field("area_px", pa.int32(), nullable=False),
                pa.field("area_arcsec2", _F),
                pa.field("centroid_x_px", _F),
                pa.field("centroid_y_px", _F),
                pa.field("ellipticity", _F),
                pa.field("bulge_fraction", _F),
                pa.field("covers_centre", pa.bool_(), nullable=False),
                pa.field("split", pa.string()),
                pa.field("iou_truth", _F),
                pa.field("dice_truth", _F),
                pa.field("otsu_iou_truth", _F),
                pa.field("otsu_dice_truth", _F),
                pa.field("iou_otsu", _F),
                pa.field("flags", pa.int64(), nullable=False),
            ]
        ),
    )
)
