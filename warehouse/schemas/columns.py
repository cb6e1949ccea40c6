"""One column-metadata registry: unit, UCD and description of every column users see.

Every column of every registered table (provenance columns included) and of every SQL view in
``sql/*.sql`` is documented here once, beside the schemas, and read by the Virtual Observatory
answers (VOTable ``FIELD`` attributes, TAP ``tables``), the exports (FITS ``TUNITn`` / ``TCOMMn``,
Parquet field metadata) and the API docs.

* Units are VOUnit strings (astropy parses them with ``format="vounit"``); ``None``: dimensionless
  or not a quantity.
* UCDs are UCD1+ words (``pos.eq.ra;meta.main``); ``None`` where no word fits.
* A column named the same in several relations means the same thing unless a relation overrides it
  (:data:`_COMMON` then the relation's own entries).

``tests/test_columns.py`` fails for any table or view column without a description here.
"""

from __future__ import annotations

from dataclasses import dataclass

from warehouse import schemas

__all__ = ["VIEW_COLUMNS", "ColumnDoc", "column_docs", "documented_relations", "find_doc", "undocumented"]


@dataclass(frozen=True)
class ColumnDoc:
    """What a column holds.

    Attributes
    ----------
    unit : str or None
        VOUnit string (``"deg"``, ``"arcsec"``, ``"mag"``); ``None`` when dimensionless.
    ucd : str or None
        UCD1+ word(s), ``;``-separated; ``None`` where none fits.
    description : str
        One line.
    """

    unit: str | None
    ucd: str | None
    description: str


def _d(description: str, ucd: str | None = None, unit: str | None = None) -> ColumnDoc:
    return ColumnDoc(unit=unit, ucd=ucd, description=description)


_FLAGS = "bit mask of features.flags.Flag saying why values are missing or untrusted"
_NMGY = "3.631uJy"  # one nanomaggy (AB zeropoint 22.5)

_COMMON: dict[str, ColumnDoc] = {
    # identity and provenance
    "galaxy_id": _d("galaxy identifier, unique in the warehouse (source:native id)", "meta.id;meta.main"),
    "source": _d("name of the image source the galaxy came from", "meta.dataset"),
    "native_id": _d("identifier of the galaxy in its source catalogue", "meta.id"),
    "shard": _d("storage shard of the row (partition of the source)", "meta.code"),
    "row_index": _d("row of the galaxy in its source shard", "meta.number"),
    "code_version": _d("version of the code that wrote the row", "meta.version"),
    "run_id": _d("pipeline run that wrote the row", "meta.id"),
    "written_at": _d("time the row was written (UTC)", "time.creation"),
    "flags": _d(_FLAGS, "meta.code.qual"),
    # position and catalogue
    "ra": _d("right ascension, ICRS", "pos.eq.ra;meta.main", "deg"),
    "dec": _d("declination, ICRS", "pos.eq.dec;meta.main", "deg"),
    "redshift": _d("redshift from the source catalogue", "src.redshift"),
    "pxscale": _d("pixel scale of the stored stamp", "instr.scale", "arcsec/pix"),
    "label": _d("class label (integer code) from the source", "meta.code.class"),
    "label_name": _d("class label name from the source", "src.morph.type"),
    "duplicate_group": _d("group of images of the same object (near-duplicates), if any", "meta.id.cross"),
    "extra_json": _d("further catalogue columns of the source, as JSON", "meta.note"),
    "image_sha1": _d("SHA-1 of the stored image bytes", "meta.checksum"),
    # images
    "encoding": _d("encoding of the stored image bytes (png, npy)", "meta.code"),
    "data": _d("the stored image bytes", "meta.code;obs.image"),
    "height": _d("image height", "meta.number;instr.pixel", "pix"),
    "width": _d("image width", "meta.number;instr.pixel", "pix"),
    "channels": _d("number of image channels (bands)", "meta.number"),
    "dtype": _d("numpy dtype of the image pixels", "meta.code"),
    "bands": _d("band of each channel, comma-separated", "instr.bandpass"),
    "image_kind": _d("what the pixels are (flux-calibrated, rgb composite, ...)", "meta.code"),
    "stretch_json": _d("the display stretch applied to the pixels, as JSON", "meta.note"),
    "image_bytes": _d("size of the stored image", "phys.size", "byte"),
    # sources
    "kind": _d("kind of the entry", "meta.code"),
    "path": _d("where the source's data came from", "meta.ref.url"),
    "catalog": _d("catalogue file of the source", "meta.ref"),
    "fingerprint": _d("checksum of the source's data (Source.fingerprint)", "meta.checksum"),
    "shard_size": _d("galaxies per shard", "meta.number"),
    "n_galaxies": _d("number of galaxies in the source", "meta.number"),
    "params_json": _d("parameters, as JSON", "meta.note"),
    # embeddings and analysis
    "encoder": _d("name of the image encoder", "meta.id"),
    "weights_sha256": _d("SHA-256 of the encoder's weights (or of its seeded initial state)", "meta.checksum"),
    "weights_origin": _d("where the weights came from (local, cache, download, random init, self-supervised)",
                         "meta.note"),
    "vector": _d("embedding: the encoder's CLS token, used for similarity search", "meta.number"),
    "patch_mean": _d("embedding: the mean of the encoder's patch tokens", "meta.number"),
    "embeddings_version": _d("Lance version of the embeddings table the row was computed from", "meta.version"),
    "method": _d("method or recipe that produced the row", "meta.code"),
    "band": _d("band measured", "instr.bandpass"),
    # models, splits, predictions
    "model_name": _d("name of the model", "meta.id"),
    "model_version": _d("version of the model", "meta.version"),
    "split": _d("train, val or test split of the galaxy", "meta.code"),
    "split_name": _d("split set: label column, split seed and fractions", "meta.id"),
    "split_hash": _d("content hash of the split set used", "meta.checksum"),
    "label_column": _d("catalogue column the labels come from", "meta.id"),
    "seed": _d("random seed", "meta.code"),
    "mask_png": _d("label image as PNG (0 background, 1 galaxy / disk, 2 bulge)", "meta.code;obs.image"),
    "area_px": _d("area of the mask", "phys.area", "pix**2"),
    "background": _d("sky background level", "instr.skyLevel"),
    "ellipticity": _d("ellipticity 1 - b/a", "phys.size.axisRatio"),
    "asymmetry": _d("rotational asymmetry A", "src.morph.param"),
    "r50_arcsec": _d("radius containing 50% of the light", "phys.angSize", "arcsec"),
    "abs_mag_r": _d("absolute r magnitude", "phys.magAbs;em.opt.R", "mag"),
    "g_r": _d("g - r colour", "phot.color;em.opt.B;em.opt.R", "mag"),
}

