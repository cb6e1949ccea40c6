"""The synthetic demo survey: determinism, class ranges, truth, catalogue, stretch, ingestion."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from features.errors import InputError
from features.sources.classes import GALAXY10_CLASSES, GALAXY10_COUNTS
from features.sources.synthetic import (
    CLASS_RANGES,
    COMMON_RANGES,
    DEFAULT_STRETCH,
    TRUTH_SCHEMA,
    SyntheticSurvey,
    apply_stretch,
    catalogue_table,
    class_counts,
    contact_sheet,
    decode_mask,
    draw_params,
    invert_stretch,
    write_photometry_catalogue,
)
from features.sources.synthetic import params as params_module
from features.sources.synthetic.catalogue import MISSING_FRACTION, OBJID_BASE, has_entry
from features.sources.synthetic.observe import DEMO_Q, LEGACY_SURVEYS_LUPTON, matched_lupton
from features.sources.synthetic.params import disk_axis_ratio

SIZE = 64


@pytest.fixture(scope="module")
def survey() -> SyntheticSurvey:
    return SyntheticSurvey(n=30, seed=3, size=SIZE)


@pytest.fixture(scope="module")
def rendered(survey):
    """Every galaxy of the small survey rendered with its float images (serially)."""
    return [survey.render(i) for i in range(len(survey))]


def _same(a: pa.Table, b: pa.Table) -> bool:
    """Tables equal value by value, NaN equal to NaN."""
    if a.schema != b.schema:
        return False
    for name in a.column_names:
        for x, y in zip(a.column(name).to_pylist(), b.column(name).to_pylist()):
            if not (x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))):
                return False
    return True


# --- labels and determinism ---------------------------------------------------------------------

def test_class_counts_follow_galaxy10_frequencies():
    counts = class_counts(17736)
    assert counts.tolist() == list(GALAXY10_COUNTS)
    small = class_counts(600)
    assert small.sum() == 600
    expected = 600 * np.asarray(GALAXY10_COUNTS) / sum(GALAXY10_COUNTS)
    assert np.all(np.abs(small - expected) < 1)


def test_labels_depend_on_n_and_seed_only():
    a = SyntheticSurvey(n=200, seed=1).labels
    assert np.array_equal(a, SyntheticSurvey(n=200, seed=1, size=64).labels)
    assert not np.array_equal(a, SyntheticSurvey(n=200, seed=2).labels)
    assert np.bincount(a, minlength=10).tolist() == class_counts(200).tolist()


def test_same_seed_is_byte_identical_and_rows_render_alone(survey):
    batches = list(survey.iter_batches(0, 12, batch_size=5, workers=1))
    assert [len(b) for b in batches] == [5, 5, 2]
    images = [im for b in batches for im in b.images]
    again = SyntheticSurvey(n=30, seed=3, size=SIZE)
    alone = next(again.iter_batches(7, 8, workers=1)).images[0]
    assert alone.tobytes() == images[7].tobytes()
    other = next(SyntheticSurvey(n=30, seed=4, size=SIZE).iter_batches(7, 8, workers=1)).images[0]
    assert other.tobytes() != images[7].tobytes()


def test_process_pool_renders_the_same_bytes(survey, monkeypatch):
    from features.sources.synthetic import survey as survey_module

    monkeypatch.setattr(survey_module, "MIN_POOL_ROWS", 1)
    serial = [im for b in survey.iter_batches(10, 16, batch_size=3, workers=1) for im in b.images]
    pooled = [im for b in SyntheticSurvey(n=30, seed=3, size=SIZE).iter_batches(10, 16, batch_size=3, workers=2)
              for im in b.images]
    assert [a.tobytes() for a in serial] == [b.tobytes() for b in pooled]


def test_batch_fields(survey):
    batch = next(survey.iter_batches(0, 4, workers=1))
    assert batch.source == "demo"
    assert batch.galaxy_ids == ["demo:000000", "demo:000001", "demo:000002", "demo:000003"]
    assert batch.image_kind == "rgb_composite" and batch.bands == "z,r,g"
    assert np.all(batch.pxscale == 0.262)
    assert batch.labels.tolist() == survey.labels[:4].tolist()
    assert batch.label_names == [GALAXY10_CLASSES[k] for k in batch.labels]
    assert batch.stretch == DEFAULT_STRETCH
    assert np.all((batch.ra > 140) & (batch.ra < 220) & (batch.dec > -2) & (batch.dec < 10))
    assert np.all((batch.redshift >= 0.02) & (batch.redshift <= 0.15))
    for im in batch.images:
        assert im.dtype == np.uint8 and im.shape == (SIZE, SIZE, 3)
        assert 0 < im.max() <= 255 and im.min() >= 0
        assert im.std() > 1  # not blank


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"seed": -1}, {"size": 8}, {"n": 2.5}])
def test_bad_arguments_raise_input_error(kwargs):
    with pytest.raises(InputError):
        SyntheticSurvey(**kwargs)


def test_row_range_outside_survey_raises(survey):
    with pytest.raises(InputError, match="outside"):
        list(survey.iter_batches(25, 31, workers=1))


# --- documented class ranges --------------------------------------------------------------------

def test_docstring_table_matches_the_ranges():
    doc = params_module.__doc__
    table = doc.split("RANGES-TABLE-START")[1].split("RANGES-TABLE-END")[0].strip()
    assert table == params_module.ranges_table()


def _inside(value: float, rng: tuple[float, float] | None, what: str) -> None:
    if rng is None:
        assert value is None or (isinstance(value, float) and math.isnan(value)) or value in (0, 0.0, False), what
    else:
        assert rng[0] - 1e-9 <= value <= rng[1] + 1e-9, f"{what}={value} outside {rng}"


@pytest.mark.parametrize("label", range(10))
def test_drawn_parameters_lie_inside_their_class_ranges(label):
    cr = CLASS_RANGES[label]
    for row in range(25):
        p = draw_params(label, np.random.default_rng([99, label, row]))
        where = f"class {label} row {row}"
        _inside(p.bulge_to_total, cr.bulge_to_total, f"{where} bulge_to_total")
        if p.bulge_to_total > 0:
            _inside(p.bulge_n, cr.bulge_n, f"{where} bulge_n")
            _inside(p.bulge_q, cr.bulge_q, f"{where} bulge_q")
        if cr.inclination_deg is not None:
            _inside(p.inclination_deg, cr.inclination_deg, f"{where} inclination")
            q_lo = disk_axis_ratio(cr.inclination_deg[1], cr.disk_q0[0])
            q_hi = disk_axis_ratio(cr.inclination_deg[0], cr.disk_q0[1])
            _inside(p.axis_ratio, (q_lo, q_hi), f"{where} axis_ratio")
        else:
            _inside(p.axis_ratio, cr.bulge_q, f"{where} axis_ratio")
        _inside(p.disk_q0, cr.disk_q0, f"{where} disk_q0")
        _inside(p.abs_mag_r, cr.abs_mag_r, f"{where} abs_mag_r")
        _inside(p.redshift, COMMON_RANGES["redshift"], f"{where} redshift")
        _inside(p.pa_deg, COMMON_RANGES["pa_deg"], f"{where} pa")
        _inside(p.psf_fwhm_r, COMMON_RANGES["psf_fwhm_r"], f"{where} psf")
        _inside(p.ebv, COMMON_RANGES["ebv"], f"{where} ebv")
        assert p.has_bar == (cr.p_bar == 1.0)
        if p.has_bar:
            _inside(p.bar_q, cr.bar_q, f"{where} bar_q")
            _inside(p.bar_fraction, cr.bar_fraction, f"{where} bar_fraction")
            _inside(p.bar_hlr_arcsec / p.disk_hlr_arcsec, cr.bar_len, f"{where} bar_len")
        if p.n_arms:
            _inside(p.n_arms, cr.n_arms, f"{where} n_arms")
            _inside(p.pitch_deg, cr.pitch_deg, f"{where} pitch")
            _inside(p.arm_strength, cr.arm_strength, f"{where} arm_strength")
        elif cr.p_arms == 1.0:
            pytest.fail(f"{where}: a spiral without arms")
        if p.n_knots:
            _inside(p.n_knots, cr.n_knots, f"{where} n_knots")
            _inside(p.knot_fraction, cr.knot_fraction, f"{where} knot_fraction")
        if p.has_dust_lane:
            _inside(p.dust_tau_r, cr.dust_tau_r, f"{where} dust")
        elif cr.p_dust == 0:
            assert not p.has_dust_lane
        _inside(p.asymmetry if cr.asymmetry else None, cr.asymmetry, f"{where} asymmetry")
        _inside(p.irregular_fraction if cr.irregular_fraction else None, cr.irregular_fraction, f"{where} irr")
        assert p.is_merger == (label == 1)
        if p.is_merger:
            _inside(p.companion_flux_ratio, cr.comp_flux_ratio, f"{where} companion flux")
            _inside(p.companion_n, cr.comp_n, f"{where} companion n")
            _inside(p.tail_fraction, cr.tail_fraction, f"{where} tails")
        for name in ("bulge_gr", "bulge_rz", "disk_gr", "disk_rz", "knot_gr", "knot_rz"):
            k = 0.9 if name.endswith("gr") else 0.3
            _inside(getattr(p, name) - k * p.redshift, getattr(cr, name), f"{where} {name}")


def test_neighbouring_classes_overlap():
    """Boundaries are fuzzy: adjacent classes share part of their defining range."""
    def overlap(a, b):
        return min(a[1], b[1]) > max(a[0], b[0])

    assert overlap(CLASS_RANGES[2].bulge_q, CLASS_RANGES[3].bulge_q)  # round vs in-between
    assert overlap(CLASS_RANGES[3].bulge_q, CLASS_RANGES[4].bulge_q)  # in-between vs cigar
    assert overlap(CLASS_RANGES[6].pitch_deg, CLASS_RANGES[7].pitch_deg)  # tight vs loose
    assert overlap(CLASS_RANGES[8].bulge_to_total, CLASS_RANGES[9].bulge_to_total)  # edge-on bulge
    assert overlap(CLASS_RANGES[8].inclination_deg, CLASS_RANGES[9].inclination_deg)


# --- truth ---------------------------------------------------------------------------------------

def test_truth_table_schema_matches_the_warehouse(survey):
    from warehouse import schemas

    table = survey.truth_table(0, 5, workers=1)
    assert table.schema.equals(TRUTH_SCHEMA, check_metadata=False)
    assert schemas.get("truth").columns.equals(TRUTH_SCHEMA, check_metadata=False)
    assert table.column_names[0] == "galaxy_id"
    assert table.column("galaxy_id").to_pylist() == [f"demo:{i:06d}" for i in range(5)]
    assert not {"code_version", "run_id", "written_at"} & set(table.column_names)


def test_truth_table_equals_fresh_render(survey, rendered):
    """Cached truth (from batches) and truth rendered on demand are the same rows."""
    fresh = SyntheticSurvey(n=30, seed=3, size=SIZE).truth_table(3, 9, workers=1)
    cached = survey.truth_table(3, 9)
    assert _same(fresh, cached)
    assert fresh.column("mask_png").to_pylist()[0] == rendered[3].truth["mask_png"]


def test_truth_masks_cover_the_rendered_galaxy(rendered):
    for g in rendered:
        mask = decode_mask(g.truth["mask_png"])
        assert np.array_equal(mask, g.mask)
        assert mask.sum() == g.truth["mask_area_px"] > 0
        target_r = g.target[..., 1]
        # the mask holds most of the target's light and is exactly the pixels above the sky sigma
        assert target_r[mask].sum() > 0.8 * target_r.sum(), f"row {g.row}"
        assert np.all(target_r[mask] > g.truth["sky_sigma_r"])
        assert np.all(target_r[~mask] <= g.truth["sky_sigma_r"])
        cy, cx = round(g.truth["centre_y_px"]), round(g.truth["centre_x_px"])
        assert mask[cy, cx], f"row {g.row}: centre not in mask"


def test_truth_fluxes_are_the_noiseless_image_fluxes(rendered):
    for g in rendered:
        for b, band in enumerate("zrg"):
            flux = g.target[..., b].sum()
            assert g.truth[f"flux_{band}"] == pytest.approx(flux, rel=1e-6)
            assert g.truth[f"mag_{band}"] == pytest.approx(22.5 - 2.5 * np.log10(flux), abs=1e-6)
        assert g.truth["g_r"] == pytest.approx(g.truth["mag_g"] - g.truth["mag_r"])


def test_components_have_their_own_colours(rendered):
    """Bulges are redder than disks, knots bluer: colour gradients exist."""
    for g in rendered:
        t = g.truth
        assert t["bulge_g_r"] > t["knot_g_r"]
        if math.isfinite(t["disk_g_r"]) and t["label"] not in (2, 3, 4):
            assert t["bulge_g_r"] > t["disk_g_r"] - 0.1


def test_sersic_bulge_flux_matches_model_for_a_smooth_galaxy():
    """A round smooth galaxy's rendered flux is its model flux minus what falls outside the stamp."""
    s = SyntheticSurvey(n=40, seed=0, size=256)
    row = int(np.flatnonzero(s.labels == 2)[0])
    g = s.render(row)
    model = 10 ** ((22.5 - g.params.model_mag_r) / 2.5)
    assert 0.85 * model < g.truth["flux_r"] <= model * 1.001


