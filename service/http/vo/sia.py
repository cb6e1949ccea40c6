"""Simple Image Access 1.0 (``/vo/sia``) and the stamps it points at (``/vo/sia/image``).

``GET /vo/sia?POS=ra,dec&SIZE=s[,t]&FORMAT=`` (degrees, ICRS) lists the stored stamps that overlap the
region, one row per stamp and format: ``image/fits`` and ``image/png`` (``FORMAT=ALL``, the default),
one of them (``FORMAT=image/fits``, ``GRAPHIC`` = PNG), or only the fields (``FORMAT=METADATA``, with
the input parameters as ``PARAM`` s). Overlap is tested on bounding circles: a stamp is listed when the
circle around it (half its diagonal, from the stored pixel scale; 0 where the scale is unknown) meets
the circle around the region (half the diagonal of ``SIZE``; ``SIZE=0``: the stamps covering ``POS``).

The fields carry the UCD1 words SIA 1.0 requires (``VOX:Image_Title``, ``POS_EQ_RA_MAIN``,
``POS_EQ_DEC_MAIN``, ``VOX:Image_Naxes``, ``VOX:Image_Naxis``, ``VOX:Image_Scale``,
``VOX:Image_Format``, ``VOX:Image_AccessReference``) and the WCS ones (``VOX:STC_CoordRefFrame``,
``VOX:WCS_CoordProjection``, ``VOX:WCS_CoordRefPixel``, ``VOX:WCS_CoordRefValue``,
``VOX:WCS_CDMatrix``).

``GET /vo/sia/image?ID=<galaxy_id>&FORMAT=image/fits`` serves the stored pixels as FITS: a 2-D image
(one band) or a cube (bands on the third axis, named in ``BANDn``), rows flipped so that FITS row 1 is
the bottom of the stamp as stored (north up, east left, as survey cutouts are stored), with a TAN WCS
centred on the stored position: ``CRPIX`` the stamp's centre, ``CDELT1 = -pxscale``, ``CDELT2 =
+pxscale``. Where the position or the pixel scale is unknown there is no celestial WCS and a
``COMMENT`` says why. ``FORMAT=image/png`` serves the stamp as the models see it (8-bit RGB).
"""


import io
import math
from typing import Annotated, Any
from urllib.parse import urlencode

import numpy as np
import pyarrow as pa
from astropy.io.votable.tree import Param
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.http.vo.common import (
    DALError,
    dal_params,
    error_response,
    float_param,
    int_param,
    votable_response,
)
from service.http.vo.votable import table_votable
from warehouse import Snapshot, WarehouseError
from warehouse.schemas.columns import ColumnDoc

__all__ = ["SIA_UCD1", "add_routes", "fits_bytes"]

FITS, PNG = "image/fits", "image/png"

SIA_UCD1 = {
    "title": "VOX:Image_Title", "ra": "POS_EQ_RA_MAIN", "dec": "POS_EQ_DEC_MAIN", "naxes": "VOX:Image_Naxes",
    "naxis": "VOX:Image_Naxis", "scale": "VOX:Image_Scale", "format": "VOX:Image_Format",
    "frame": "VOX:STC_CoordRefFrame", "projection": "VOX:WCS_CoordProjection",
    "crpix": "VOX:WCS_CoordRefPixel", "crval": "VOX:WCS_CoordRefValue", "cd": "VOX:WCS_CDMatrix",
    "access_url": "VOX:Image_AccessReference",
}
_DOCS = {
    "title": ColumnDoc(None, None, "what the image is"),
    "galaxy_id": ColumnDoc(None, "meta.id", "galaxy of the stamp"),
    "ra": ColumnDoc("deg", None, "right ascension of the stamp's centre, ICRS"),
    "dec": ColumnDoc("deg", None, "declination of the stamp's centre, ICRS"),
    "naxes": ColumnDoc(None, None, "number of image axes"),
    "naxis": ColumnDoc("pix", None, "length of each image axis"),
    "scale": ColumnDoc("deg/pix", None, "pixel scale of each axis (null: unknown)"),
    "format": ColumnDoc(None, None, "MIME type of the image"),
    "frame": ColumnDoc(None, None, "coordinate frame of the WCS"),
    "projection": ColumnDoc(None, None, "WCS projection"),
    "crpix": ColumnDoc("pix", None, "reference pixel (the stamp's centre)"),
    "crval": ColumnDoc("deg", None, "position of the reference pixel"),
    "cd": ColumnDoc("deg/pix", None, "CD matrix (north up, east left); null when the pixel scale is unknown"),
    "bands": ColumnDoc(None, "instr.bandpass", "band of each image plane"),
    "label_name": ColumnDoc(None, "src.morph.type", "class label name from the source"),
    "access_url": ColumnDoc(None, None, "URL of the image"),
}
_FORMATS = {"ALL": (FITS, PNG), "IMAGE/FITS": (FITS,), "IMAGE/PNG": (PNG,), "GRAPHIC": (PNG,),
            "GRAPHIC-ALL": (PNG,), "METADATA": ()}