_GALAXIES = {
    "flags": _d("features.flags.Flag bits of the image and catalogue (POSITION_UNKNOWN, ...)", "meta.code.qual"),
}

_SOURCES = {
    "source": _d("name of the source, unique", "meta.id;meta.main"),
    "kind": _d("kind of source (demo, galaxy10, folder)", "meta.code"),
}

_EMBEDDINGS = {
    "flags": _d("features.flags.Flag bits (RANDOM_WEIGHTS, image flags)", "meta.code.qual"),
}

_MORPH_QUANTITY = {
    "gini": _d("Gini coefficient of the pixel flux distribution", "src.morph.param"),
    "m20": _d("M20: second moment of the brightest 20% of the light", "src.morph.param"),
    "gini_m20_bulge": _d("Gini-M20 bulge statistic F(G, M20)", "src.morph.param"),
    "gini_m20_merger": _d("Gini-M20 merger statistic S(G, M20)", "src.morph.param"),
    "concentration": _d("concentration C = 5 log10(r80 / r20)", "src.morph.param"),
    "asymmetry": _d("rotational asymmetry A", "src.morph.param"),
    "smoothness": _d("smoothness (clumpiness) S", "src.morph.param"),
    "multimode": _d("multimode statistic M", "src.morph.param"),
    "intensity": _d("intensity statistic I", "src.morph.param"),
    "deviation": _d("deviation statistic D", "src.morph.param"),
    "outer_asymmetry": _d("outer asymmetry A_O", "src.morph.param"),
    "shape_asymmetry": _d("shape asymmetry A_S", "src.morph.param"),
    "rms_asymmetry2": _d("RMS asymmetry squared", "src.morph.param"),
    "r20": _d("radius containing 20% of the light", "phys.angSize", "pix"),
    "r50": _d("radius containing 50% of the light", "phys.angSize", "pix"),
    "r80": _d("radius containing 80% of the light", "phys.angSize", "pix"),
    "rpetro_circ": _d("circular Petrosian radius", "phys.angSize", "pix"),
    "rpetro_ellip": _d("elliptical Petrosian radius", "phys.angSize", "pix"),
    "rhalf_circ": _d("circular half-light radius", "phys.angSize", "pix"),
    "rhalf_ellip": _d("elliptical half-light radius", "phys.angSize", "pix"),
    "rmax_circ": _d("circular radius of the segment's farthest pixel", "phys.angSize", "pix"),
    "ellipticity": _d("ellipticity 1 - b/a of the light distribution", "phys.size.axisRatio"),
    "elongation": _d("elongation a/b of the light distribution", "phys.size.axisRatio"),
    "orientation": _d("position angle of the major axis, from the image +x axis", "pos.posAng", "rad"),
    "xc_centroid": _d("x of the light centroid in the stamp", "pos.cartesian.x;instr.pixel", "pix"),
    "yc_centroid": _d("y of the light centroid in the stamp", "pos.cartesian.y;instr.pixel", "pix"),
    "xc_asymmetry": _d("x of the asymmetry centre in the stamp", "pos.cartesian.x;instr.pixel", "pix"),
    "yc_asymmetry": _d("y of the asymmetry centre in the stamp", "pos.cartesian.y;instr.pixel", "pix"),
    "flux_circ": _d("flux within the circular Petrosian aperture (image units)", "phot.flux"),
    "sky_sigma": _d("standard deviation of the sky (image units)", "instr.skyLevel;stat.stdev"),
    "sn_per_pixel": _d("mean signal-to-noise per pixel of the segment", "stat.snr"),
    "sersic_n": _d("Sersic index of the fitted profile", "src.morph.param"),
    "sersic_rhalf": _d("half-light radius of the fitted Sersic profile", "phys.angSize", "pix"),
    "sersic_ellip": _d("ellipticity of the fitted Sersic profile", "phys.size.axisRatio"),
    "sersic_theta": _d("position angle of the fitted Sersic profile, from the image +x axis",
                       "pos.posAng", "rad"),
    "sersic_amplitude": _d("surface brightness at rhalf of the fitted Sersic profile (image units)",
                           "phot.flux.sb"),
    "sersic_chi2_dof": _d("reduced chi^2 of the Sersic fit", "stat.fit.chi2"),
}

