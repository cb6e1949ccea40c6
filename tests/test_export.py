"""``astrovision export`` (issue 27 item 6): each format round-trips rows, units, UCDs and descriptions through
astropy and STILTS; embeddings as fixed-length arrays; streamed batches; one-line errors; no partial file."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.table import Table
from toy_warehouse import ENCODER, fill_toy_tabular, fill_toy_warehouse

from service.cli import main
from stages.export import export, write_rows
from warehouse.export_source import open_export
from warehouse.schemas.columns import column_docs
from warehouse.sql_engine import SQLEngine

N = 40
EMB = f"embeddings_{ENCODER}"
READ_AS = {"votable": "votable", "fits": "fits", "parquet": "parquet", "csv": "ascii.ecsv"}
SUFFIX = {"votable": "vot", "fits": "fits", "parquet": "parquet", "csv": "csv"}
FORMATS = list(READ_AS)


@pytest.fixture(scope="module")
def wh(tmp_path_factory):
    from warehouse import Warehouse

    wh = Warehouse.open(tmp_path_factory.mktemp("export") / "wh")
    gal, y = fill_toy_warehouse(wh, n=N, seed=3)
    some = {k: v[:30] for k, v in gal.items()}  # the last galaxies have no morphometrics: NULL gini in the view
    fill_toy_tabular(wh, some, y[:30], seed=3)
    return wh


def _read(path, fmt):
    return Table.read(path, format=READ_AS[fmt])


def _values(col) -> np.ndarray:
    """A read-back column as floats with masked cells NaN."""
    return np.ma.filled(np.ma.asarray(col).astype(float), np.nan)


@pytest.mark.parametrize("fmt", FORMATS)
def test_view_round_trips_rows_units_ucds_and_descriptions(wh, tmp_path, fmt):
    out = tmp_path / f"gf.{SUFFIX[fmt]}"
    result = export(wh, out, fmt, table="galaxy_features", progress=False)
    expected = wh.sql("SELECT * FROM galaxy_features", limit=None)
    assert result.rows == N and result.columns == expected.width
    t = _read(out, fmt)
    assert len(t) == N and t.colnames == expected.columns
    order = np.argsort(np.asarray(t["galaxy_id"]).astype(str))
    exp = expected.sort("galaxy_id")
    assert list(np.asarray(t["galaxy_id"]).astype(str)[order]) == exp["galaxy_id"].to_list()
    np.testing.assert_allclose(_values(t["ra"])[order], exp["ra"].to_numpy())
    gini = exp["gini"].to_numpy().astype(float)
    assert np.isnan(gini).any() and not np.isnan(gini).all()  # NULLs and values both travel
    np.testing.assert_allclose(_values(t["gini"])[order], gini, equal_nan=True)
    docs = column_docs("galaxy_features")
    assert str(t["ra"].unit) == "deg"
    if fmt == "fits":  # astropy's FITS reader keeps TUCDn / TCOMMn in the header, not on the column
        header = fits.getheader(out, 1)
        i = t.colnames.index("ra") + 1
        assert header[f"TUCD{i}"] == docs["ra"].ucd == "pos.eq.ra;meta.main"
        assert header[f"TCOMM{i}"] == docs["ra"].description
        assert header[f"TUNIT{i}"] == "deg"
    else:
        assert t["ra"].meta["ucd"] == "pos.eq.ra;meta.main"
        assert t["ra"].description == docs["ra"].description
        assert t["gini"].meta["ucd"] == docs["gini"].ucd and t["gini"].description == docs["gini"].description


def test_parquet_fields_carry_the_docs_for_arrow_readers(wh, tmp_path):
    out = tmp_path / "g.parquet"
    export(wh, out, "parquet", table="galaxies", progress=False)
    field = pq.read_schema(out).field("dec")
    assert field.metadata[b"unit"] == b"deg"
    assert field.metadata[b"ucd"] == b"pos.eq.dec;meta.main"
    assert field.metadata[b"description"] == column_docs("galaxies")["dec"].description.encode()


@pytest.mark.parametrize("fmt", FORMATS)
def test_embeddings_are_fixed_length_array_columns(wh, tmp_path, fmt):
    out = tmp_path / f"e.{SUFFIX[fmt]}"
    export(wh, out, fmt, table=EMB, progress=False, batch_rows=7)  # several batches
    t = _read(out, fmt)
    stored = wh.read(EMB).sort_by("galaxy_id")
    want = np.stack(stored.column("vector").to_numpy(zero_copy_only=False))
    assert t["vector"].shape == (N, want.shape[1])
    order = np.argsort(np.asarray(t["galaxy_id"]).astype(str))
    np.testing.assert_array_equal(np.asarray(t["vector"], np.float32)[order], want)


@pytest.mark.parametrize("fmt", ["votable", "fits"])
def test_batches_join_into_one_valid_stream(wh, tmp_path, fmt):
    """BINARY2's base64 and FITS rows split at arbitrary batch sizes read back as one table."""
    whole, pieces = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
    export(wh, whole, fmt, table="galaxy_features", progress=False)
    export(wh, pieces, fmt, table="galaxy_features", progress=False, batch_rows=3)
    a, b = _read(whole, fmt), _read(pieces, fmt)
    assert len(a) == len(b) == N
    a.sort("galaxy_id")  # a view's joins run in parallel: row order may differ between two runs
    b.sort("galaxy_id")
    for name in ("galaxy_id", "ra", "gini", "label_name", "morph_ok", "phot_flags"):
        assert [str(v) for v in a[name]] == [str(v) for v in b[name]], name


