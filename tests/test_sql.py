"""DuckDB SQL over the Lance tables: views, read-only guard, errors, limits, timeouts, time travel."""

from __future__ import annotations

import polars as pl
import pytest
from duckdb_types import REFUSED, TYPE_QUERIES
from test_warehouse import galaxy_row

from warehouse import SQLError
from warehouse.sql_engine import SQLEngine, SQLLimits, view_files


@pytest.fixture
def filled(warehouse):
    warehouse.upsert("galaxies", [galaxy_row(i) for i in range(20)])
    return warehouse


def test_query_over_table_and_view(filled):
    df = filled.sql("SELECT label, count(*) AS n FROM galaxies GROUP BY label ORDER BY label")
    assert df["n"].sum() == 20
    assert df.height == 10
    view = filled.sql("SELECT * FROM galaxy_images")
    assert view.height == 20  # LEFT JOIN onto the (still empty) images table


def test_unwritten_registered_tables_are_empty_views(warehouse):
    assert warehouse.sql("SELECT count(*) AS n FROM images")["n"][0] == 0


def test_views_are_created_from_sql_files(filled):
    engine = SQLEngine(filled)
    names = {p.stem for p in view_files()}
    assert names, "sql/ holds at least one view definition"
    assert "galaxy_images" in engine.views


@pytest.mark.parametrize(
    "query",
    [
        "DROP TABLE galaxies",
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO galaxies SELECT * FROM galaxies",
        "COPY (SELECT 1) TO '/tmp/astrovision-should-not-exist.csv'",
        "ATTACH 'x.db'",
        "SET enable_external_access = true",
    ],
)
def test_writes_and_config_changes_are_refused(filled, query):
    with pytest.raises(SQLError, match=r"read-only|not allowed"):
        filled.sql(query)


def test_no_file_access(filled):
    with pytest.raises(SQLError):
        filled.sql("SELECT * FROM read_csv_auto('/etc/passwd')")


def test_bad_query_is_one_line_listing_tables(filled):
    with pytest.raises(SQLError) as info:
        filled.sql("SELECT * FROM galaxy")
    text = str(info.value)
    assert "\n" not in text
    assert "galaxies" in text and "views:" in text


def test_multiple_statements_refused(filled):
    with pytest.raises(SQLError, match="exactly one"):
        filled.sql("SELECT 1; SELECT 2")


def test_row_limit(filled):
    with pytest.warns(UserWarning, match="row limit"):
        assert filled.sql("SELECT * FROM galaxies", limit=7).height == 7
    assert filled.sql("SELECT * FROM galaxies", limit=None).height == 20


def test_timeout_interrupts(filled):
    with pytest.raises(SQLError, match="timeout"):
        filled.sql("SELECT count(*) FROM range(100000000000) a", timeout_s=0.3, limit=None)


def test_sql_at_a_table_version(filled):
    v = filled.versions()["galaxies"]
    filled.upsert("galaxies", [galaxy_row(100)])
    old = SQLEngine(filled, version={"galaxies": v}).query("SELECT count(*) AS n FROM galaxies")
    assert old["n"][0] == 20
    assert filled.sql("SELECT count(*) AS n FROM galaxies")["n"][0] == 21


def test_feature_views_one_row_per_galaxy_and_nan_as_null(filled):
    df = filled.sql("SELECT * FROM galaxy_features")
    assert df.height == 20
    assert {"gini", "m20", "concentration", "g_r", "morph_flags", "phot_flags"} <= set(df.columns)
    assert filled.sql("SELECT nan_null('nan'::DOUBLE) IS NULL AS n, nan_null(1.5) AS v").to_dicts() == [
        {"n": True, "v": 1.5}
    ]
    assert filled.sql("SELECT * FROM latest_predictions").height == 0