_MORPHOMETRICS: dict[str, ColumnDoc] = {
    **_MORPH_QUANTITY,
    **{f"{r}_arcsec": ColumnDoc("arcsec", doc.ucd, doc.description)
       for r, doc in _MORPH_QUANTITY.items() if doc.unit == "pix" and doc.ucd == "phys.angSize"},
    "method": _d("statmorph recipe that measured the row", "meta.code"),
    "band": _d("band measured (r, g, z, or luminance for RGB images)", "instr.bandpass"),
    "pxscale": _d("pixel scale used for the arcsec radii", "instr.scale", "arcsec/pix"),
    "background": _d("sky background level subtracted (image units)", "instr.skyLevel"),
    "bkg_rms": _d("RMS of the sky background (image units)", "instr.skyLevel;stat.stdev"),
    "segment_area": _d("area of the galaxy's segment", "phys.area", "pix**2"),
    "saturated_pixels": _d("number of saturated pixels in the segment", "meta.number"),
    "statmorph_flag": _d("statmorph's own quality flag (0 good ... 4 catastrophic)", "meta.code.qual"),
    "flag_sersic": _d("statmorph's Sersic-fit flag (-1: the fit was not run)", "meta.code.qual"),
    "flags": _d("features.flags.Flag morphometrics bits (0-19) saying why a value is NaN", "meta.code.qual"),
    "runtime_s": _d("time statmorph took for this row", "time.duration", "s"),
    "error": _d("error message of a failed measurement", "meta.note"),
    "statmorph_version": _d("statmorph version that measured the row", "meta.version"),
}

_BAND_UCD = {"u": "em.opt.U", "g": "em.opt.B", "r": "em.opt.R", "i": "em.opt.I", "z": "em.opt.I"}

_PHOTOMETRY: dict[str, ColumnDoc] = {
    "source": _d("catalogue the photometry was matched in", "meta.dataset"),
    "objid": _d("SDSS objID of the matched object", "meta.id.cross"),
    "sep_arcsec": _d("separation of the matched object from the galaxy's position", "pos.angDistance",
                     "arcsec"),
    "n_candidates": _d("catalogue objects within the match radius", "meta.number"),
    "type": _d("SDSS object type of the match (3 galaxy, 6 star)", "src.class"),
    "clean": _d("SDSS clean photometry flag", "meta.code.qual"),
    **{f"modelMag_{b}": _d(f"SDSS model magnitude, {b} band", f"phot.mag;{u}", "mag")
       for b, u in _BAND_UCD.items()},
    **{f"modelMagErr_{b}": _d(f"error of the SDSS model magnitude, {b} band", f"stat.error;phot.mag;{u}", "mag")
       for b, u in _BAND_UCD.items()},
    **{f"petroMag_{b}": _d(f"SDSS Petrosian magnitude, {b} band", f"phot.mag;{u}", "mag")
       for b, u in _BAND_UCD.items()},
    **{f"petroMagErr_{b}": _d(f"error of the SDSS Petrosian magnitude, {b} band", f"stat.error;phot.mag;{u}",
                              "mag") for b, u in _BAND_UCD.items()},
    **{f"extinction_{b}": _d(f"Galactic extinction, {b} band", f"phys.absorption.gal;{u}", "mag")
       for b, u in _BAND_UCD.items()},
    "petroR50_r": _d("SDSS Petrosian 50% light radius, r band", "phys.angSize;em.opt.R", "arcsec"),
    "petroR90_r": _d("SDSS Petrosian 90% light radius, r band", "phys.angSize;em.opt.R", "arcsec"),
    "fracDeV_r": _d("SDSS fraction of light in the de Vaucouleurs component, r band", "src.morph.param"),
    "specz": _d("SDSS spectroscopic redshift", "src.redshift"),
    "u_g": _d("u - g colour, extinction-corrected model magnitudes", "phot.color;em.opt.U;em.opt.B", "mag"),
    "g_r": _d("g - r colour, extinction-corrected model magnitudes", "phot.color;em.opt.B;em.opt.R", "mag"),
    "r_i": _d("r - i colour, extinction-corrected model magnitudes", "phot.color;em.opt.R;em.opt.I", "mag"),
    "i_z": _d("i - z colour, extinction-corrected model magnitudes", "phot.color;em.opt.I", "mag"),
    "u_r": _d("u - r colour, extinction-corrected model magnitudes", "phot.color;em.opt.U;em.opt.R", "mag"),
    "abs_mag_r": _d("absolute r magnitude (where a redshift exists)", "phys.magAbs;em.opt.R", "mag"),
    "abs_mag_source": _d("which redshift gave abs_mag_r (sdss_specz, catalogue_redshift)", "meta.code"),
    "abs_mag_redshift": _d("redshift used for abs_mag_r", "src.redshift"),
    "quality_ok": _d("the photometry passed the quality cuts", "meta.code.qual"),
    "flags": _d("features.flags.Flag photometry bits (20-31) saying why values are NaN", "meta.code.qual"),
}