# --- stretch --------------------------------------------------------------------------------------

def _round_trip_ok(rgb: np.ndarray, flux: np.ndarray, stretch: dict) -> None:
    back = invert_stretch(rgb, stretch)
    assert back.shape == flux.shape and back.dtype == np.float64
    vmax = stretch["max_value"]
    ok = np.all((rgb > 1) & (rgb < vmax - 1), axis=-1)  # no channel clipped (or next to a clip)
    assert ok.mean() > 0.8
    # re-stretching the inverted fluxes gives the same bytes
    assert np.array_equal(apply_stretch(back, stretch)[ok], rgb[ok])
    # 8-bit rounding moves each channel by <= 0.5 count; shifting all channels by one count bounds that
    up = invert_stretch(rgb.astype(np.int16) + 1, stretch)
    down = invert_stretch(rgb.astype(np.int16) - 1, stretch)
    tol = np.maximum(np.abs(up - back), np.abs(back - down)) + 1e-12
    assert np.all(np.abs(back - flux)[ok] <= tol[ok])


def test_invert_stretch_round_trip(rendered):
    for g in rendered[:6]:
        _round_trip_ok(g.rgb, g.flux, DEFAULT_STRETCH)


def test_invert_stretch_round_trip_per_band_asinh(rendered):
    stretch = {**DEFAULT_STRETCH, "method": "asinh_per_band", "scales": [0.04, 0.025, 0.0155], "q": 1.0,
               "minimum": -0.4, "maximum": 120.0}
    for g in rendered[:3]:
        _round_trip_ok(apply_stretch(g.flux, stretch), g.flux, stretch)


