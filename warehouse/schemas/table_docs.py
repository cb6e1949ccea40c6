"""The column documentation of every registered table (the data half of :mod:`warehouse.schemas.columns`).

One :class:`ColumnDoc` per column: unit (VOUnit), UCD (UCD1+) and a one-line description. A column
named the same in several tables means the same thing unless a table overrides it (:data:`COMMON`,
then the table's own entries in :data:`TABLES`). The views' columns, and the look-ups every reader
uses, are in :mod:`warehouse.schemas.columns`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COMMON", "EMBEDDINGS", "TABLES", "ColumnDoc", "doc"]


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


def doc(description: str, ucd: str | None = None, unit: str | None = None) -> ColumnDoc:
    return ColumnDoc(unit=unit, ucd=ucd, description=description)


_FLAGS = "bit mask of features.flags.Flag saying why values are missing or untrusted"
_NMGY = "3.631uJy"  # one nanomaggy (AB zeropoint 22.5)

COMMON: dict[str, ColumnDoc] = {
    # identity and provenance
    "galaxy_id": doc("galaxy identifier, unique in the warehouse (source:native id)", "meta.id;meta.main"),
    "source": doc("name of the image source the galaxy came from", "meta.dataset"),
    "native_id": doc("identifier of the galaxy in its source catalogue", "meta.id"),
    "shard": doc("storage shard of the row (partition of the source)", "meta.code"),
    "row_index": doc("row of the galaxy in its source shard", "meta.number"),
    "code_version": doc("version of the code that wrote the row", "meta.version"),
    "run_id": doc("pipeline run that wrote the row", "meta.id"),
    "written_at": doc("time the row was written (UTC)", "time.creation"),
    "flags": doc(_FLAGS, "meta.code.qual"),
    # position and catalogue
    "ra": doc("right ascension, ICRS", "pos.eq.ra;meta.main", "deg"),
    "dec": doc("declination, ICRS", "pos.eq.dec;meta.main", "deg"),
    "redshift": doc("redshift from the source catalogue", "src.redshift"),
    "pxscale": doc("pixel scale of the stored stamp", "instr.scale", "arcsec/pix"),
    "label": doc("class label (integer code) from the source", "meta.code.class"),
    "label_name": doc("class label name from the source", "src.morph.type"),
    "duplicate_group": doc("group of images of the same object (near-duplicates), if any", "meta.id.cross"),
    "extra_json": doc("further catalogue columns of the source, as JSON", "meta.note"),
    "image_sha1": doc("SHA-1 of the stored image bytes", "meta.checksum"),
    # images
    "encoding": doc("encoding of the stored image bytes (png, npy)", "meta.code"),
    "data": doc("the stored image bytes", "meta.code;obs.image"),
    "height": doc("image height", "meta.number;instr.pixel", "pix"),
    "width": doc("image width", "meta.number;instr.pixel", "pix"),
    "channels": doc("number of image channels (bands)", "meta.number"),
    "dtype": doc("numpy dtype of the image pixels", "meta.code"),
    "bands": doc("band of each channel, comma-separated", "instr.bandpass"),
    "image_kind": doc("what the pixels are (flux-calibrated, rgb composite, ...)", "meta.code"),
    "stretch_json": doc("the display stretch applied to the pixels, as JSON", "meta.note"),
    "image_bytes": doc("size of the stored image", "phys.size", "byte"),
    # sources
    "kind": doc("kind of the entry", "meta.code"),
    "path": doc("where the source's data came from", "meta.ref.url"),
    "catalog": doc("catalogue file of the source", "meta.ref"),
    "fingerprint": doc("checksum of the source's data (Source.fingerprint)", "meta.checksum"),
    "shard_size": doc("galaxies per shard", "meta.number"),
    "n_galaxies": doc("number of galaxies in the source", "meta.number"),
    "params_json": doc("parameters, as JSON", "meta.note"),
    # embeddings and analysis
    "encoder": doc("name of the image encoder", "meta.id"),
    "weights_sha256": doc("SHA-256 of the encoder's weights (or of its seeded initial state)", "meta.checksum"),
    "weights_origin": doc("where the weights came from (local, cache, download, random init, self-supervised)",
                         "meta.note"),
    "vector": doc("embedding: the encoder's CLS token, used for similarity search", "meta.number"),
    "patch_mean": doc("embedding: the mean of the encoder's patch tokens", "meta.number"),
    "embeddings_version": doc("Lance version of the embeddings table the row was computed from", "meta.version"),
    "method": doc("method or recipe that produced the row", "meta.code"),
    "band": doc("band measured", "instr.bandpass"),
    # models, splits, predictions
    "model_name": doc("name of the model", "meta.id"),
    "model_version": doc("version of the model", "meta.version"),
    "split": doc("train, val or test split of the galaxy", "meta.code"),
    "split_name": doc("split set: label column, split seed and fractions", "meta.id"),
    "split_hash": doc("content hash of the split set used", "meta.checksum"),
    "label_column": doc("catalogue column the labels come from", "meta.id"),
    "seed": doc("random seed", "meta.code"),
    "mask_png": doc("label image as PNG (0 background, 1 galaxy / disk, 2 bulge)", "meta.code;obs.image"),
    "area_px": doc("area of the mask", "phys.area", "pix**2"),
    "background": doc("sky background level", "instr.skyLevel"),
    "ellipticity": doc("ellipticity 1 - b/a", "phys.size.axisRatio"),
    "asymmetry": doc("rotational asymmetry A", "src.morph.param"),
    "r50_arcsec": doc("radius containing 50% of the light", "phys.angSize", "arcsec"),
    "abs_mag_r": doc("absolute r magnitude", "phys.magAbs;em.opt.R", "mag"),
    "g_r": doc("g - r colour", "phot.color;em.opt.B;em.opt.R", "mag"),
}

GALAXIES = {
    "flags": doc("features.flags.Flag bits of the image and catalogue (POSITION_UNKNOWN, ...)", "meta.code.qual"),
}

_SOURCES = {
    "source": doc("name of the source, unique", "meta.id;meta.main"),
    "kind": doc("kind of source (demo, galaxy10, folder)", "meta.code"),
}

EMBEDDINGS = {
    "flags": doc("features.flags.Flag bits (RANDOM_WEIGHTS, image flags)", "meta.code.qual"),
}

_MORPH_QUANTITY = {
    "gini": doc("Gini coefficient of the pixel flux distribution", "src.morph.param"),
    "m20": doc("M20: second moment of the brightest 20% of the light", "src.morph.param"),
    "gini_m20_bulge": doc("Gini-M20 bulge statistic F(G, M20)", "src.morph.param"),
    "gini_m20_merger": doc("Gini-M20 merger statistic S(G, M20)", "src.morph.param"),
    "concentration": doc("concentration C = 5 log10(r80 / r20)", "src.morph.param"),
    "asymmetry": doc("rotational asymmetry A", "src.morph.param"),
    "smoothness": doc("smoothness (clumpiness) S", "src.morph.param"),
    "multimode": doc("multimode statistic M", "src.morph.param"),
    "intensity": doc("intensity statistic I", "src.morph.param"),
    "deviation": doc("deviation statistic D", "src.morph.param"),
    "outer_asymmetry": doc("outer asymmetry A_O", "src.morph.param"),
    "shape_asymmetry": doc("shape asymmetry A_S", "src.morph.param"),
    "rms_asymmetry2": doc("RMS asymmetry squared", "src.morph.param"),
    "r20": doc("radius containing 20% of the light", "phys.angSize", "pix"),
    "r50": doc("radius containing 50% of the light", "phys.angSize", "pix"),
    "r80": doc("radius containing 80% of the light", "phys.angSize", "pix"),
    "rpetro_circ": doc("circular Petrosian radius", "phys.angSize", "pix"),
    "rpetro_ellip": doc("elliptical Petrosian radius", "phys.angSize", "pix"),
    "rhalf_circ": doc("circular half-light radius", "phys.angSize", "pix"),
    "rhalf_ellip": doc("elliptical half-light radius", "phys.angSize", "pix"),
    "rmax_circ": doc("circular radius of the segment's farthest pixel", "phys.angSize", "pix"),
    "ellipticity": doc("ellipticity 1 - b/a of the light distribution", "phys.size.axisRatio"),
    "elongation": doc("elongation a/b of the light distribution", "phys.size.axisRatio"),
    "orientation": doc("position angle of the major axis, from the image +x axis", "pos.posAng", "rad"),
    "xc_centroid": doc("x of the light centroid in the stamp", "pos.cartesian.x;instr.pixel", "pix"),
    "yc_centroid": doc("y of the light centroid in the stamp", "pos.cartesian.y;instr.pixel", "pix"),
    "xc_asymmetry": doc("x of the asymmetry centre in the stamp", "pos.cartesian.x;instr.pixel", "pix"),
    "yc_asymmetry": doc("y of the asymmetry centre in the stamp", "pos.cartesian.y;instr.pixel", "pix"),
    "flux_circ": doc("flux within the circular Petrosian aperture (image units)", "phot.flux"),
    "sky_sigma": doc("standard deviation of the sky (image units)", "instr.skyLevel;stat.stdev"),
    "sn_per_pixel": doc("mean signal-to-noise per pixel of the segment", "stat.snr"),
    "sersic_n": doc("Sersic index of the fitted profile", "src.morph.param"),
    "sersic_rhalf": doc("half-light radius of the fitted Sersic profile", "phys.angSize", "pix"),
    "sersic_ellip": doc("ellipticity of the fitted Sersic profile", "phys.size.axisRatio"),
    "sersic_theta": doc("position angle of the fitted Sersic profile, from the image +x axis",
                       "pos.posAng", "rad"),
    "sersic_amplitude": doc("surface brightness at rhalf of the fitted Sersic profile (image units)",
                           "phot.flux.sb"),
    "sersic_chi2_dof": doc("reduced chi^2 of the Sersic fit", "stat.fit.chi2"),
}

MORPHOMETRICS: dict[str, ColumnDoc] = {
    **_MORPH_QUANTITY,
    **{f"{r}_arcsec": ColumnDoc("arcsec", doc.ucd, doc.description)
       for r, doc in _MORPH_QUANTITY.items() if doc.unit == "pix" and doc.ucd == "phys.angSize"},
    "method": doc("statmorph recipe that measured the row", "meta.code"),
    "band": doc("band measured (r, g, z, or luminance for RGB images)", "instr.bandpass"),
    "pxscale": doc("pixel scale used for the arcsec radii", "instr.scale", "arcsec/pix"),
    "background": doc("sky background level subtracted (image units)", "instr.skyLevel"),
    "bkg_rms": doc("RMS of the sky background (image units)", "instr.skyLevel;stat.stdev"),
    "segment_area": doc("area of the galaxy's segment", "phys.area", "pix**2"),
    "saturated_pixels": doc("number of saturated pixels in the segment", "meta.number"),
    "statmorph_flag": doc("statmorph's own quality flag (0 good ... 4 catastrophic)", "meta.code.qual"),
    "flag_sersic": doc("statmorph's Sersic-fit flag (-1: the fit was not run)", "meta.code.qual"),
    "flags": doc("features.flags.Flag morphometrics bits (0-19) saying why a value is NaN", "meta.code.qual"),
    "runtime_s": doc("time statmorph took for this row", "time.duration", "s"),
    "error": doc("error message of a failed measurement", "meta.note"),
    "statmorph_version": doc("statmorph version that measured the row", "meta.version"),
}

_BAND_UCD = {"u": "em.opt.U", "g": "em.opt.B", "r": "em.opt.R", "i": "em.opt.I", "z": "em.opt.I"}

PHOTOMETRY: dict[str, ColumnDoc] = {
    "source": doc("catalogue the photometry was matched in", "meta.dataset"),
    "objid": doc("SDSS objID of the matched object", "meta.id.cross"),
    "sep_arcsec": doc("separation of the matched object from the galaxy's position", "pos.angDistance",
                     "arcsec"),
    "n_candidates": doc("catalogue objects within the match radius", "meta.number"),
    "type": doc("SDSS object type of the match (3 galaxy, 6 star)", "src.class"),
    "clean": doc("SDSS clean photometry flag", "meta.code.qual"),
    **{f"modelMag_{b}": doc(f"SDSS model magnitude, {b} band", f"phot.mag;{u}", "mag")
       for b, u in _BAND_UCD.items()},
    **{f"modelMagErr_{b}": doc(f"error of the SDSS model magnitude, {b} band", f"stat.error;phot.mag;{u}", "mag")
       for b, u in _BAND_UCD.items()},
    **{f"petroMag_{b}": doc(f"SDSS Petrosian magnitude, {b} band", f"phot.mag;{u}", "mag")
       for b, u in _BAND_UCD.items()},
    **{f"petroMagErr_{b}": doc(f"error of the SDSS Petrosian magnitude, {b} band", f"stat.error;phot.mag;{u}",
                              "mag") for b, u in _BAND_UCD.items()},
    **{f"extinction_{b}": doc(f"Galactic extinction, {b} band", f"phys.absorption.gal;{u}", "mag")
       for b, u in _BAND_UCD.items()},
    "petroR50_r": doc("SDSS Petrosian 50% light radius, r band", "phys.angSize;em.opt.R", "arcsec"),
    "petroR90_r": doc("SDSS Petrosian 90% light radius, r band", "phys.angSize;em.opt.R", "arcsec"),
    "fracDeV_r": doc("SDSS fraction of light in the de Vaucouleurs component, r band", "src.morph.param"),
    "specz": doc("SDSS spectroscopic redshift", "src.redshift"),
    "u_g": doc("u - g colour, extinction-corrected model magnitudes", "phot.color;em.opt.U;em.opt.B", "mag"),
    "g_r": doc("g - r colour, extinction-corrected model magnitudes", "phot.color;em.opt.B;em.opt.R", "mag"),
    "r_i": doc("r - i colour, extinction-corrected model magnitudes", "phot.color;em.opt.R;em.opt.I", "mag"),
    "i_z": doc("i - z colour, extinction-corrected model magnitudes", "phot.color;em.opt.I", "mag"),
    "u_r": doc("u - r colour, extinction-corrected model magnitudes", "phot.color;em.opt.U;em.opt.R", "mag"),
    "abs_mag_r": doc("absolute r magnitude (where a redshift exists)", "phys.magAbs;em.opt.R", "mag"),
    "abs_mag_source": doc("which redshift gave abs_mag_r (sdss_specz, catalogue_redshift)", "meta.code"),
    "abs_mag_redshift": doc("redshift used for abs_mag_r", "src.redshift"),
    "quality_ok": doc("the photometry passed the quality cuts", "meta.code.qual"),
    "flags": doc("features.flags.Flag photometry bits (20-31) saying why values are NaN", "meta.code.qual"),
}

_TRUTH: dict[str, ColumnDoc] = {
    "label": doc("true class (integer code) the galaxy was drawn as", "meta.code.class"),
    "label_name": doc("true class name the galaxy was drawn as", "src.morph.type"),
    "redshift": doc("true redshift", "src.redshift"),
    "ebv": doc("Galactic reddening E(B-V) applied", "phys.absorption.gal", "mag"),
    "stamp_size": doc("side of the rendered stamp", "meta.number;instr.pixel", "pix"),
    "centre_x_px": doc("x of the galaxy centre in the stamp", "pos.cartesian.x;instr.pixel", "pix"),
    "centre_y_px": doc("y of the galaxy centre in the stamp", "pos.cartesian.y;instr.pixel", "pix"),
    "pa_deg": doc("position angle, from the image +column axis toward +row", "pos.posAng", "deg"),
    "inclination_deg": doc("disk inclination", "src.orbital.inclination", "deg"),
    "axis_ratio": doc("projected axis ratio b/a", "phys.size.axisRatio"),
    "disk_q0": doc("intrinsic thickness of the disk", "phys.size.axisRatio"),
    "abs_mag_r": doc("true absolute r magnitude", "phys.magAbs;em.opt.R", "mag"),
    "model_mag_r": doc("true apparent r magnitude (AB, with extinction)", "phot.mag;em.opt.R", "mag"),
    "bulge_to_total": doc("bulge-to-total light ratio", "src.morph.param"),
    "asymmetry": doc("strength of the asymmetric (irregular) component", "src.morph.param"),
    "g_r": doc("true g - r colour of the rendered target", "phot.color;em.opt.B;em.opt.R", "mag"),
    "r_z": doc("true r - z colour of the rendered target", "phot.color;em.opt.R;em.opt.I", "mag"),
    "r50_arcsec": doc("circular radius containing 50% of the rendered r-band light", "phys.angSize", "arcsec"),
    "r90_arcsec": doc("circular radius containing 90% of the rendered r-band light", "phys.angSize", "arcsec"),
    "has_bar": doc("the galaxy has a bar", "src.morph"),
    "bar_angle_deg": doc("bar angle, from the image +column axis toward +row", "pos.posAng", "deg"),
    "bar_fraction": doc("fraction of the light in the bar", "src.morph.param"),
    "n_arms": doc("number of spiral arms", "src.morph.param"),
    "pitch_deg": doc("pitch angle of the spiral arms", "src.morph.param", "deg"),
    "arm_strength": doc("strength of the spiral arm modulation", "src.morph.param"),
    "n_knots": doc("number of star-forming knots", "src.morph.param"),
    "knot_fraction": doc("fraction of the light in knots", "src.morph.param"),
    "has_dust_lane": doc("the galaxy has a dust lane", "src.morph"),
    "dust_tau_r": doc("r-band optical depth of the dust lane", "phys.absorption.opticalDepth"),
    "irregular_fraction": doc("fraction of the light in irregular clumps", "src.morph.param"),
    "n_clumps": doc("number of irregular clumps", "src.morph.param"),
    "is_merger": doc("the galaxy has a merging companion", "src.morph"),
    "companion_flux_ratio": doc("flux ratio companion / galaxy", "phot.flux;arith.ratio"),
    "companion_sep_arcsec": doc("separation of the companion", "pos.angDistance", "arcsec"),
    "companion_n": doc("Sersic index of the companion", "src.morph.param"),
    "companion_hlr_arcsec": doc("half-light radius of the companion", "phys.angSize", "arcsec"),
    "companion_q": doc("axis ratio of the companion", "phys.size.axisRatio"),
    "tail_fraction": doc("fraction of the light in tidal tails", "src.morph.param"),
    "psf_beta": doc("Moffat beta of the PSF", "instr.det.psf"),
    "mask_threshold": doc("r-band sky sigma the true mask was thresholded at (nanomaggies)", "instr.skyLevel"),
    "mask_area_px": doc("area of the true galaxy mask", "phys.area", "pix**2"),
    "mask_png": doc("true galaxy mask as PNG (255 where the noiseless target exceeds the sky sigma)", "meta.code;obs.image"),
    "n_field_stars": doc("number of field stars rendered in the stamp", "meta.number"),
    "n_field_galaxies": doc("number of field galaxies rendered in the stamp", "meta.number"),
}
for _comp in ("bulge", "disk", "bar"):
    _TRUTH[f"{_comp}_n"] = doc(f"Sersic index of the {_comp}", "src.morph.param")
    _TRUTH[f"{_comp}_hlr_arcsec"] = doc(f"semi-major-axis half-light radius of the {_comp}", "phys.angSize", "arcsec")
    if _comp != "disk":
        _TRUTH[f"{_comp}_q"] = doc(f"axis ratio of the {_comp}", "phys.size.axisRatio")
for _comp in ("bulge", "disk", "knot"):
    _TRUTH[f"{_comp}_g_r"] = doc(f"g - r colour of the {_comp}", "phot.color;em.opt.B;em.opt.R", "mag")
    _TRUTH[f"{_comp}_r_z"] = doc(f"r - z colour of the {_comp}", "phot.color;em.opt.R;em.opt.I", "mag")
for _b in ("g", "r", "z"):
    _TRUTH[f"psf_fwhm_{_b}_arcsec"] = doc(f"FWHM of the PSF, {_b} band", f"instr.det.psf;{_BAND_UCD[_b]}", "arcsec")
    _TRUTH[f"sky_sigma_{_b}"] = doc(f"sky noise per pixel, {_b} band (nanomaggies)", f"instr.skyLevel;{_BAND_UCD[_b]}")
    _TRUTH[f"flux_{_b}"] = doc(f"true flux of the noiseless target, {_b} band", f"phot.flux;{_BAND_UCD[_b]}", _NMGY)
    _TRUTH[f"mag_{_b}"] = doc(f"true AB magnitude of the noiseless target, {_b} band", f"phot.mag;{_BAND_UCD[_b]}",
                             "mag")

_MAPS = {
    "method": doc("map method (pca, umap)", "meta.code"),
    "x": doc("first map coordinate (PC1 for pca)", "pos.cartesian.x"),
    "y": doc("second map coordinate (PC2 for pca)", "pos.cartesian.y"),
    "coords": doc("every stored principal component of the galaxy (pca only)", "stat.value"),
    "fitted": doc("UMAP was fitted on the galaxy (false: placed by transform)", "meta.code"),
    "params_json": doc("parameters of the map, as JSON", "meta.note"),
}

_PCA = {
    "component": doc("index of the principal component", "meta.number"),
    "explained_variance": doc("variance explained by the component", "stat.variance"),
    "explained_variance_ratio": doc("fraction of the total variance explained by the component",
                                   "stat.variance;arith.ratio"),
    "loading": doc("the principal axis (unit vector in embedding space)", "meta.number"),
    "n_vectors": doc("number of vectors the PCA was fitted on", "meta.number"),
}

_ANALYSIS = {
    "quantity": doc("physical quantity correlated with the embeddings", "meta.id"),
    "encoder": doc("encoder (pixels: the downsampled-image baseline)", "meta.id"),
    "statistic": doc("statistic (spearman_pc<k>, r2_cv, r2_cv_minus_pixels)", "meta.code"),
    "value": doc("value of the statistic", "stat.value"),
    "ci_low": doc("lower end of the 95% interval", "stat.value;stat.min"),
    "ci_high": doc("upper end of the 95% interval", "stat.value;stat.max"),
    "p": doc("p-value", "stat.probability"),
    "q": doc("Benjamini-Hochberg q over the rho grid", "stat.probability"),
    "n": doc("number of galaxies used", "meta.number"),
    "source": doc("where the quantity came from (galaxy_features, truth)", "meta.dataset"),
    "subset": doc("which rows were used (morph_ok, phot_quality_ok, all)", "meta.code"),
}

_PSEUDO_LABELS = {
    "method": doc("Otsu recipe that made the label image", "meta.code"),
    "mask_png": doc("Otsu label image as PNG (0 background, 1 disk, 2 bulge)", "meta.code;obs.image"),
    "threshold_low": doc("lower Otsu threshold (background / disk)", "instr.skyLevel"),
    "threshold_high": doc("upper Otsu threshold (disk / bulge)", "instr.skyLevel"),
    "rms": doc("RMS of the sky", "instr.skyLevel;stat.stdev"),
    "area_px": doc("area labelled galaxy (disk or bulge)", "phys.area", "pix**2"),
    "bulge_px": doc("area labelled bulge", "phys.area", "pix**2"),
    "flags": doc("features.flags.Flag segmentation bits (SEG_OTSU_FAILED, ...)", "meta.code.qual"),
}

MASK_FEATURES = {
    "area_arcsec2": doc("area of the predicted galaxy mask", "phys.area", "arcsec**2"),
    "centroid_x_px": doc("x of the mask centroid in the stamp", "pos.cartesian.x;instr.pixel", "pix"),
    "centroid_y_px": doc("y of the mask centroid in the stamp", "pos.cartesian.y;instr.pixel", "pix"),
    "ellipticity": doc("ellipticity 1 - b/a of the predicted mask", "phys.size.axisRatio"),
    "bulge_fraction": doc("fraction of the mask labelled bulge", "src.morph.param"),
    "covers_centre": doc("the mask covers the stamp centre", "meta.code.qual"),
    "split": doc("train, val or test split of the galaxy for the segmentation model", "meta.code"),
    "iou_truth": doc("IoU of the predicted galaxy mask with the true mask", "stat.fit.goodness"),
    "dice_truth": doc("Dice of the predicted galaxy mask with the true mask", "stat.fit.goodness"),
    "otsu_iou_truth": doc("IoU of the Otsu pseudo-label with the true mask", "stat.fit.goodness"),
    "otsu_dice_truth": doc("Dice of the Otsu pseudo-label with the true mask", "stat.fit.goodness"),
    "iou_otsu": doc("IoU of the predicted mask with the galaxy's Otsu pseudo-label", "stat.fit.goodness"),
}

MASKS = {
    **MASK_FEATURES,
    "model_name": doc("name of the segmentation model", "meta.id"),
    "model_version": doc("version of the segmentation model", "meta.version"),
    "mask_png": doc("predicted label image as PNG (0 background, 1 disk, 2 bulge)", "meta.code;obs.image"),
    "area_px": doc("area of the predicted galaxy mask", "phys.area", "pix**2"),
    "flags": doc("features.flags.Flag segmentation bits", "meta.code.qual"),
}

_SPLITS = {
    "label": doc("label (integer code) the split was stratified on", "meta.code.class"),
    "label_name": doc("label name the split was stratified on", "src.morph.type"),
    "seed": doc("split seed", "meta.code"),
}

_MODELS = {
    "name": doc("model name", "meta.id;meta.main"),
    "version": doc("model version", "meta.version"),
    "kind": doc("kind of model (head, finetune, fusion, unet, ...)", "meta.code"),
    "classes_json": doc("class names of the model's outputs, as JSON", "meta.note"),
    "config_json": doc("training configuration, as JSON", "meta.note"),
    "seed": doc("training seed", "meta.code"),
    "split_seed": doc("seed of the split set trained on", "meta.code"),
    "split_version": doc("Lance version of the splits table read", "meta.version"),
    "metrics_json": doc("evaluation metrics, as JSON", "meta.note"),
    "test_balanced_accuracy": doc("balanced accuracy on the test split", "stat.fit.goodness"),
    "test_balanced_accuracy_low": doc("lower end of the 95% bootstrap interval of the test balanced accuracy",
                                     "stat.value;stat.min"),
    "test_balanced_accuracy_high": doc("upper end of the 95% bootstrap interval of the test balanced accuracy",
                                      "stat.value;stat.max"),
    "gate_passed": doc("the model beat the same-run baselines (only then are predictions written)", "meta.code.qual"),
    "gate_json": doc("every number behind the gate, as JSON", "meta.note"),
    "excluded_classes_json": doc("classes the rare-class rule left out, as JSON", "meta.note"),
    "artefact_path": doc("directory of the model's artefacts", "meta.ref"),
    "table_versions_json": doc("Lance version of every table read in training, as JSON", "meta.note"),
    "train_seconds": doc("training time", "time.duration", "s"),
}

PREDICTIONS = {
    "probabilities": doc("class probabilities, in the order of the model's classes", "stat.probability"),
    "predicted_label": doc("predicted class (integer code)", "meta.code.class"),
    "predicted_name": doc("predicted class name", "src.morph.type"),
    "split_hash": doc("content hash of the split set the split column comes from", "meta.checksum"),
    "temperature": doc("calibration temperature T fitted on the val split", "stat.param"),
    "calibrated_probabilities": doc("softmax(log p / T)", "stat.probability"),
    "conformal_set": doc("class-conditional conformal prediction set (class names)", "meta.code.class"),
    "conformal_set_size": doc("number of classes in the conformal set", "meta.number"),
    "marginal_set": doc("marginal conformal prediction set (class names)", "meta.code.class"),
    "predictive_entropy": doc("predictive entropy over MC-dropout passes", "stat.value"),
    "mutual_information": doc("mutual information over MC-dropout passes (epistemic)", "stat.value"),
    "mc_dropout": doc("why MC-dropout values are null, if they are", "meta.note"),
}

_FUSION_INPUTS = {
    "missing_modalities": doc("input modalities imputed with the training medians", "meta.note"),
    "flags": doc("features.flags.Flag.MODALITY_MISSING when any modality was imputed", "meta.code.qual"),
}

ANOMALY_SCORES = {
    "method": doc("anomaly method: iforest (isolation forest) or knn (distance to the k-th neighbour)", "meta.code"),
    "score": doc("raw anomaly score of the method (larger = more anomalous)", "stat.value"),
    "rank": doc("anomaly rank in [0, 1] among the galaxies scored together (1 = most anomalous)", "stat.value"),
    "embeddings_version": doc("Lance version of the embeddings table the scores were fitted on", "meta.version"),
    "params_json": doc("parameters of the fit, as JSON", "meta.note"),
}

LABELS = {
    "label_id": doc("identifier of one act of labelling (UUID)", "meta.id"),
    "name": doc("label name given by a person (interesting, artefact, a class name)", "meta.code.class"),
    "value": doc("label value: 1 yes, 0 no, grades between", "meta.code"),
    "who": doc("person who labelled", "meta.id.PI"),
    "labelled_at": doc("time the label was given (UTC)", "time.creation"),
    "source": doc("where the label came from: cli, page, api or import", "meta.code"),
}

_RANKINGS = {
    "label": doc("label name the ranking looks for (a people's label, not the catalogue class)", "meta.code.class"),
    "who": LABELS["who"],
    "score": doc("ranking score: the model's prediction mixed with the anomaly rank (larger = shown earlier)",
                "stat.value"),
    "prediction": doc("ranking model's prediction that the galaxy has the label", "stat.probability"),
    "uncertainty": doc("ranking model's uncertainty about its prediction", "stat.error"),
    "anomaly_rank": ANOMALY_SCORES["rank"],
    "position": doc("acquisition order shown to a person, 1-based (0 for a galaxy already labelled)", "meta.number"),
    "labelled_value": doc("the person's own label value where the galaxy is labelled", "meta.code"),
    "n_labels": doc("number of labels the ranking model was trained on", "meta.number"),
    "labels_version": doc("Lance version of the labels table used", "meta.version"),
    "embeddings_version": ANOMALY_SCORES["embeddings_version"],
    "anomaly_version": doc("Lance version of the anomaly_scores table used", "meta.version"),
    "params_json": ANOMALY_SCORES["params_json"],
}

TABLES: dict[str, dict[str, ColumnDoc]] = {
    "galaxies": GALAXIES,
    "sources": _SOURCES,
    "morphometrics": MORPHOMETRICS,
    "photometry": PHOTOMETRY,
    "truth": _TRUTH,
    "embedding_maps": _MAPS,
    "embedding_pca": _PCA,
    "representation_analysis": _ANALYSIS,
    "pseudo_labels": _PSEUDO_LABELS,
    "masks": MASKS,
    "splits": _SPLITS,
    "models": _MODELS,
    "predictions": PREDICTIONS,
    "fusion_inputs": _FUSION_INPUTS,
    "anomaly_scores": ANOMALY_SCORES,
    "labels": LABELS,
    "rankings": _RANKINGS,
}