_TRUTH: dict[str, ColumnDoc] = {
    "label": _d("true class (integer code) the galaxy was drawn as", "meta.code.class"),
    "label_name": _d("true class name the galaxy was drawn as", "src.morph.type"),
    "redshift": _d("true redshift", "src.redshift"),
    "ebv": _d("Galactic reddening E(B-V) applied", "phys.absorption.gal", "mag"),
    "stamp_size": _d("side of the rendered stamp", "meta.number;instr.pixel", "pix"),
    "centre_x_px": _d("x of the galaxy centre in the stamp", "pos.cartesian.x;instr.pixel", "pix"),
    "centre_y_px": _d("y of the galaxy centre in the stamp", "pos.cartesian.y;instr.pixel", "pix"),
    "pa_deg": _d("position angle, from the image +column axis toward +row", "pos.posAng", "deg"),
    "inclination_deg": _d("disk inclination", "src.orbital.inclination", "deg"),
    "axis_ratio": _d("projected axis ratio b/a", "phys.size.axisRatio"),
    "disk_q0": _d("intrinsic thickness of the disk", "phys.size.axisRatio"),
    "abs_mag_r": _d("true absolute r magnitude", "phys.magAbs;em.opt.R", "mag"),
    "model_mag_r": _d("true apparent r magnitude (AB, with extinction)", "phot.mag;em.opt.R", "mag"),
    "bulge_to_total": _d("bulge-to-total light ratio", "src.morph.param"),
    "asymmetry": _d("strength of the asymmetric (irregular) component", "src.morph.param"),
    "g_r": _d("true g - r colour of the rendered target", "phot.color;em.opt.B;em.opt.R", "mag"),
    "r_z": _d("true r - z colour of the rendered target", "phot.color;em.opt.R;em.opt.I", "mag"),
    "r50_arcsec": _d("circular radius containing 50% of the rendered r-band light", "phys.angSize", "arcsec"),
    "r90_arcsec": _d("circular radius containing 90% of the rendered r-band light", "phys.angSize", "arcsec"),
    "has_bar": _d("the galaxy has a bar", "src.morph"),
    "bar_angle_deg": _d("bar angle, from the image +column axis toward +row", "pos.posAng", "deg"),
    "bar_fraction": _d("fraction of the light in the bar", "src.morph.param"),
    "n_arms": _d("number of spiral arms", "src.morph.param"),
    "pitch_deg": _d("pitch angle of the spiral arms", "src.morph.param", "deg"),
    "arm_strength": _d("strength of the spiral arm modulation", "src.morph.param"),
    "n_knots": _d("number of star-forming knots", "src.morph.param"),
    "knot_fraction": _d("fraction of the light in knots", "src.morph.param"),
    "has_dust_lane": _d("the galaxy has a dust lane", "src.morph"),
    "dust_tau_r": _d("r-band optical depth of the dust lane", "phys.absorption.opticalDepth"),
    "irregular_fraction": _d("fraction of the light in irregular clumps", "src.morph.param"),
    "n_clumps": _d("number of irregular clumps", "src.morph.param"),
    "is_merger": _d("the galaxy has a merging companion", "src.morph"),
    "companion_flux_ratio": _d("flux ratio companion / galaxy", "phot.flux;arith.ratio"),
    "companion_sep_arcsec": _d("separation of the companion", "pos.angDistance", "arcsec"),
    "companion_n": _d("Sersic index of the companion", "src.morph.param"),
    "companion_hlr_arcsec": _d("half-light radius of the companion", "phys.angSize", "arcsec"),
    "companion_q": _d("axis ratio of the companion", "phys.size.axisRatio"),
    "tail_fraction": _d("fraction of the light in tidal tails", "src.morph.param"),
    "psf_beta": _d("Moffat beta of the PSF", "instr.det.psf"),
    "mask_threshold": _d("r-band sky sigma the true mask was thresholded at (nanomaggies)", "instr.skyLevel"),
    "mask_area_px": _d("area of the true galaxy mask", "phys.area", "pix**2"),
    "mask_png": _d("true galaxy mask as PNG (255 where the noiseless target exceeds the sky sigma)", "meta.code;obs.image"),
    "n_field_stars": _d("number of field stars rendered in the stamp", "meta.number"),
    "n_field_galaxies": _d("number of field galaxies rendered in the stamp", "meta.number"),
}
for _comp in ("bulge", "disk", "bar"):
    _TRUTH[f"{_comp}_n"] = _d(f"Sersic index of the {_comp}", "src.morph.param")
    _TRUTH[f"{_comp}_hlr_arcsec"] = _d(f"semi-major-axis half-light radius of the {_comp}", "phys.angSize", "arcsec")
    if _comp != "disk":
        _TRUTH[f"{_comp}_q"] = _d(f"axis ratio of the {_comp}", "phys.size.axisRatio")
for _comp in ("bulge", "disk", "knot"):
    _TRUTH[f"{_comp}_g_r"] = _d(f"g - r colour of the {_comp}", "phot.color;em.opt.B;em.opt.R", "mag")
    _TRUTH[f"{_comp}_r_z"] = _d(f"r - z colour of the {_comp}", "phot.color;em.opt.R;em.opt.I", "mag")