QUERY = ("SELECT galaxy_id, ra, CAST(label AS TINYINT) AS small, "
         "CASE WHEN row_index % 3 = 0 THEN NULL ELSE row_index END AS maybe, "
         "CASE WHEN row_index % 2 = 0 THEN [0.5, 1.5] ELSE [2.5] END AS probs, "
         "['spiral', 'bar'] AS classes, written_at, row_index % 4 = 0 AS even, "
         "CASE WHEN row_index = 1 THEN 'Sérsic' ELSE 'n' END AS word "
         "FROM galaxies ORDER BY galaxy_id")


@pytest.mark.parametrize("fmt", FORMATS)
def test_query_types_nulls_and_names_documented(wh, tmp_path, fmt):
    out = tmp_path / f"q.{SUFFIX[fmt]}"
    export(wh, out, fmt, sql=QUERY, progress=False)
    t = _read(out, fmt)
    assert len(t) == N
    assert str(t["ra"].unit) == "deg"  # a query's column is documented by name from the relation it reads
    maybe = np.ma.masked_invalid(np.ma.asarray(t["maybe"]).astype(float))  # astropy reads Parquet's as NaN
    if fmt == "fits":  # integers with NULLs: TNULLn, read back masked
        assert fits.getheader(out, 1)[f"TNULL{t.colnames.index('maybe') + 1}"] == -(2**63)
    exp = wh.sql(QUERY, limit=None)
    assert list(np.ma.getmaskarray(maybe)) == exp["maybe"].is_null().to_list()
    assert [int(v) for v in maybe.compressed()] == exp["maybe"].drop_nulls().to_list()
    assert [int(v) for v in t["small"]] == exp["small"].to_list()
    if fmt in ("votable", "fits"):  # varying lists padded with NaN; lists of strings joined by ';'
        probs = np.asarray(t["probs"], float)
        np.testing.assert_array_equal(probs[0], [0.5, 1.5])
        assert probs[1][0] == 2.5 and np.isnan(probs[1][1])
        assert str(t["classes"][0]) == "spiral;bar"
        assert str(t["written_at"][0]).endswith("Z") and "T" in str(t["written_at"][0])
    if fmt != "fits":  # VOTable unicodeChar, Parquet and ECSV strings are UTF-8
        assert [str(v) for v in t["word"]] == exp["word"].to_list()
    assert [bool(v) for v in t["even"]] == exp["even"].to_list()


@pytest.mark.skipif(shutil.which("stilts") is None, reason="stilts is not installed (make's apt step installs it)")
@pytest.mark.parametrize("fmt", ["votable", "fits"])
def test_stilts_reads_units_ucds_and_descriptions(wh, tmp_path, fmt):
    out = tmp_path / f"gf.{SUFFIX[fmt]}"
    export(wh, out, fmt, table="galaxy_features", progress=False)
    meta = subprocess.run(["stilts", "tpipe", f"in={out}", f"ifmt={fmt}", "omode=meta"],
                          capture_output=True, text=True, timeout=120, check=True).stdout
    assert f"Rows:    {N}" in meta
    assert "ra(Double)/deg - right ascension, ICRS" in meta
    cols = subprocess.run(["stilts", "tpipe", f"in={out}", f"ifmt={fmt}", "cmd=meta", "omode=out", "ofmt=csv"],
                          capture_output=True, text=True, timeout=120, check=True).stdout
    rows = {line.split(",")[1]: line for line in cols.splitlines()[1:]}
    assert ",deg," in rows["ra"] and "pos.eq.ra;meta.main" in rows["ra"]
    assert "meta.id;meta.main" in rows["galaxy_id"]
    assert column_docs("galaxy_features")["gini"].ucd in rows["gini"]
    stats = subprocess.run(["stilts", "tpipe", f"in={out}", f"ifmt={fmt}", "cmd=keepcols 'ra gini'", "omode=stats"],
                           capture_output=True, text=True, timeout=120, check=True).stdout
    assert "| ra " in stats and "| gini " in stats