def _pos(params: dict[str, str]) -> tuple[float, float]:
    raw = params.get("POS")
    if not raw:
        raise DALError("parameter POS (ra,dec in degrees) is required")
    parts = raw.split(",")
    if len(parts) != 2:
        raise DALError(f"POS must be ra,dec in degrees, got {raw[:40]!r}")
    pair = {"RA": parts[0], "DEC": parts[1]}
    return float_param(pair, "RA", low=0.0, high=360.0), float_param(pair, "DEC", low=-90.0, high=90.0)


def _size(params: dict[str, str]) -> tuple[float, float]:
    raw = params.get("SIZE")
    if raw is None or raw == "":
        raise DALError("parameter SIZE (degrees) is required")
    parts = raw.split(",")
    if len(parts) not in (1, 2):
        raise DALError(f"SIZE must be one or two angles in degrees, got {raw[:40]!r}")
    sizes = [float_param({"SIZE": p}, "SIZE", low=0.0, high=180.0) for p in parts]
    return sizes[0], sizes[-1]


def _formats(params: dict[str, str]) -> tuple[str, ...]:
    raw = (params.get("FORMAT") or "ALL").strip()
    chosen: list[str] = []
    for part in raw.split(","):
        key = part.strip().upper()
        if key not in _FORMATS:
            raise DALError(f"FORMAT {part.strip()[:40]!r} is not served; use ALL, METADATA, GRAPHIC, image/fits "
                           "or image/png")
        if key == "METADATA":
            return ()
        chosen += [f for f in _FORMATS[key] if f not in chosen]
    return tuple(chosen)


def _wcs_header(h: int, w: int, ra: float | None, dec: float | None, pxscale: float | None):
    """A FITS header with the stamp's TAN WCS, or with a COMMENT saying why there is none."""
    from astropy.io import fits
    from astropy.wcs import WCS

    if ra is None or dec is None or pxscale is None or not (math.isfinite(pxscale) and pxscale > 0):
        header = fits.Header()
        why = "position" if ra is None or dec is None else "pixel scale"
        header["COMMENT"] = f"no celestial WCS: the galaxy's {why} is unknown"
        if ra is not None and dec is not None:
            header["RA"] = (ra, "[deg] stored position of the stamp's centre (ICRS)")
            header["DEC"] = (dec, "[deg] stored position of the stamp's centre (ICRS)")
        return header
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(w + 1) / 2.0, (h + 1) / 2.0]
    wcs.wcs.cdelt = [-pxscale / 3600.0, pxscale / 3600.0]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    header = wcs.to_header()
    header["COMMENT"] = "north up, east left as stored; CRVAL: the stored position"
    return header


def fits_bytes(image: np.ndarray, ra: float | None, dec: float | None, pxscale: float | None,
               bands: str, galaxy_id: str) -> bytes:
    """The stamp ``(H, W, C)`` as FITS bytes: rows flipped (FITS row 1 at the bottom), bands on axis 3."""
    from astropy.io import fits

    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    h, w, c = pixels.shape
    cube = np.ascontiguousarray(np.flip(np.moveaxis(pixels, 2, 0), axis=1))  # (C, H, W), bottom row first
    data = cube[0] if c == 1 else cube
    header = _wcs_header(h, w, ra, dec, pxscale)
    hdu = fits.PrimaryHDU(data=data, header=header)
    hdu.header["OBJECT"] = (galaxy_id[:68], "galaxy id in the AstroVision warehouse")
    names = [b for b in bands.replace(",", " ").split()] if "," in bands or " " in bands else list(bands)
    for i in range(c):
        if i < len(names):
            hdu.header[f"BAND{i + 1}"] = (names[i][:68], f"band of plane {i + 1}")
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


def _rows(found: list[dict[str, Any]], formats: tuple[str, ...], base: str) -> pa.Table:
    cols: dict[str, list] = {k: [] for k in ("title", "galaxy_id", "ra", "dec", "naxes", "naxis", "scale", "format",
                                             "frame", "projection", "crpix", "crval", "cd", "bands", "label_name",
                                             "access_url")}
    for row in found:
        h, w, c = int(row["height"]), int(row["width"]), int(row["channels"] or 1)
        px = row["pxscale"]
        deg = px / 3600.0 if px is not None and math.isfinite(px) and px > 0 else None
        for fmt in formats:
            fits_cube = fmt == FITS and c > 1
            cols["title"].append(f"{row['galaxy_id']} {row['bands']} stamp ({'FITS' if fmt == FITS else 'PNG'})")
            cols["galaxy_id"].append(row["galaxy_id"])
            cols["ra"].append(row["ra"])
            cols["dec"].append(row["dec"])
            cols["naxes"].append(3 if fits_cube else 2)
            cols["naxis"].append([w, h, c] if fits_cube else [w, h])
            cols["scale"].append(None if deg is None else [deg, deg])
            cols["format"].append(fmt)
            cols["frame"].append("ICRS")
            cols["projection"].append("TAN")
            cols["crpix"].append([(w + 1) / 2.0, (h + 1) / 2.0])
            cols["crval"].append([row["ra"], row["dec"]])
            cols["cd"].append(None if deg is None else [-deg, 0.0, 0.0, deg])
            cols["bands"].append(row["bands"])
            cols["label_name"].append(row["label_name"])
            cols["access_url"].append(f"{base}vo/sia/image?{urlencode({'ID': row['galaxy_id'], 'FORMAT': fmt})}")
    f64s = pa.list_(pa.float64())
    types = {"naxes": pa.int32(), "naxis": pa.list_(pa.int32()), "scale": f64s, "crpix": f64s, "crval": f64s,
             "cd": f64s, "ra": pa.float64(), "dec": pa.float64()}
    return pa.table({k: pa.array(v, types.get(k, pa.string())) for k, v in cols.items()})