def test_default_stretch_keeps_the_legacy_surveys_faint_end_and_clips_later():
    """Q = 50 with the sky level and sky gain of the viewer's dr2_rgb (Q = 20), saturating ~7x brighter."""
    base = {**DEFAULT_STRETCH, **LEGACY_SURVEYS_LUPTON, "scales": list(LEGACY_SURVEYS_LUPTON["scales"])}
    assert DEFAULT_STRETCH["q"] == DEMO_Q and DEFAULT_STRETCH == {**DEFAULT_STRETCH, **matched_lupton(DEMO_Q)}
    sky = np.random.default_rng(0).normal(0.0, [0.0065, 0.0028, 0.00175], (200, 200, 3))  # demo sky noise (z, r, g)
    ours, theirs = apply_stretch(sky, DEFAULT_STRETCH).astype(float), apply_stretch(sky, base).astype(float)
    assert abs(ours.mean() - theirs.mean()) < 1.0  # same sky level (~33 counts)
    assert np.allclose(ours.std(axis=(0, 1)), theirs.std(axis=(0, 1)), rtol=0.15)  # 8-bit sky noise ~10 % higher
    grey = np.ones((1, 1, 3))
    first_clip = {}
    for name, st in (("ours", DEFAULT_STRETCH), ("base", base)):
        levels = np.geomspace(0.01, 100, 2000)
        clipped = [apply_stretch(grey * f, st)[0, 0, 1] >= 255 for f in levels]
        first_clip[name] = levels[int(np.argmax(clipped))]
    assert 5.0 < first_clip["ours"] / first_clip["base"] < 10.0


