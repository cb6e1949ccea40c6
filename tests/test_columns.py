"""The column-metadata registry covers every column users see, with units and UCDs the VO accepts."""

from __future__ import annotations

import warnings

import astropy.units as u
import pyarrow as pa
import pytest
from astropy.io.votable.ucd import check_ucd

from warehouse import schemas
from warehouse.schemas.columns import (
    VIEW_COLUMNS,
    ColumnDoc,
    column_docs,
    documented_relations,
    find_doc,
    undocumented,
)
from warehouse.sql_engine import SQLEngine


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from warehouse import Warehouse

    return SQLEngine(Warehouse(tmp_path_factory.mktemp("wh")))


def test_every_column_of_every_table_and_view_is_documented(engine):
    for rel in engine.relations + engine.views:
        described = engine.con.sql(f'DESCRIBE "{rel}"').fetchall()
        names = [row[0] for row in described]
        docs = column_docs(rel)
        assert list(docs) == names, f"{rel}: registry columns differ from the relation's"
        missing = [c for c, doc in docs.items() if not doc.description]
        assert not missing, f"{rel}: undocumented columns {missing}"
    assert set(engine.views) == set(VIEW_COLUMNS), "a view in sql/ has no entry in the column registry"
    assert undocumented() == {}


def test_an_undocumented_column_is_caught():
    spec = schemas.TableSpec(name="zz_test_undocumented", keys=("galaxy_id",),
                             columns=pa.schema([pa.field("galaxy_id", pa.string()),
                                                pa.field("zz_new_quantity", pa.float64())]))
    schemas.register(spec)
    try:
        assert undocumented() == {"zz_test_undocumented": ["zz_new_quantity"]}
        assert column_docs("zz_test_undocumented")["galaxy_id"].ucd == "meta.id;meta.main"
    finally:
        schemas._REGISTRY.pop("zz_test_undocumented")


def test_units_are_vounit_and_ucds_are_valid():
    for rel in documented_relations():
        for col, doc in column_docs(rel).items():
            if doc.unit is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    u.Unit(doc.unit, format="vounit")
            if doc.ucd is not None:
                assert check_ucd(doc.ucd, check_controlled_vocabulary=True), f"{rel}.{col}: bad UCD {doc.ucd!r}"


def test_positions_and_known_columns():
    gf = column_docs("galaxy_features")
    assert gf["ra"] == ColumnDoc("deg", "pos.eq.ra;meta.main", "right ascension, ICRS")
    assert gf["gini"].ucd == "src.morph.param"
    assert gf["r50_arcsec"].unit == "arcsec"
    assert column_docs("morphometrics")["r50"].unit == "pix"
    assert column_docs("embeddings_dinov2_vits14")["vector"].description
    assert find_doc("mag_r", ["galaxy_features"]).unit == "mag"
    assert find_doc("galaxy_id").ucd == "meta.id;meta.main"
    assert find_doc("count_star()") is None
    with pytest.raises(KeyError, match="no table or view 'nope'"):
        column_docs("nope")
