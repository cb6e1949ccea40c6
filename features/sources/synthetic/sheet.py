"""A labelled contact sheet of the demo survey: the first few galaxies of each class."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from features.sources.classes import GALAXY10_CLASSES

if TYPE_CHECKING:
    from features.sources.synthetic.survey import SyntheticSurvey

__all__ = ["contact_sheet"]

_LABEL_W = 190
_BG = (24, 24, 24)
_FG = (235, 235, 235)


def _font(px: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def contact_sheet(survey: SyntheticSurvey, path: str | Path, per_class: int = 4, tile: int = 160,
                  workers: int | None = None) -> Path:
    """Write a PNG grid: one row per class (name on the left), ``per_class`` galaxies each.

    Parameters
    ----------
    survey : SyntheticSurvey
    path : str or pathlib.Path
        Output PNG.
    per_class : int
        Galaxies per class (the first rows of that class; fewer when the survey has fewer).
    tile : int
        Tile size in pixels (stamps are resampled with Lanczos).
    workers : int, optional
        Render processes (see :meth:`SyntheticSurvey.iter_batches`).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    labels = survey.labels
    chosen = {k: np.flatnonzero(labels == k)[:per_class].tolist() for k in range(len(GALAXY10_CLASSES))}
    rows = sorted(r for rs in chosen.values() for r in rs)
    images: dict[int, np.ndarray] = {}
    for results in survey._render_windows([(r, r + 1) for r in rows], workers):  # rows render alone identically
        for row, rgb, truth, field in results:
            survey._remember(row, truth, field)
            images[row] = rgb
    sheet = Image.new("RGB", (_LABEL_W + per_class * tile, len(GALAXY10_CLASSES) * tile), _BG)
    draw = ImageDraw.Draw(sheet)
    font = _font(16)
    for k, name in enumerate(GALAXY10_CLASSES):
        y = k * tile
        words, lines = name.split(), [""]
        for w in words:  # wrap the class name to the label column
            trial = f"{lines[-1]} {w}".strip()
            if draw.textlength(trial, font=font) > _LABEL_W - 16 and lines[-1]:
                lines.append(w)
            else:
                lines[-1] = trial
        for j, line in enumerate([f"{k}", *lines]):
            draw.text((10, y + tile // 2 - 10 * (len(lines) + 1) + 20 * j), line, fill=_FG, font=font)
        for c, row in enumerate(chosen[k]):
            im = Image.fromarray(images[row]).resize((tile, tile), Image.Resampling.LANCZOS)
            sheet.paste(im, (_LABEL_W + c * tile, y))
            draw.text((_LABEL_W + c * tile + 4, y + 2), f"demo:{row:06d}", fill=(160, 160, 160), font=_font(11))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
    return path
