"""The warehouse on object storage: every command against an S3-compatible server on loopback (moto).

The server runs in a subprocess (tests/s3_server.py); the CLI runs as a user would, in subprocesses
whose environment points Lance and pyarrow at it. Each warehouse's local state (Dagster instance,
locks, caches) goes under ``tmp_path`` through ``$ASTROVISION_LOCAL_HOME``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from s3_server import S3Server, s3_server

from warehouse.errors import WarehouseError
from warehouse.location import Location, normalise_root

BUCKET = "astro"


@pytest.fixture(scope="module")
def server() -> S3Server:
    with s3_server() as srv:
        srv.create_bucket(BUCKET)
        srv.create_commit_table("lance-commits")
        yield srv


def cli(server: S3Server, home: str, local: Path, *args: str, timeout: float = 300,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", **server.env,
            "ASTROVISION_LOCAL_HOME": str(local), **(env or {})}
    return subprocess.run([sys.executable, "-m", "service.cli", "--home", home, *args],
                          capture_output=True, text=True, timeout=timeout, env=full)


def _objects(server: S3Server, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in server.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def _main(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI's own entry point in this process (its env: the S3 server's)."""
    from service.cli import main

    capsys.readouterr()
    status = main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_demo_pipeline_on_s3_then_sql_similar_show_tables_vacuum(server, tmp_path, monkeypatch, capsys):
    home, local = f"s3://{BUCKET}/pipeline", tmp_path / "local"
    for name, value in {**server.env, "ASTROVISION_LOCAL_HOME": str(local), "TQDM_DISABLE": "1"}.items():
        monkeypatch.setenv(name, value)
    status, out, err = _main(capsys, "--home", home, "demo", "--n", "12", "--shard-size", "6", "--group", "ingest",
                             "--group", "features", "--group", "embeddings")
    assert status == 0, out[-3000:] + err[-3000:]

    keys = _objects(server, "pipeline/lance/")
    assert any(k.startswith("pipeline/lance/galaxies.lance/_versions/") for k in keys)
    assert any(k.startswith("pipeline/lance/images.lance/data/") for k in keys)
    assert not (local / "lance").exists()  # tables only on the object store
    assert (local / "dagster" / "dagster.yaml").is_file()  # the Dagster instance on local disk
    # the warehouse's own encoder: its weights in the local state directory, never in a folder named "s3:"
    assert (local / "encoders" / "ssl_resnet18" / "weights.safetensors").is_file()
    assert not Path("s3:").exists()

    status, out, err = _main(capsys, "--home", home, "sql", "SELECT count(*) AS n, count(DISTINCT g.shard) AS shards, "
                             "count(m.galaxy_id) AS morph FROM galaxies g LEFT JOIN morphometrics m USING (galaxy_id)",
                             "--format", "json")
    assert status == 0, err
    assert json.loads(out) == [{"n": 12, "shards": 2, "morph": 12}]

    status, out, err = _main(capsys, "--home", home, "similar", "demo:000003", "-k", "4", "--format", "json")
    assert status == 0, err
    answer = json.loads(out)
    rows = answer["neighbours"]
    assert answer["plan"]["route"].startswith("exact")  # 12 vectors: no index, searched exactly
    assert len(rows) == 4 and rows[0]["galaxy_id"] == "demo:000003" and rows[0]["distance"] < 1e-5

    status, out, err = _main(capsys, "--home", home, "show", "demo:000007")
    assert status == 0 and "demo:000007" in out, err
    status, out, _ = _main(capsys, "--home", home, "tables", "--format", "json")
    tables = {r["table"]: r["rows"] for r in json.loads(out)}
    assert tables["galaxies"] == 12 and tables["images"] == 12 and tables["photometry"] == 12

    from fastapi.testclient import TestClient

    from service.http import Settings, create_app

    client = TestClient(create_app(Settings(home=home)))  # what `astrovision serve` runs
    similar = client.get("/galaxies/demo:000003/similar", params={"k": 3})
    assert similar.status_code == 200, similar.text
    neighbours = similar.json()["neighbours"]
    assert len(neighbours) == 3 and neighbours[0]["galaxy_id"] == "demo:000003"
    assert client.get("/galaxies/demo:000005/image.png").content[:4] == b"\x89PNG"

    status, out, err = _main(capsys, "--home", home, "materialize", "--group", "ingest", "--shard", "demo-00001")
    assert status == 0, out + err

    orphan = "pipeline/lance/galaxies.lance/data/killed-write.lance"  # what a killed writer leaves
    server.client("s3").put_object(Bucket=BUCKET, Key=orphan, Body=b"partial")
    status, out, err = _main(capsys, "--home", home, "vacuum", "--older-than", "0s", "--grace", "0s")
    assert status == 0, out + err
    assert orphan not in _objects(server, "pipeline/lance/galaxies.lance/data/")
    status, out, _ = _main(capsys, "--home", home, "sql", "SELECT count(*) AS n FROM galaxy_features", "--format",
                           "json")
    assert json.loads(out) == [{"n": 12}]