# ------------------------------------------------------------------------------------ parsed, not pasted
@pytest.mark.parametrize(
    "query",
    [
        "EXPLAIN ANALYZE CREATE OR REPLACE VIEW galaxy_images AS SELECT 1 AS x",
        "EXPLAIN CREATE OR REPLACE VIEW galaxy_images AS SELECT 1 AS x",
        "EXPLAIN (FORMAT json) CREATE OR REPLACE VIEW galaxy_images AS SELECT 1 AS x",
        "/* c */ explain analyze -- c\n DROP VIEW galaxy_images",
        "EXPLAIN ANALYZE INSERT INTO galaxies SELECT * FROM galaxies",
    ],
)
def test_explain_only_wraps_a_select(filled, query):
    engine = SQLEngine(filled)  # reused: a refused statement must leave its views as they were
    with pytest.raises(SQLError, match=r"EXPLAIN of .* is not allowed"):
        engine.query(query)
    assert engine.query("SELECT count(*) AS n FROM galaxy_images")["n"][0] == 20


@pytest.mark.parametrize("query", ["EXPLAIN SELECT * FROM galaxies", "EXPLAIN ANALYZE SELECT count(*) FROM galaxies",
                                   "EXPLAIN (FORMAT json) SELECT 1 -- why"])
def test_explain_of_a_select_runs(filled, query):
    assert filled.sql(query).height >= 1


def test_explained_statement_is_found_by_the_tokenizer():
    from warehouse.sql_engine import explained_statement

    assert explained_statement("EXPLAIN SELECT 1") == "SELECT 1"
    assert explained_statement("explain analyze /* x */ SELECT 'EXPLAIN'") == "SELECT 'EXPLAIN'"
    assert explained_statement("EXPLAIN (FORMAT json, ANALYZE) DROP VIEW v") == "DROP VIEW v"
    with pytest.raises(SQLError):
        explained_statement("SELECT 1")


@pytest.mark.parametrize("limit", [None, 5])
def test_trailing_comment_is_harmless(filled, limit):
    df = SQLEngine(filled).query("SELECT galaxy_id FROM galaxies ORDER BY galaxy_id DESC -- newest first", limit=limit)
    assert df.height == (20 if limit is None else 5)
    assert df["galaxy_id"][0] == "demo:000019"  # the order survives the limit


def test_truncated_says_when_the_limit_cut_rows(filled):
    engine = SQLEngine(filled)
    cut = engine.run("SELECT * FROM galaxies", limit=7)
    assert (cut.table.num_rows, cut.truncated, cut.limit) == (7, True, 7)
    exact = engine.run("SELECT * FROM galaxies", limit=20)
    assert (exact.table.num_rows, exact.truncated) == (20, False)
    assert engine.run("SELECT * FROM galaxies", limit=None).truncated is False
    with pytest.warns(UserWarning, match="row limit 7"):
        assert filled.sql("SELECT * FROM galaxies", limit=7).height == 7