for _b in ("g", "r", "z"):
    _TRUTH[f"psf_fwhm_{_b}_arcsec"] = _d(f"FWHM of the PSF, {_b} band", f"instr.det.psf;{_BAND_UCD[_b]}", "arcsec")
    _TRUTH[f"sky_sigma_{_b}"] = _d(f"sky noise per pixel, {_b} band (nanomaggies)", f"instr.skyLevel;{_BAND_UCD[_b]}")
    _TRUTH[f"flux_{_b}"] = _d(f"true flux of the noiseless target, {_b} band", f"phot.flux;{_BAND_UCD[_b]}", _NMGY)
    _TRUTH[f"mag_{_b}"] = _d(f"true AB magnitude of the noiseless target, {_b} band", f"phot.mag;{_BAND_UCD[_b]}",
                             "mag")

_MAPS = {
    "method": _d("map method (pca, umap)", "meta.code"),
    "x": _d("first map coordinate (PC1 for pca)", "pos.cartesian.x"),
    "y": _d("second map coordinate (PC2 for pca)", "pos.cartesian.y"),
    "coords": _d("every stored principal component of the galaxy (pca only)", "stat.value"),
    "fitted": _d("UMAP was fitted on the galaxy (false: placed by transform)", "meta.code"),
    "params_json": _d("parameters of the map, as JSON", "meta.note"),
}

_PCA = {
    "component": _d("index of the principal component", "meta.number"),
    "explained_variance": _d("variance explained by the component", "stat.variance"),
    "explained_variance_ratio": _d("fraction of the total variance explained by the component",
                                   "stat.variance;arith.ratio"),
    "loading": _d("the principal axis (unit vector in embedding space)", "meta.number"),
    "n_vectors": _d("number of vectors the PCA was fitted on", "meta.number"),
}

_ANALYSIS = {
    "quantity": _d("physical quantity correlated with the embeddings", "meta.id"),
    "encoder": _d("encoder (pixels: the downsampled-image baseline)", "meta.id"),
    "statistic": _d("statistic (spearman_pc<k>, r2_cv, r2_cv_minus_pixels)", "meta.code"),
    "value": _d("value of the statistic", "stat.value"),
    "ci_low": _d("lower end of the 95% interval", "stat.value;stat.min"),
    "ci_high": _d("upper end of the 95% interval", "stat.value;stat.max"),
    "p": _d("p-value", "stat.probability"),
    "q": _d("Benjamini-Hochberg q over the rho grid", "stat.probability"),
    "n": _d("number of galaxies used", "meta.number"),
    "source": _d("where the quantity came from (galaxy_features, truth)", "meta.dataset"),
    "subset": _d("which rows were used (morph_ok, phot_quality_ok, all)", "meta.code"),
}

_PSEUDO_LABELS = {
    "method": _d("Otsu recipe that made the label image", "meta.code"),
    "mask_png": _d("Otsu label image as PNG (0 background, 1 disk, 2 bulge)", "meta.code;obs.image"),
    "threshold_low": _d("lower Otsu threshold (background / disk)", "instr.skyLevel"),
    "threshold_high": _d("upper Otsu threshold (disk / bulge)", "instr.skyLevel"),
    "rms": _d("RMS of the sky", "instr.skyLevel;stat.stdev"),
    "area_px": _d("area labelled galaxy (disk or bulge)", "phys.area", "pix**2"),
    "bulge_px": _d("area labelled bulge", "phys.area", "pix**2"),
    "flags": _d("features.flags.Flag segmentation bits (SEG_OTSU_FAILED, ...)", "meta.code.qual"),
}

_MASK_FEATURES = {
    "area_arcsec2": _d("area of the predicted galaxy mask", "phys.area", "arcsec**2"),
    "centroid_x_px": _d("x of the mask centroid in the stamp", "pos.cartesian.x;instr.pixel", "pix"),
    "centroid_y_px": _d("y of the mask centroid in the stamp", "pos.cartesian.y;instr.pixel", "pix"),
    "ellipticity": _d("ellipticity 1 - b/a of the predicted mask", "phys.size.axisRatio"),
    "bulge_fraction": _d("fraction of the mask labelled bulge", "src.morph.param"),
    "covers_centre": _d("the mask covers the stamp centre", "meta.code.qual"),
    "split": _d("train, val or test split of the galaxy for the segmentation model", "meta.code"),
    "iou_truth": _d("IoU of the predicted galaxy mask with the true mask", "stat.fit.goodness"),
    "dice_truth": _d("Dice of the predicted galaxy mask with the true mask", "stat.fit.goodness"),
    "otsu_iou_truth": _d("IoU of the Otsu pseudo-label with the true mask", "stat.fit.goodness"),
    "otsu_dice_truth": _d("Dice of the Otsu pseudo-label with the true mask", "stat.fit.goodness"),
    "iou_otsu": _d("IoU of the predicted mask with the galaxy's Otsu pseudo-label", "stat.fit.goodness"),
}

_MASKS = {
    **_MASK_FEATURES,
    "model_name": _d("name of the segmentation model", "meta.id"),
    "model_version": _d("version of the segmentation model", "meta.version"),
    "mask_png": _d("predicted label image as PNG (0 background, 1 disk, 2 bulge)", "meta.code;obs.image"),
    "area_px": _d("area of the predicted galaxy mask", "phys.area", "pix**2"),
    "flags": _d("features.flags.Flag segmentation bits", "meta.code.qual"),
}

_SPLITS = {
    "label": _d("label (integer code) the split was stratified on", "meta.code.class"),
    "label_name": _d("label name the split was stratified on", "src.morph.type"),
    "seed": _d("split seed", "meta.code"),
}