def test_cli_writes_and_refuses_to_overwrite(wh, tmp_path, capsys):
    out = tmp_path / "gf.vot"
    assert main(["--home", str(wh.root), "export", "galaxy_features", "--out", str(out), "-q"]) == 0
    assert f"wrote {N} rows" in capsys.readouterr().err
    before = out.read_bytes()
    assert main(["--home", str(wh.root), "export", "galaxies", "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "exists; pass --overwrite" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before
    assert main(["--home", str(wh.root), "export", "galaxies", "--out", str(out), "-q", "--overwrite"]) == 0
    assert len(_read(out, "votable").colnames) == len(wh.read("galaxies").schema)


@pytest.mark.parametrize(("argv", "message"), [
    (["nope", "--out", "{d}/x.fits"], "unknown table or view 'nope'"),
    (["--sql", "SELECT ra FROM galaxies WHERE", "--out", "{d}/x.fits"], "syntax error"),
    (["--sql", "DROP TABLE galaxies", "--out", "{d}/x.fits"], "read-only"),
    (["--sql", "SELECT * FROM read_csv('/etc/passwd')", "--out", "{d}/x.csv"], "disabled"),
    (["galaxies", "--out", "{d}/missing/x.fits"], "does not exist"),
    (["galaxies", "--out", "{d}", "--format", "fits"], "is a directory"),
    (["galaxies", "--out", "{d}/x.txt"], "cannot tell the format"),
    (["images", "--out", "{d}/x.fits"], "column 'data' (binary) cannot be written as FITS"),
    (["galaxies", "--sql", "SELECT 1", "--out", "{d}/x.fits"], "not both"),
])
def test_cli_errors_are_one_line_and_leave_no_file(wh, tmp_path, capsys, argv, message):
    d = tmp_path / "out"
    d.mkdir()
    code = main(["--home", str(wh.root), "export", *[a.format(d=d) for a in argv], "-q"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert list(d.iterdir()) == []  # no output, no temporary file


@pytest.mark.parametrize("fmt", FORMATS)
def test_interrupted_export_leaves_no_partial_file_and_keeps_the_old_one(wh, tmp_path, fmt):
    out = tmp_path / f"gf.{SUFFIX[fmt]}"
    out.write_bytes(b"previous")
    source = open_export(SQLEngine(wh), table="galaxy_features")
    seen = []

    def interrupt(batch: pa.RecordBatch) -> None:
        seen.append(batch.num_rows)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_rows(source, out, fmt, overwrite=True, batch_rows=5, progress=False, on_batch=interrupt)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_votable_is_valid_for_astropy_and_stilts(wh, tmp_path):
    from astropy.io.votable import validate

    out = tmp_path / "q.vot"
    export(wh, out, "votable", sql=QUERY, progress=False)
    assert "found no violations" in validate(str(out), output=None)
    if shutil.which("stilts"):
        lint = subprocess.run(["stilts", "votlint", str(out)], capture_output=True, text=True, timeout=120)
        assert lint.returncode == 0 and lint.stdout.strip() == "" and "WARNING" not in lint.stderr, lint.stdout


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_result_is_a_table_with_columns_and_no_rows(wh, tmp_path, fmt):
    out = tmp_path / f"none.{SUFFIX[fmt]}"
    result = export(wh, out, fmt, sql="SELECT galaxy_id, ra, [1.0, 2.0] AS l FROM galaxies WHERE ra > 1000",
                    progress=False)
    t = _read(out, fmt)
    assert result.rows == len(t) == 0 and t.colnames == ["galaxy_id", "ra", "l"] and str(t["ra"].unit) == "deg"


def test_wide_rows_come_in_smaller_batches(wh):
    """About BATCH_BYTES a batch: embeddings rows (2 x 384 float32) get far fewer rows than galaxy_features."""
    from stages.export.job import BATCH_BYTES, BATCH_ROWS, batch_rows_for

    engine = SQLEngine(wh)
    sizes = {}
    for name in (EMB, "galaxy_features"):
        source = open_export(engine, table=name)
        sizes[name] = batch_rows_for(source.schema, source.profile()[1])
    vectors = 2 * 384 * 4  # bytes of the two array cells of a row; ids and provenance add a few hundred
    assert 0.8 * BATCH_BYTES // vectors < sizes[EMB] <= BATCH_BYTES // vectors
    assert sizes[EMB] < sizes["galaxy_features"] <= BATCH_ROWS