def test_cli_sql_says_when_rows_were_cut(filled, tmp_path, capsys):
    from service.cli import main

    out = tmp_path / "g.parquet"
    home = ["--home", str(filled.root)]
    assert main([*home, "sql", "SELECT * FROM galaxies", "--limit", "5", "--format", "parquet", "-o", str(out)]) == 0
    assert "wrote 5 rows" in (err := capsys.readouterr().err) and "cut at the row limit 5" in err
    assert main([*home, "sql", "SELECT * FROM galaxies", "--limit", "20", "--format", "parquet", "-o", str(out)]) == 0
    assert "wrote 20 rows" in (err := capsys.readouterr().err) and "cut" not in err
    assert main([*home, "sql", "SELECT galaxy_id FROM galaxies", "--limit", "3", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1 + 3 and "cut at the row limit 3" in captured.err


def test_select_where_binds_one_expression(filled):
    engine = SQLEngine(filled)
    rows = engine.select_where("SELECT * FROM galaxies", "label = 3 OR label_name = 'c;4'", columns=["galaxy_id"])
    assert sorted(rows.column("galaxy_id").to_pylist()) == ["demo:000003", "demo:000013"]
    for where in ["1=1) UNION SELECT galaxy_id FROM galaxies --", "1=1; DROP VIEW galaxy_images", "label > 1, label < 3"]:
        with pytest.raises(SQLError, match="one SQL expression"):
            engine.select_where("SELECT * FROM galaxies", where)
    assert engine.query("SELECT count(*) AS n FROM galaxy_images")["n"][0] == 20


def test_constants_are_macros_defined_in_python(filled):
    from features.flags import MORPH_UNTRUSTED

    assert filled.sql("SELECT morph_untrusted_mask() AS m")["m"][0] == int(MORPH_UNTRUSTED)
    assert filled.sql("SELECT count(*) AS n FROM galaxy_features WHERE morph_ok")["n"][0] == 0  # nothing measured


def test_a_constant_that_is_not_a_name_is_refused(filled, monkeypatch):
    import sql

    monkeypatch.setattr(sql, "constants", lambda: {"mask; DROP": 1})
    with pytest.raises(SQLError, match="not a valid macro name"):
        SQLEngine(filled)


@pytest.mark.parametrize("name", sorted(TYPE_QUERIES))
def test_every_duckdb_type_is_answered_in_every_cli_format(filled, name, tmp_path, capsys):
    """Arrow, Parquet, polars and the CLI's formats take every type a query can produce (issue 23 item 1)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from service.cli import main

    result = SQLEngine(filled).run(TYPE_QUERIES[name])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, result.table.schema) as writer:
        writer.write_table(result.table)
    pq.write_table(result.table, io.BytesIO())
    assert result.frame.height == result.table.num_rows
    home = ["--home", str(filled.root)]
    for fmt in ("table", "json", "csv"):
        code = main([*home, "sql", TYPE_QUERIES[name], "--format", fmt])
        out, err = capsys.readouterr()
        nested = any(t.is_nested() or t == pl.Binary for t in result.frame.schema.values())
        if fmt == "csv" and nested:
            assert code != 0 and "cannot be written as CSV" in err and "Traceback" not in err
        else:
            assert code == 0 and out.strip(), err
    assert main([*home, "sql", TYPE_QUERIES[name], "--format", "parquet", "-o", str(tmp_path / "x.parquet")]) == 0
    assert pq.read_table(tmp_path / "x.parquet").num_rows == result.table.num_rows


def test_values_arrow_cannot_hold_faithfully_come_back_as_text(filled):
    row = SQLEngine(filled).run("SELECT 340282366920938463463374607431768211455::UHUGEINT u, "
                                "TIMETZ '12:34:56+02:00' tz, INTERVAL 1 DAY i, 12::HUGEINT small").table.to_pylist()[0]
    assert row["u"] == "340282366920938463463374607431768211455"  # DuckDB's Arrow export wraps it to -1
    assert row["tz"].endswith("+02") and row["i"] == "1 day" and str(row["small"]) == "12"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_values_no_face_can_carry_are_refused_naming_the_column(filled, name):
    with pytest.raises(SQLError, match='column "x"') as err:
        SQLEngine(filled).run(REFUSED[name])
    assert "\n" not in str(err.value) and "VARCHAR" in str(err.value)


def test_result_bytes_memory_and_threads_are_capped(filled):
    limits = SQLLimits(memory_limit="100MB", threads=1, max_bytes=1_000_000)
    engine = SQLEngine(filled, limits=limits)
    got = engine.run("SELECT current_setting('memory_limit') AS m, current_setting('threads') AS t").table.to_pylist()
    assert got == [{"m": "95.3 MiB", "t": 1}]
    with pytest.raises(SQLError, match="1000000 byte cap"):
        engine.run("SELECT repeat('x', 2000000) AS x")
    with pytest.raises(SQLError, match="byte cap"):  # many small rows add up too
        engine.run("SELECT repeat('x', 1000) AS x FROM range(5000)", limit=None)
    with pytest.raises(SQLError, match="100MB memory limit"):
        engine.run("SELECT string_agg(repeat('x', 1000), '') AS x FROM range(200000)")
    assert engine.run("SELECT 1 AS ok").table.to_pylist() == [{"ok": 1}]  # the engine still answers


def test_settings_name_no_directory_of_the_machine(filled, monkeypatch, tmp_path):
    import os

    monkeypatch.chdir(tmp_path)
    rows = SQLEngine(filled).run("SELECT name, value FROM duckdb_settings()", limit=None).table.to_pylist()
    leaks = [r for r in rows if r["value"] and (str(tmp_path) in r["value"] or os.path.expanduser("~") in r["value"]
                                                  or r["value"].startswith("/") or r["value"].startswith("."))]
    assert rows and not leaks