_WRITER = r"""
import sys, time
import pyarrow as pa
from warehouse import Warehouse, TableSpec
home, who, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
spec = TableSpec("race", ("k",), pa.schema([pa.field("k", pa.string(), nullable=False), pa.field("who", pa.int64())]))
wh = Warehouse.open(home)
time.sleep(max(0.0, start - time.time()))
for batch in range(4):
    wh.upsert("race", [{"k": f"{who}-{batch}-{i}", "who": who} for i in range(25)], spec=spec)
print("done")
"""


@pytest.mark.parametrize("home", [f"s3://{BUCKET}/race", f"s3+ddb://{BUCKET}/race-ddb?ddbTableName=lance-commits"],
                         ids=["conditional-put", "dynamodb"])
def test_two_processes_writing_one_s3_table_at_once_lose_no_row(server, tmp_path, monkeypatch, home):
    """Two writers as on two machines: separate local state, so no shared file lock, not even at creation.

    Commits go through S3's conditional PUT (``s3://``) or Lance's DynamoDB commit store (``s3+ddb://``).
    """
    start = time.time() + 4.0
    env = {**os.environ, **server.env, "PYTHONPATH": os.getcwd()}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, home, str(who), str(start)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**env, "ASTROVISION_LOCAL_HOME": str(tmp_path / f"host{who}")})
             for who in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    from warehouse import Warehouse

    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    wh = Warehouse(home, local_root=tmp_path / "reader")
    rows = wh.read("race", columns=["k", "who"]).to_pylist()
    assert len(rows) == 2 * 4 * 25 == len({r["k"] for r in rows})
    assert sorted({r["who"] for r in rows}) == [0, 1]
    if home.startswith("s3+ddb"):  # every version was committed through DynamoDB
        versions = {v["version"] for v in wh.history("race")}
        assert {v for uri, v in server.commits("lance-commits") if uri.endswith("race-ddb/lance/race.lance")} == versions


def test_server_refuses_a_second_conditional_put(server):
    """What Lance's commits rely on: PUT with If-None-Match: * fails when the object exists."""
    from botocore.exceptions import ClientError

    client = server.client("s3")
    client.put_object(Bucket=BUCKET, Key="cond/x", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        client.put_object(Bucket=BUCKET, Key="cond/x", Body=b"2", IfNoneMatch="*")
    assert client.get_object(Bucket=BUCKET, Key="cond/x")["Body"].read() == b"1"


def test_missing_bucket_is_one_line(server, tmp_path):
    proc = cli(server, "s3://no-such-bucket/x", tmp_path / "local", "tables")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "astrovision: error: warehouse root s3://no-such-bucket/x: bucket 'no-such-bucket' does not exist "
        "(create it first)"]


def test_unreachable_endpoint_is_one_line(server, tmp_path):
    from s3_server import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    proc = cli(server, f"s3://{BUCKET}/x", tmp_path / "local", "tables", env={"AWS_ENDPOINT_URL": closed})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"astrovision: error: cannot reach the warehouse root s3://{BUCKET}/x: ")


def test_plain_http_endpoint_needs_allow_http(server, tmp_path):
    proc = cli(server, f"s3://{BUCKET}/x", tmp_path / "local", "tables", env={"AWS_ALLOW_HTTP": ""})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"astrovision: error: the S3 endpoint {server.endpoint} is plain HTTP: set AWS_ALLOW_HTTP=true to use "
        "it (loopback test servers only), or use an https:// endpoint"]


def test_unknown_scheme_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "service.cli", "--home", "ftp://host/x", "tables"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[0].startswith("astrovision: error: warehouse root 'ftp://host/x': "
                                                          "scheme 'ftp' is not one of s3://")


def test_locations(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROVISION_LOCAL_HOME", str(tmp_path / "state"))
    loc = Location.of("s3://b/some/prefix/")
    assert loc.root == "s3://b/some/prefix" and loc.remote and loc.local == tmp_path / "state"
    assert loc.lance_uri("galaxies.lance") == "s3://b/some/prefix/lance/galaxies.lance"
    ddb = Location.of("s3+ddb://b/p?ddbTableName=commits")
    assert ddb.lance_uri("galaxies.lance") == "s3+ddb://b/p/lance/galaxies.lance?ddbTableName=commits"
    local = Location.of(tmp_path / "wh")
    assert not local.remote and local.local == tmp_path / "wh"
    assert local.lance_uri("t.lance") == str(tmp_path / "wh" / "lance" / "t.lance")
    assert normalise_root("file://" + str(tmp_path)) == str(tmp_path)
    monkeypatch.delenv("ASTROVISION_LOCAL_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert Location.of("gs://bucket/a/b").local == tmp_path / "cache" / "astrovision" / "gs" / "bucket" / "a" / "b"
    with pytest.raises(WarehouseError, match="names no bucket"):
        normalise_root("s3:///prefix")