def test_few_demo_galaxies_clip_in_r():
    """< 20 % of galaxies have a 255 r pixel on the galaxy (73 % with the viewer's Q = 20; real GZ DECaLS 29 %)."""
    s = SyntheticSurvey(n=60, seed=0, size=256)
    clipped = [bool(((g.rgb[..., 1] >= 255) & g.mask).any()) for g in (s.render(i) for i in range(60))]
    assert np.mean(clipped) < 0.2, np.mean(clipped)


def test_invert_stretch_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        invert_stretch(np.zeros((4, 4), np.uint8), DEFAULT_STRETCH)
    with pytest.raises(ValueError, match="method"):
        invert_stretch(np.zeros((4, 4, 3), np.uint8), {**DEFAULT_STRETCH, "method": "linear"})


# --- catalogue -------------------------------------------------------------------------------------

def test_catalogue_magnitudes_agree_with_noiseless_fluxes(survey, rendered):
    cat = catalogue_table(survey)
    targets = {oid: r for oid, r in zip(cat.column("objid").to_pylist(), cat.to_pylist())
               if (oid - OBJID_BASE) % 100 == 0}
    pulls = []
    for g in rendered:
        rec = targets.get(OBJID_BASE + 100 * g.row)
        if rec is None:
            continue
        for band in "grz":
            true = 22.5 - 2.5 * np.log10(g.target[..., "zrg".index(band)].sum())
            pulls.append((rec[f"modelMag_{band}"] - true) / rec[f"modelMagErr_{band}"])
        sep = np.hypot((rec["ra"] - g.truth["ra"]) * np.cos(np.radians(g.truth["dec"])), rec["dec"] - g.truth["dec"])
        assert sep * 3600 < 1.0
    pulls = np.asarray(pulls)
    assert len(pulls) >= 3 * 25
    assert np.all(np.abs(pulls) < 5)
    assert np.mean(np.abs(pulls) < 3) > 0.95
    assert 0.5 < np.std(pulls) < 1.5  # the stated errors are the real scatter