_MODELS = {
    "name": _d("model name", "meta.id;meta.main"),
    "version": _d("model version", "meta.version"),
    "kind": _d("kind of model (head, finetune, fusion, unet, ...)", "meta.code"),
    "classes_json": _d("class names of the model's outputs, as JSON", "meta.note"),
    "config_json": _d("training configuration, as JSON", "meta.note"),
    "seed": _d("training seed", "meta.code"),
    "split_seed": _d("seed of the split set trained on", "meta.code"),
    "split_version": _d("Lance version of the splits table read", "meta.version"),
    "metrics_json": _d("evaluation metrics, as JSON", "meta.note"),
    "test_balanced_accuracy": _d("balanced accuracy on the test split", "stat.fit.goodness"),
    "test_balanced_accuracy_low": _d("lower end of the 95% bootstrap interval of the test balanced accuracy",
                                     "stat.value;stat.min"),
    "test_balanced_accuracy_high": _d("upper end of the 95% bootstrap interval of the test balanced accuracy",
                                      "stat.value;stat.max"),
    "gate_passed": _d("the model beat the same-run baselines (only then are predictions written)", "meta.code.qual"),
    "gate_json": _d("every number behind the gate, as JSON", "meta.note"),
    "excluded_classes_json": _d("classes the rare-class rule left out, as JSON", "meta.note"),
    "artefact_path": _d("directory of the model's artefacts", "meta.ref"),
    "table_versions_json": _d("Lance version of every table read in training, as JSON", "meta.note"),
    "train_seconds": _d("training time", "time.duration", "s"),
}

_PREDICTIONS = {
    "probabilities": _d("class probabilities, in the order of the model's classes", "stat.probability"),
    "predicted_label": _d("predicted class (integer code)", "meta.code.class"),
    "predicted_name": _d("predicted class name", "src.morph.type"),
    "split_hash": _d("content hash of the split set the split column comes from", "meta.checksum"),
    "temperature": _d("calibration temperature T fitted on the val split", "stat.param"),
    "calibrated_probabilities": _d("softmax(log p / T)", "stat.probability"),
    "conformal_set": _d("class-conditional conformal prediction set (class names)", "meta.code.class"),
    "conformal_set_size": _d("number of classes in the conformal set", "meta.number"),
    "marginal_set": _d("marginal conformal prediction set (class names)", "meta.code.class"),
    "predictive_entropy": _d("predictive entropy over MC-dropout passes", "stat.value"),
    "mutual_information": _d("mutual information over MC-dropout passes (epistemic)", "stat.value"),
    "mc_dropout": _d("why MC-dropout values are null, if they are", "meta.note"),
}

_FUSION_INPUTS = {
    "missing_modalities": _d("input modalities imputed with the training medians", "meta.note"),
    "flags": _d("features.flags.Flag.MODALITY_MISSING when any modality was imputed", "meta.code.qual"),
}

_ANOMALY_SCORES = {
    "method": _d("anomaly method: iforest (isolation forest) or knn (distance to the k-th neighbour)", "meta.code"),
    "score": _d("raw anomaly score of the method (larger = more anomalous)", "stat.value"),
    "rank": _d("anomaly rank in [0, 1] among the galaxies scored together (1 = most anomalous)", "stat.value"),
    "embeddings_version": _d("Lance version of the embeddings table the scores were fitted on", "meta.version"),
    "params_json": _d("parameters of the fit, as JSON", "meta.note"),
}

_LABELS = {
    "label_id": _d("identifier of one act of labelling (UUID)", "meta.id"),
    "name": _d("label name given by a person (interesting, artefact, a class name)", "meta.code.class"),
    "value": _d("label value: 1 yes, 0 no, grades between", "meta.code"),
    "who": _d("person who labelled", "meta.id.PI"),
    "labelled_at": _d("time the label was given (UTC)", "time.creation"),
    "source": _d("where the label came from: cli, page, api or import", "meta.code"),
}

_RANKINGS = {
    "label": _d("label name the ranking looks for (a people's label, not the catalogue class)", "meta.code.class"),
    "who": _LABELS["who"],
    "score": _d("ranking score: the model's prediction mixed with the anomaly rank (larger = shown earlier)",
                "stat.value"),
    "prediction": _d("ranking model's prediction that the galaxy has the label", "stat.probability"),
    "uncertainty": _d("ranking model's uncertainty about its prediction", "stat.error"),
    "anomaly_rank": _ANOMALY_SCORES["rank"],
    "position": _d("acquisition order shown to a person, 1-based (0 for a galaxy already labelled)", "meta.number"),
    "labelled_value": _d("the person's own label value where the galaxy is labelled", "meta.code"),
    "n_labels": _d("number of labels the ranking model was trained on", "meta.number"),
    "labels_version": _d("Lance version of the labels table used", "meta.version"),
    "embeddings_version": _ANOMALY_SCORES["embeddings_version"],
    "anomaly_version": _d("Lance version of the anomaly_scores table used", "meta.version"),
    "params_json": _ANOMALY_SCORES["params_json"],
}

