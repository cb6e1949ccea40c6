"""The read session: snapshots and their caches, lookups by key equal to the SQL views, bounded caches."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from test_search import ENC, fill_rows, make_warehouse

from warehouse import ReadSession, SQLError, WarehouseError, search
from warehouse.search.features import features_by_id
from warehouse.session import ByteLRU
from warehouse.sql_engine import SQLLimits


def _with_morphometrics(wh, ids):
    """Two bands for every galaxy (the view picks r), one band for the rest: several rows per key."""
    n = len(ids)
    wh.upsert("morphometrics", fill_rows("morphometrics", 2 * n, galaxy_id=ids + ids, band=["r"] * n + ["g"] * n,
                                         shard=["demo-00000"] * 2 * n, source=["demo"] * 2 * n,
                                         gini=[i / n for i in range(n)] + [float("nan")] * n))


@pytest.mark.parametrize("rowmap_bytes", [None, 1, 0], ids=["held in memory", "over the bound", "not held"])
def test_features_by_id_equal_the_galaxy_features_view(warehouse, rowmap_bytes):
    """Both fast paths (the view held per version; the view over the ids' taken rows when that is over the
    session's bound) answer exactly what the view answers."""
    ids, _ = make_warehouse(warehouse)
    _with_morphometrics(warehouse, ids)
    session = (ReadSession(warehouse, hold_features=True) if rowmap_bytes is None else
               ReadSession(warehouse, rowmap_bytes=rowmap_bytes, hold_features=rowmap_bytes == 1))
    snap = session.snapshot()
    wanted = [ids[7], ids[0], "demo:nope", ids[42]]
    fast = features_by_id(snap, wanted)
    listed = ", ".join(f"'{g}'" for g in wanted)
    view = warehouse.sql_result(f"SELECT * FROM galaxy_features WHERE galaxy_id IN ({listed})", limit=None).table
    view = view.take(pa.array([view.column("galaxy_id").to_pylist().index(g) for g in wanted if g in ids]))
    assert fast.schema == view.schema and fast.column_names[0] == "galaxy_id"
    assert fast.to_pylist() == view.to_pylist()
    assert fast.column("galaxy_id").to_pylist() == [ids[7], ids[0], ids[42]]  # order kept, unknown id left out
    # the neighbours of a search carry the view's feature values
    found = search.similar_plan(snap, ids[7], k=4, encoder=ENC).neighbours
    listed = ", ".join(f"'{g}'" for g in found["galaxy_id"])
    want = warehouse.sql(f"SELECT galaxy_id, gini, g_r, label_name FROM galaxy_features WHERE galaxy_id IN ({listed})")
    got = found.select(["galaxy_id", "gini", "g_r", "label_name"])
    assert got.sort("galaxy_id").to_dicts() == want.sort("galaxy_id").to_dicts() and got.height == 4


def test_record_rows_are_taken_by_key(warehouse):
    """A record's rows, taken by key through a snapshot's row maps, are the rows a filtered scan finds."""
    import json

    from stages.records import galaxy_record, galaxy_rows
    from warehouse import schemas

    ids, _ = make_warehouse(warehouse)
    _with_morphometrics(warehouse, ids)
    session = ReadSession(warehouse)
    snap = session.snapshot()
    rows = galaxy_rows(snap, ids[5])
    assert set(rows) == {"galaxies", "photometry", "morphometrics", f"embeddings_{ENC}"}
    for table, got in rows.items():
        scanned = [{k: v for k, v in r.items() if k != "galaxy_id" and k not in schemas.PROVENANCE_COLUMNS
                    and not isinstance(v, bytes)}
                   for r in warehouse.read(table, where=f"galaxy_id = '{ids[5]}'").to_pylist()]
        assert json.dumps(got, default=str) == json.dumps(scanned, default=str)
    assert len(galaxy_record(snap, ids[5])["morphometrics"]) == 2
    assert ("galaxies", snap.pins["galaxies"]) in {k for k in session.rowmaps._items}  # the map was used
    with pytest.raises(WarehouseError, match="no galaxy"):
        galaxy_record(snap, "demo:nope")


@pytest.mark.parametrize("rowmap_bytes", [None, 1], ids=["held in memory", "over the bound"])
def test_record_from_held_rows_equals_the_lance_takes(warehouse, rowmap_bytes, caplog):
    """A server's record from its rows held in memory is the record taken from Lance: NaN, null, flags and
    several rows per key included; over the bound it is taken from Lance and the log says so."""
    import json
    import logging

    from stages.records import galaxy_record, galaxy_rows

    ids, _ = make_warehouse(warehouse)
    _with_morphometrics(warehouse, ids)
    n = len(ids)
    warehouse.upsert("galaxies", fill_rows("galaxies", 2, galaxy_id=ids[:2], source=["demo"] * 2, native_id=ids[:2],
                                           shard=["demo-00000"] * 2, ra=[None, float("nan")], redshift=[None, 0.1],
                                           label_name=[None, "Ring"], flags=[3, 0]))
    taken = ReadSession(warehouse).snapshot()
    kwargs = {} if rowmap_bytes is None else {"rowmap_bytes": rowmap_bytes}
    held_session = ReadSession(warehouse, hold_features=True, **kwargs)
    held = held_session.snapshot()
    with caplog.at_level(logging.WARNING, logger="warehouse.session"):
        for gid in (ids[0], ids[1], ids[n - 1]):
            for full in (None, ("galaxies", "photometry")):
                assert json.dumps(galaxy_rows(held, gid, full=full), default=str) == json.dumps(
                    galaxy_rows(taken, gid, full=full), default=str)
            assert json.dumps(galaxy_record(held, gid), default=str) == json.dumps(galaxy_record(taken, gid),
                                                                                  default=str)
    rec = galaxy_record(held, ids[0])
    assert rec["catalogue"]["ra"] is None and rec["catalogue"]["label_name"] is None and rec["catalogue"]["flags"] == 3
    assert math.isnan(galaxy_record(held, ids[1])["catalogue"]["ra"]) and len(rec["morphometrics"]) == 2
    kept = {k[1] for k in held_session.rowmaps._items if k[0] == "held"}
    if rowmap_bytes is None:
        assert kept == {"galaxies", "photometry", "morphometrics", f"embeddings_{ENC}"} and not caplog.records
    else:  # over the bound: not held, said once per table and columns
        assert not kept and 1 <= caplog.text.count("galaxies v") <= 2 and "taken from Lance" in caplog.text


@pytest.mark.parametrize("hold", [True, False], ids=["held features", "taken features"])
def test_neighbours_without_a_galaxies_row_keep_their_rank_with_null_features(warehouse, hold):
    """A vector whose galaxy has no catalogue row is still a neighbour, in its place, with null features."""
    from test_search import _fsl

    from warehouse.schemas.embeddings import embedding_spec

    ids, vecs = make_warehouse(warehouse)
    spec = embedding_spec(ENC, vecs.shape[1])
    warehouse.upsert(spec.name, pa.table({  # an exact copy of ids[3]'s vector, for a galaxy not in the catalogue
        "galaxy_id": ["demo:orphan"], "shard": ["demo-00000"], "encoder": [ENC], "weights_sha256": ["0" * 64],
        "weights_origin": ["random"], "flags": pa.array([0], pa.int64()), "vector": _fsl(vecs[3:4]),
        "patch_mean": _fsl(vecs[3:4])}), spec=spec)
    snap = ReadSession(warehouse, hold_features=hold).snapshot()
    found = search.similar_plan(snap, ids[3], k=5, encoder=ENC).table.to_pylist()
    assert {found[0]["galaxy_id"], found[1]["galaxy_id"]} == {ids[3], "demo:orphan"}
    by_id = {r["galaxy_id"]: r for r in found}
    assert by_id["demo:orphan"]["ra"] is None and by_id["demo:orphan"]["label_name"] is None
    assert by_id[ids[3]]["ra"] == 3.0 and all(r["ra"] is not None for r in found if r["galaxy_id"] != "demo:orphan")


def test_snapshots_follow_commits_and_pin_versions(warehouse):
    """A new version is seen by the next snapshot without a restart; a pinned one stays as it was."""
    make_warehouse(warehouse)
    session = ReadSession(warehouse)
    before = session.snapshot()
    assert session.snapshot() is before  # nothing changed: the same snapshot, caches and all
    v = before.pins["galaxies"]
    warehouse.upsert("galaxies", fill_rows("galaxies", 1, galaxy_id=["demo:new"], source=["demo"], native_id=["new"],
                                           shard=["demo-00000"], label_name=["Edge-on"]))
    after = session.snapshot()
    assert after.pins["galaxies"] == v + 1 and after.has_ids("galaxies", ["demo:new"])
    assert not before.has_ids("galaxies", ["demo:new"])
    old = session.snapshot({"galaxies": v})
    assert old.sql("SELECT count(*) AS n FROM galaxies")["n"][0] == 60
    assert after.sql("SELECT count(*) AS n FROM galaxies")["n"][0] == 61
    assert "morphometrics" not in after.tables()
    _with_morphometrics(warehouse, ["demo:000001"])  # a table created after the session opened
    assert session.snapshot().has_ids("morphometrics", ["demo:000001"])
    with pytest.raises(WarehouseError, match="has no version 99"):
        session.snapshot({"galaxies": 99})
    with pytest.raises(WarehouseError, match="does not exist"):
        session.snapshot({"nosuch": 1})


def test_two_sessions_share_nothing(warehouse, tmp_path):
    """Caches belong to their session: two side by side, over two warehouses, answer each its own."""
    from warehouse import Warehouse

    other = Warehouse.open(tmp_path / "other")
    _, vecs = make_warehouse(warehouse)
    make_warehouse(other, vectors=-vecs)
    a, b = ReadSession(warehouse), ReadSession(other)
    da = search.similar_plan(a.snapshot(), vecs[3], k=1, encoder=ENC).neighbours["distance"][0]
    db = search.similar_plan(b.snapshot(), vecs[3], k=1, encoder=ENC).neighbours["distance"][0]
    assert da == pytest.approx(0, abs=1e-5) and db > 0.1  # the other warehouse holds no such vector
    assert a.matrices.get(f"embeddings_{ENC}") is not b.matrices.get(f"embeddings_{ENC}")


def test_byte_lru_keeps_within_its_bound():
    lru: ByteLRU[np.ndarray] = ByteLRU(max_bytes=1000)
    for i in range(10):
        lru.put(i, np.zeros(50), 400)  # 400 bytes each: two fit
    assert len(lru) == 2 and lru.nbytes == 800 and lru.get(9) is not None and lru.get(0) is None
    lru.put("big", np.zeros(1), 5000)  # alone over the bound: kept alone
    assert len(lru) == 1 and lru.get("big") is not None


def test_session_where_obeys_its_timeout(warehouse):
    """The session's limits (the server's settings) interrupt a slow where filter."""
    ids, _ = make_warehouse(warehouse)
    snap = ReadSession(warehouse, limits=SQLLimits(timeout_s=0.5, threads=1)).snapshot()
    slow = "(SELECT count(*) FROM range(1000000) a, range(1000000) b) > 0"
    with pytest.raises(SQLError, match=r"0\.5 s timeout"):
        search.similar_plan(snap, ids[0], where=slow, encoder=ENC)


def test_session_queries_are_timed_by_one_watchdog_not_a_thread_each(warehouse, monkeypatch):
    """A session's queries start no timer thread (each start waits for the thread to run: ~1 ms on a busy
    machine); its one watchdog still interrupts a slow /sql query and a slow where filter."""
    import threading

    from warehouse.search.features import serving_engine

    ids, _ = make_warehouse(warehouse)
    session = ReadSession(warehouse, limits=SQLLimits(timeout_s=0.5, threads=1), hold_features=True)
    snap = session.snapshot()
    monkeypatch.setattr(threading, "Timer", None)  # a per-query timer would fail here
    for engine in (snap.engine(), serving_engine(snap)):
        for g in ids[:5]:
            assert engine.run(f"SELECT galaxy_id FROM galaxy_features WHERE galaxy_id = '{g}'").table.num_rows == 1
        with pytest.raises(SQLError, match=r"0\.5 s timeout"):
            engine.run("SELECT count(*) FROM range(1000000) a, range(1000000) b")
    with pytest.raises(SQLError, match=r"0\.5 s timeout"):
        search.similar_plan(snap, ids[0], where="(SELECT count(*) FROM range(1000000) a, range(1000000) b) > 0",
                            encoder=ENC)
    assert session.watchdog._thread in threading.enumerate()  # one thread, the session's
    assert engine.run("SELECT 1 AS one").table.to_pylist() == [{"one": 1}]  # an interrupt does not linger


def test_watchdog_calls_only_what_is_still_armed():
    import threading

    from warehouse.sql_engine import Watchdog

    dog, fired = Watchdog(idle_s=0.1), []
    done = threading.Event()
    dog.disarm(dog.arm(0.05, lambda: fired.append("disarmed")))
    dog.arm(0.2, lambda: (fired.append("late"), done.set()))
    dog.arm(0.1, lambda: fired.append("soon"))
    assert done.wait(5) and fired == ["soon", "late"]
    thread = dog._thread
    thread.join(5)
    assert not thread.is_alive() and dog._thread is None  # idle: it ended
    dog.arm(0.05, lambda: fired.append("again"))  # and starts again when armed
    dog._thread.join(5)
    assert fired == ["soon", "late", "again"]


def test_held_features_answer_sql_as_the_view(warehouse):
    """A server's engine serves galaxy_features from the held rows: every query answers as the view does."""
    from warehouse.search.features import serving_engine

    ids, _ = make_warehouse(warehouse)
    _with_morphometrics(warehouse, ids)
    snap = ReadSession(warehouse, hold_features=True).snapshot()
    engine = serving_engine(snap)
    assert engine.serves_held_features
    for query in ("SELECT * FROM galaxy_features ORDER BY galaxy_id",
                  f"SELECT * FROM galaxy_features WHERE galaxy_id = '{ids[4]}'"):
        held = engine.run(query, limit=None).table
        view = warehouse.sql_result(query, limit=None).table
        assert held.schema == view.schema and held.to_pylist() == view.to_pylist()
    query = "SELECT label_name, count(*) AS n, avg(gini) AS g FROM galaxy_features GROUP BY 1 ORDER BY 1"
    held, view = engine.run(query).table.to_pylist(), warehouse.sql_result(query).table.to_pylist()
    assert [(r["label_name"], r["n"]) for r in held] == [(r["label_name"], r["n"]) for r in view]
    assert [r["g"] for r in held] == pytest.approx([r["g"] for r in view], rel=1e-12)  # summation order


def test_held_features_engine_is_a_cursor_per_thread_under_the_same_guards(warehouse):
    """The server's /sql engines: one database (the indexed table) per snapshot, one cursor per thread,
    each refusing file access and writes of configuration, and each obeying the timeout."""
    import threading

    from warehouse.search.features import raised_limit, serving_engine

    ids, _ = make_warehouse(warehouse)
    limits = SQLLimits(timeout_s=0.5, threads=1, memory_limit="64MiB")
    snap = ReadSession(warehouse, limits=limits, hold_features=True).snapshot()
    here = serving_engine(snap)
    shown = here.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    assert raised_limit(shown, 0) >= 64 * 2**20  # raised by the held table, never lowered
    assert raised_limit("953.6 MiB", 1000) == int(953.6 * 2**20) + 1000 and raised_limit("1.5 GiB", 0) == 3 * 2**29
    assert raised_limit("unlimited", 10) is None
    assert serving_engine(snap) is here
    other: list = []
    worker = threading.Thread(target=lambda: other.append(serving_engine(snap)))
    worker.start()
    worker.join()
    assert other[0] is not here and other[0].con is not here.con
    query = f"SELECT galaxy_id, ra FROM galaxy_features WHERE galaxy_id = '{ids[3]}'"
    assert here.run(query).table.to_pylist() == other[0].run(query).table.to_pylist() == \
        warehouse.sql_result(query).table.to_pylist()
    kinds = {r["type"] for r in here.run("SELECT table_name, table_type AS type FROM information_schema.tables "
                                         "WHERE table_name = 'galaxy_features'").table.to_pylist()}
    assert kinds == {"BASE TABLE"}
    with pytest.raises(SQLError):
        here.run("SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(Exception, match="configuration"):  # locked for the cursor too (past the parser's guard)
        here.con.execute("SET enable_external_access = true")
    with pytest.raises(SQLError, match=r"0\.5 s timeout"):
        here.run("SELECT count(*) FROM range(1000000) a, range(1000000) b")


def test_held_features_are_not_bound_by_the_answer_byte_cap(warehouse):
    """The server's byte cap bounds answers, not the session's own read of galaxy_features (at 1M galaxies
    the held rows are ~0.5 GiB, over the 64 MiB cap: every similar and /sql failed with the cap's 400)."""
    from warehouse.search.features import serving_engine

    ids, _ = make_warehouse(warehouse)
    snap = ReadSession(warehouse, limits=SQLLimits(max_bytes=2000), hold_features=True).snapshot()
    found = search.similar_plan(snap, ids[0], k=3, encoder=ENC).table
    assert found.num_rows == 3 and "ra" in found.column_names
    engine = serving_engine(snap)
    assert engine.serves_held_features
    assert engine.run(f"SELECT galaxy_id FROM galaxy_features WHERE galaxy_id = '{ids[2]}'").table.num_rows == 1
    with pytest.raises(SQLError, match="byte cap"):  # a user's answer is still capped
        engine.run("SELECT * FROM galaxy_features")