def test_about_two_percent_of_targets_have_no_entry():
    rows = [has_entry(11, i) for i in range(5000)]
    assert abs((1 - np.mean(rows)) - MISSING_FRACTION) < 0.005


def test_catalogue_columns_and_missing_rows(tmp_path):
    s = SyntheticSurvey(n=80, seed=11, size=32)
    cat = catalogue_table(s, workers=1)
    for band in "ugriz":
        for prefix in ("modelMag_", "modelMagErr_", "petroMag_", "petroMagErr_", "extinction_"):
            assert f"{prefix}{band}" in cat.column_names
    assert {"objid", "ra", "dec", "type", "clean", "petroR50_r", "petroR90_r", "fracDeV_r", "specz"} <= set(
        cat.column_names)
    assert cat.schema.field("objid").type == pa.int64()
    objid = np.asarray(cat.column("objid"))
    targets = (objid - OBJID_BASE) % 100 == 0
    listed = sorted(int(o - OBJID_BASE) // 100 for o in objid[targets])
    assert listed == [i for i in range(len(s)) if has_entry(11, i)]
    assert len(listed) < len(s)  # this seed drops at least one target
    assert set(np.asarray(cat.column("type")).tolist()) <= {3, 6}
    specz = np.asarray(cat.column("specz"))
    assert np.isnan(specz).any() and np.isfinite(specz).any()
    # same seed, same catalogue
    assert _same(catalogue_table(SyntheticSurvey(n=80, seed=11, size=32), 0, 30, workers=1),
                 catalogue_table(s, 0, 30))


def test_write_catalogue_parquet_and_csv(tmp_path, survey):
    p = write_photometry_catalogue(survey, tmp_path / "cat.parquet", 0, 10)
    c = write_photometry_catalogue(survey, tmp_path / "sub" / "cat.csv", 0, 10)
    a = pq.read_table(p)
    b = pacsv.read_csv(c)
    assert a.num_rows == b.num_rows > 0
    assert a.column_names == b.column_names
    assert np.allclose(np.asarray(a.column("modelMag_r")), np.asarray(b.column("modelMag_r")))
    with pytest.raises(InputError, match=r"parquet or \.csv"):
        write_photometry_catalogue(survey, tmp_path / "cat.txt")


# --- contact sheet and ingestion -------------------------------------------------------------------

def test_contact_sheet(tmp_path):
    from PIL import Image

    s = SyntheticSurvey(n=40, seed=0, size=48)
    path = contact_sheet(s, tmp_path / "sheet.png", per_class=2, tile=48, workers=1)
    im = Image.open(path)
    assert im.size == (190 + 2 * 48, 10 * 48)


def test_demo_source_ingests_through_the_warehouse(warehouse):
    """The truth table is accepted by the warehouse's ``truth`` schema and upserts idempotently."""
    s = SyntheticSurvey(n=6, seed=0, size=SIZE)
    truth = s.truth_table(workers=1)
    warehouse.upsert("truth", truth, run_id="test")
    warehouse.upsert("truth", truth, run_id="test")
    back = warehouse.read("truth", columns=["galaxy_id", "bulge_n", "mask_png"])
    assert back.num_rows == 6
    assert decode_mask(back.column("mask_png")[0].as_py()).shape == (SIZE, SIZE)


@pytest.mark.slow
def test_tiny_demo_survey_ingests_through_the_galaxies_asset(warehouse):
    """The same Dagster ``galaxies`` asset as every source stores the demo's images, rows and truth."""
    import json

    from dagster_project.runner import run_pipeline
    from stages.sources import register_source

    survey = SyntheticSurvey(n=8, seed=5, size=SIZE)
    shards = register_source(warehouse, survey)
    assert shards == ["demo-00000"]
    report = run_pipeline(warehouse, shards, groups=["ingest"], progress=False, log=lambda m: None)
    assert report.ok, report.failed
    gal = warehouse.sql("SELECT galaxy_id, label, label_name, shard FROM galaxies ORDER BY galaxy_id")
    assert gal["galaxy_id"].to_list() == [f"demo:{i:06d}" for i in range(8)]
    assert gal["label"].to_list() == survey.labels.tolist()
    truth = warehouse.sql("SELECT galaxy_id, label, mag_r FROM truth ORDER BY galaxy_id")
    assert truth["galaxy_id"].to_list() == gal["galaxy_id"].to_list()
    assert truth["label"].to_list() == survey.labels.tolist()
    stored = warehouse.read_image("demo:000006")
    expected = next(survey.iter_batches(6, 7, workers=1)).images[0]
    assert stored.tobytes() == expected.tobytes()
    stretch = warehouse.sql("SELECT stretch_json FROM images WHERE galaxy_id = 'demo:000006'")["stretch_json"][0]
    assert json.loads(stretch) == DEFAULT_STRETCH