_TABLES: dict[str, dict[str, ColumnDoc]] = {
    "galaxies": _GALAXIES,
    "sources": _SOURCES,
    "morphometrics": _MORPHOMETRICS,
    "photometry": _PHOTOMETRY,
    "truth": _TRUTH,
    "embedding_maps": _MAPS,
    "embedding_pca": _PCA,
    "representation_analysis": _ANALYSIS,
    "pseudo_labels": _PSEUDO_LABELS,
    "masks": _MASKS,
    "splits": _SPLITS,
    "models": _MODELS,
    "predictions": _PREDICTIONS,
    "fusion_inputs": _FUSION_INPUTS,
    "anomaly_scores": _ANOMALY_SCORES,
    "labels": _LABELS,
    "rankings": _RANKINGS,
}

# --- views (sql/*.sql): their columns in order, and what differs from the tables they read ---------------

_MORPH_BANDS = {"r": "r band", "g": "g band", "z": "z band", "luminance": "luminance proxy of an RGB image"}


def _morphology_view() -> dict[str, ColumnDoc]:
    docs = {"galaxy_id": _COMMON["galaxy_id"], "shard": _COMMON["shard"],
            "image_kind": _COMMON["image_kind"],
            "method_r": _d("statmorph recipe of the r-band row", "meta.code")}
    per_band = {"r": ("gini", "m20", "concentration", "asymmetry", "smoothness", "sersic_n", "r50_arcsec"),
                "g": ("gini", "concentration", "asymmetry"), "z": ("gini", "concentration", "asymmetry"),
                "luminance": ("gini", "m20", "concentration", "asymmetry")}
    for band, quantities in per_band.items():
        for q in quantities:
            base = _MORPHOMETRICS[q]
            docs[f"{q}_{band}"] = ColumnDoc(base.unit, base.ucd, f"{base.description}, {_MORPH_BANDS[band]}")
        docs[f"flags_{band}"] = ColumnDoc(None, "meta.code.qual",
                                          f"morphometrics flags, {_MORPH_BANDS[band]}")
    docs["bands_measured"] = _d("number of bands measured", "meta.number")
    return docs


def _galaxy_features_view() -> dict[str, ColumnDoc]:
    docs = {c: _COMMON[c] for c in ("galaxy_id", "source", "native_id", "shard", "ra", "dec", "redshift",
                                    "pxscale", "label", "label_name", "duplicate_group")}
    docs["image_flags"] = ColumnDoc(None, "meta.code.qual", _GALAXIES["flags"].description)
    docs["morph_band"] = _d("band of the morphometrics shown (r, else luminance, else the first measured)",
                            "instr.bandpass")
    docs["morph_method"] = _d("statmorph recipe of the morphometrics shown", "meta.code")
    for q in ("gini", "m20", "gini_m20_bulge", "gini_m20_merger", "concentration", "asymmetry", "smoothness",
              "multimode", "intensity", "deviation", "outer_asymmetry", "shape_asymmetry", "r20_arcsec",
              "r50_arcsec", "r80_arcsec", "rpetro_circ_arcsec", "ellipticity", "elongation", "sersic_n",
              "sersic_rhalf_arcsec", "sn_per_pixel"):
        docs[q] = _MORPHOMETRICS[q]
    docs["morph_flags"] = ColumnDoc(None, "meta.code.qual", _MORPHOMETRICS["flags"].description)
    docs["morph_ok"] = _d("morphometrics measured and trusted (no MORPH_UNTRUSTED flag bit)", "meta.code.qual")
    for b in ("g", "r", "z"):
        docs[f"mag_{b}"] = _PHOTOMETRY[f"modelMag_{b}"]
    for c in ("u_g", "g_r", "r_i", "i_z", "u_r"):
        docs[c] = _PHOTOMETRY[c]
    docs["petro_r50_r"] = _PHOTOMETRY["petroR50_r"]
    docs["petro_r90_r"] = _PHOTOMETRY["petroR90_r"]
    docs["frac_dev_r"] = _PHOTOMETRY["fracDeV_r"]
    docs["specz"] = _PHOTOMETRY["specz"]
    docs["match_sep_arcsec"] = _PHOTOMETRY["sep_arcsec"]
    docs["phot_quality_ok"] = _PHOTOMETRY["quality_ok"]
    docs["phot_flags"] = ColumnDoc(None, "meta.code.qual", _PHOTOMETRY["flags"].description)
    return docs


def _galaxy_images_view() -> dict[str, ColumnDoc]:
    names = ("galaxy_id", "source", "native_id", "shard", "ra", "dec", "redshift", "pxscale", "label",
             "label_name", "duplicate_group", "flags", "height", "width", "channels", "dtype", "bands",
             "image_kind", "encoding", "image_bytes")
    return {c: _GALAXIES.get(c, _COMMON[c]) for c in names}


def _latest_predictions_view() -> dict[str, ColumnDoc]:
    docs = {c: _PREDICTIONS.get(c, _COMMON.get(c)) for c in ("galaxy_id", "model_name", "model_version",
                                                                "predicted_label", "predicted_name")}
    docs["confidence"] = _d("largest class probability", "stat.probability")
    docs["probabilities"] = _PREDICTIONS["probabilities"]
    docs["split"] = _COMMON["split"]
    docs["label"] = _COMMON["label"]
    docs["label_name"] = _COMMON["label_name"]
    docs["correct"] = _d("the predicted class is the catalogue label", "meta.code.qual")
    return docs  # type: ignore[return-value]