def _input_params(vot_params: dict[str, str]) -> list[Param]:
    from astropy.io.votable.tree import VOTableFile

    vot = VOTableFile()
    out = []
    for name, desc, unit in (("POS", "ra,dec of the region's centre (ICRS)", "deg"),
                             ("SIZE", "width[,height] of the region", "deg"),
                             ("FORMAT", "ALL, METADATA, GRAPHIC, image/fits or image/png", None)):
        p = Param(vot, name=f"INPUT:{name}", datatype="char", arraysize="*", value=vot_params.get(name, ""),
                  unit=unit)
        p.description = desc
        out.append(p)
    return out


def add_routes(router: APIRouter, settings: Any, snapshot: Any) -> None:
    """Add ``/sia`` and ``/sia/image`` to ``router``."""
    from warehouse.search.features import serving_engine

    Snap = Annotated[Snapshot, Depends(snapshot)]
    Params = Annotated[dict[str, str], Depends(dal_params)]

    @router.get("/sia", response_class=Response, tags=["vo"],
                responses={200: {"content": {"application/x-votable+xml": {}}}})
    def sia(request: Request, wh: Snap, params: Params) -> Response:
        """IVOA Simple Image Access 1.0: ``POS=ra,dec``, ``SIZE`` (degrees), ``FORMAT``; ``MAXREC``."""
        try:
            formats = _formats(params)
            if not formats:
                meta = _rows([], (FITS,), "")
                return votable_response(table_votable(meta, _DOCS, ucd1=SIA_UCD1, params=_input_params(params)))
            ra, dec = _pos(params)
            sx, sy = _size(params)
            cap = settings.sql_max_rows
            maxrec = int_param(params, "MAXREC", cap, low=0)
            region_arcsec = math.hypot(sx, sy) / 2.0 * 3600.0
            query = (
                "SELECT galaxy_id, ra, dec, pxscale, height, width, channels, bands, label_name FROM galaxy_images "
                f"WHERE height IS NOT NULL AND cone(ra, dec, {ra!r}, {dec!r}, {region_arcsec!r} + "
                "coalesce(CASE WHEN pxscale > 0 THEN pxscale END, 0) * sqrt(height * height + width * width) / 2) "
                f"ORDER BY ang_sep_arcsec(ra, dec, {ra!r}, {dec!r}), galaxy_id")
            result = serving_engine(wh).run(query, limit=max(min(maxrec, cap) // max(len(formats), 1), 0))
        except (DALError, WarehouseError) as exc:
            return error_response(str(exc))
        table = _rows(result.table.to_pylist(), formats, str(request.base_url))
        return votable_response(table_votable(table, _DOCS, ucd1=SIA_UCD1, overflow=result.truncated,
                                              description=f"stamps overlapping {sx:g} x {sy:g} deg at "
                                                          f"({ra:g}, {dec:g})"))

    @router.get("/sia/image", response_class=Response, tags=["vo"],
                responses={200: {"content": {FITS: {}, PNG: {}}}})
    def sia_image(wh: Snap, params: Params) -> Response:
        """One stored stamp: ``ID`` (galaxy id), ``FORMAT`` ``image/fits`` (TAN WCS) or ``image/png``."""
        gid = params.get("ID") or ""
        fmt = (params.get("FORMAT") or FITS).lower()
        if fmt not in (FITS, PNG):
            return error_response(f"FORMAT must be {FITS} or {PNG}, got {fmt[:40]!r}", 400)
        if not gid or not wh.exists("images") or not wh.has_ids("images", [gid]) or not wh.has_ids("galaxies", [gid]):
            return error_response(f"no stored image of galaxy {gid[:200]!r}", 404)
        row = wh.take("galaxies", [gid], columns=["ra", "dec", "pxscale"]).to_pylist()[0]
        bands = wh.take("images", [gid], columns=["bands"]).column("bands")[0].as_py() or ""
        image = wh.read_image(gid)
        if fmt == PNG:
            from PIL import Image

            from features.pixels import model_input_uint8

            buf = io.BytesIO()
            Image.fromarray(model_input_uint8(image)).save(buf, format="PNG")
            return Response(buf.getvalue(), media_type=PNG)
        return Response(fits_bytes(image, row["ra"], row["dec"], row["pxscale"], bands, gid),
                        media_type=FITS, headers={"Content-Disposition": 'attachment; filename="stamp.fits"'})