def _galaxy_masks_view() -> dict[str, ColumnDoc]:
    docs = {"galaxy_id": _COMMON["galaxy_id"], "label_name": _COMMON["label_name"],
            "model_name": _MASKS["model_name"], "model_version": _MASKS["model_version"],
            "gate_passed": _d("the segmentation model beat Otsu against the demo's true masks", "meta.code.qual"),
            "split": _MASKS["split"], "area_px": _MASKS["area_px"]}
    for c in ("area_arcsec2", "centroid_x_px", "centroid_y_px", "ellipticity", "bulge_fraction", "covers_centre",
              "iou_otsu", "iou_truth", "dice_truth", "otsu_iou_truth", "otsu_dice_truth"):
        docs[c] = _MASK_FEATURES[c]
    docs["mask_flags"] = ColumnDoc(None, "meta.code.qual", _MASKS["flags"].description)
    return docs


def _uncertain_galaxies_view() -> dict[str, ColumnDoc]:
    docs = {"galaxy_id": _COMMON["galaxy_id"], "image_sha1": _COMMON["image_sha1"],
            "model_name": _COMMON["model_name"], "model_version": _COMMON["model_version"],
            "split": _COMMON["split"], "predicted_name": _PREDICTIONS["predicted_name"]}
    for c in ("conformal_set", "conformal_set_size", "marginal_set", "temperature"):
        docs[c] = _PREDICTIONS[c]
    docs["calibrated_confidence"] = _d("largest calibrated class probability", "stat.probability")
    docs["predictive_entropy"] = _PREDICTIONS["predictive_entropy"]
    docs["mutual_information"] = _PREDICTIONS["mutual_information"]
    docs["high_mutual_information"] = _d("mutual information in the top decile of the model version's galaxies",
                                         "meta.code.qual")
    docs["label_name"] = _COMMON["label_name"]
    return docs


def _anomalies_view() -> dict[str, ColumnDoc]:
    docs = {"galaxy_id": _COMMON["galaxy_id"], "encoder": _COMMON["encoder"], "method": _ANOMALY_SCORES["method"],
            "anomaly_score": _ANOMALY_SCORES["score"], "anomaly_rank": _ANOMALY_SCORES["rank"],
            "embeddings_version": _ANOMALY_SCORES["embeddings_version"]}
    docs.update({c: doc for c, doc in _galaxy_features_view().items() if c != "galaxy_id"})
    return docs


def _latest_labels_view() -> dict[str, ColumnDoc]:
    return {c: _LABELS.get(c) or _COMMON[c]
            for c in ("galaxy_id", "name", "value", "who", "labelled_at", "source", "label_id")}


_VIEWS: dict[str, dict[str, ColumnDoc]] = {
    "galaxy_images": _galaxy_images_view(),
    "morphology": _morphology_view(),
    "galaxy_features": _galaxy_features_view(),
    "latest_predictions": _latest_predictions_view(),
    "galaxy_masks": _galaxy_masks_view(),
    "uncertain_galaxies": _uncertain_galaxies_view(),
    "anomalies": _anomalies_view(),
    "latest_labels": _latest_labels_view(),
}

VIEW_COLUMNS: dict[str, tuple[str, ...]] = {name: tuple(docs) for name, docs in _VIEWS.items()}
"""The columns of each documented view, in the view's order (a test keeps them equal to ``sql/*.sql``)."""

_UNDOCUMENTED = ColumnDoc(None, None, "")


def _table_docs(name: str) -> dict[str, ColumnDoc]:
    own = _TABLES.get(name, {})
    if name.startswith("embeddings_"):
        own = _EMBEDDINGS
    return {f.name: own.get(f.name) or _COMMON.get(f.name) or _UNDOCUMENTED for f in schemas.get(name).schema}


def column_docs(table_or_view: str) -> dict[str, ColumnDoc]:
    """Unit, UCD and description of every column of a registered table or a view, in column order.

    Parameters
    ----------
    table_or_view : str
        A table of :func:`warehouse.schemas.registered` (provenance columns included) or a view of
        ``sql/*.sql``.

    Returns
    -------
    dict of str to ColumnDoc
        One entry per column; a column nobody documented has an empty description (a test forbids it).

    Raises
    ------
    KeyError
        Neither a registered table nor a documented view (the message names the known ones).
    """
    if table_or_view in _VIEWS:
        return dict(_VIEWS[table_or_view])
    if table_or_view in schemas.registered():
        return _table_docs(table_or_view)
    known = sorted(set(schemas.registered()) | set(_VIEWS))
    raise KeyError(f"no table or view {table_or_view!r} is documented; known: {', '.join(known)}")


def documented_relations() -> list[str]:
    """Every table and view :func:`column_docs` answers for, sorted."""
    return sorted(set(schemas.registered()) | set(_VIEWS))


def find_doc(column: str, relations: tuple[str, ...] | list[str] = ()) -> ColumnDoc | None:
    """The doc of a result column by name: from the first of ``relations`` that has it, else a common one.

    For the columns of a query's result (``SELECT gini, ra FROM galaxy_features``), where only the
    names are known; ``None`` when nothing matches (a computed column).
    """
    for rel in relations:
        try:
            doc = column_docs(rel).get(column)
        except KeyError:
            continue
        if doc is not None and doc.description:
            return doc
    return _COMMON.get(column)


def undocumented() -> dict[str, list[str]]:
    """Relation -> its columns without a description (empty when the registry covers every column)."""
    out: dict[str, list[str]] = {}
    for rel in documented_relations():
        missing = [c for c, doc in column_docs(rel).items() if not doc.description]
        if missing:
            out[rel] = missing
    return out
