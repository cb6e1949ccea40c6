"""The ``astrovision`` command, run as a user would: in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import write_galaxy10_h5


def cli(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "--home", str(home), *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def test_output_into_a_closed_pipe_stops_quietly(tmp_path):
    """``astrovision plan | head -1``: the reader has gone, so the write fails; no traceback, exit 141."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line is written
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-m", "service.cli", "--home", str(tmp_path / "home"), "plan",
                           "--galaxies", "17736", "--shard-size", "1000"], stdout=write, stderr=subprocess.PIPE,
                          text=True, timeout=120, env=env)
    os.close(write)
    assert proc.returncode == 141 and "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, \
        proc.stderr


def test_quick_exit_keeps_threads_atexit_and_buffered_output_and_the_status():
    """The console script skips only the interpreter's teardown: a running thread finishes, atexit handlers
    run (after the thread, as in Python's own exit), buffered output is written, the status is kept."""
    code = textwrap.dedent("""
        import atexit, sys, threading, time
        from service.cli import quick_exit
        atexit.register(lambda: print("atexit ran", flush=False))
        threading.Thread(target=lambda: (time.sleep(0.3), print("thread done", flush=False))).start()
        sys.stdout.write("x" * 200_000)
        sys.stderr.write("to stderr")
        quick_exit(3)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith("x" * 200_000) and proc.stdout.endswith("thread done\natexit ran\n")
    assert proc.stderr == "to stderr"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    h5 = write_galaxy10_h5(tmp / "Galaxy10_DECals.h5", n=6)
    home = tmp / "home"
    proc = cli(home, "ingest", "--source", "galaxy10", "--path", str(h5), "--shard-size", "3")
    assert proc.returncode == 0, proc.stderr
    assert "6 galaxies" in proc.stdout
    return home, h5


def test_sql_formats(ingested):
    home, _ = ingested
    csv = cli(home, "sql", "SELECT galaxy_id, label FROM galaxies ORDER BY galaxy_id", "--format", "csv")
    assert csv.returncode == 0, csv.stderr
    lines = csv.stdout.strip().splitlines()
    assert lines[0] == "galaxy_id,label"
    assert lines[1] == "galaxy10:00000,0"
    assert len(lines) == 7
    js = cli(home, "sql", "SELECT count(*) AS n FROM galaxies", "--format", "json")
    assert json.loads(js.stdout) == [{"n": 6}]
    table = cli(home, "sql", "SELECT * FROM images LIMIT 1")
    assert table.returncode == 0 and "data_bytes" in table.stdout


def test_sql_parquet_output(ingested, tmp_path):
    import polars as pl

    home, _ = ingested
    out = tmp_path / "g.parquet"
    proc = cli(home, "sql", "SELECT galaxy_id, ra FROM galaxies", "--format", "parquet", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert pl.read_parquet(out).height == 6


def test_tables_and_show(ingested, tmp_path):
    home, _ = ingested
    tables = cli(home, "tables", "--format", "json")
    rows = {r["table"]: r for r in json.loads(tables.stdout)}
    assert rows["galaxies"]["rows"] == 6 and rows["images"]["rows"] == 6
    png = tmp_path / "g.png"
    show = cli(home, "show", "galaxy10:00002", "--png", str(png))
    assert show.returncode == 0, show.stderr
    assert "[galaxies]" in show.stdout and "Round Smooth" in show.stdout
    assert png.stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("sql", "SELECT * FROM nowhere"), "nowhere"),
        (("sql", "DELETE FROM galaxies"), "read-only"),
        (("show", "galaxy10:99999"), "no galaxy"),
        (("ingest", "--source", "galaxy10", "--path", "/nonexistent/Galaxy10_DECals.h5"), "Galaxy10_DECals.h5"),
        (("ingest", "--source", "galaxy10"), "--path"),
    ],
)
def test_user_errors_exit_2_with_one_line(ingested, args, needle):
    home, _ = ingested
    proc = cli(home, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert needle in err


def test_corrupt_file_exit_2_and_nothing_written(ingested, tmp_path):
    home, _ = ingested
    before = json.loads(cli(home, "tables", "--format", "json").stdout)
    bad = tmp_path / "Galaxy10_DECals.h5"
    bad.write_bytes(b"not an hdf5 file at all" * 100)
    proc = cli(home, "ingest", "--source", "galaxy10", "--path", str(bad))
    assert proc.returncode == 2
    assert str(bad) in proc.stderr
    assert json.loads(cli(home, "tables", "--format", "json").stdout) == before


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_the_asset_graph_and_named_runs_from_a_folder_that_shadows_a_dependency(ingested, tmp_path):
    """`astrovision ui` starts the real Dagster webserver on 127.0.0.1 and it knows our assets and jobs,
    even when typed in a folder holding a ``gql.py`` (a module name Dagster's webserver imports)."""
    home, _ = ingested
    port = _free_port()
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    (cwd / "gql.py").write_text('raise ImportError("this gql.py shadows the real gql package")\n')
    project = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (project, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "--home", str(home), "ui", "--port", str(port)],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=lambda: (signal.signal(signal.SIGINT, signal.SIG_DFL),
                            signal.signal(signal.SIGTERM, signal.SIG_DFL)),
    )
    try:
        query = json.dumps({"query": "{ assetNodes { assetKey { path } } "
                                     "runsOrError { ... on Runs { results { jobName status } } } }"}).encode()
        deadline = time.monotonic() + 180
        body = None
        while time.monotonic() < deadline:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    body = json.loads(resp.read())
                if body.get("data", {}).get("assetNodes"):
                    break
            except OSError:
                pass
            assert proc.poll() is None, "the UI process exited early"
            time.sleep(1)
        assert body is not None, "the Dagster webserver never answered"
        keys = {"/".join(n["assetKey"]["path"]) for n in body["data"]["assetNodes"]}
        assert {"galaxies", "duplicate_groups"} <= keys
        runs = body["data"]["runsOrError"]["results"]  # the CLI's ingest: 2 shard runs + duplicate_groups
        assert len(runs) >= 3 and {(r["jobName"], r["status"]) for r in runs} == {("ingest_job", "SUCCESS")}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_cli_names_match_the_model_and_preset_registries():
    from models.config import PRESETS
    from models.registry import MODELS
    from service.commands.train import ORDER, PRESET_NAMES

    assert set(ORDER) == set(MODELS)
    assert all(set(p) == set(PRESET_NAMES) for p in PRESETS.values())


def test_help_does_not_import_torch():
    code = "import sys, service.cli; service.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_show_of_a_record_without_predictions_imports_no_duckdb_pil_or_filelock(tmp_path):
    """A cold ``show`` reads the record by key: it loads no SQL engine (no predictions to rank), no image
    library and no file lock (a read takes none): each ~0.01-0.1 s of a cold start."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_search import make_warehouse

    from warehouse import Warehouse

    make_warehouse(Warehouse.open(tmp_path / "wh"))
    code = ("import sys\nfrom service.cli import main\nassert main(['--home', sys.argv[1], 'show', 'demo:000003']) == 0\n"
            "print(sorted(m for m in ('duckdb', 'PIL', 'filelock', 'polars') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "wh")], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0 and "demo:000003" in out.stdout, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_ingested_demo_survey_cross_matches_its_own_catalogue_offline(tmp_path):
    home = tmp_path / "home"
    proc = cli(home, "ingest", "--source", "demo", "--n", "6", "--shard-size", "6")
    assert proc.returncode == 0, proc.stderr
    params = json.loads(cli(home, "sql", "SELECT params_json FROM sources", "--format", "json").stdout)[0]
    params = json.loads(params["params_json"])
    assert params["n"] == 6 and params["seed"] == 0 and Path(params["photometry_catalog"]).is_file()
    proc = cli(home, "materialize", "--group", "features")  # photometry reads the catalogue, not SkyServer
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(cli(home, "sql", "SELECT count(*) AS n, count(modelMag_r) AS with_mag FROM photometry",
                          "--format", "json").stdout)[0]
    assert rows["n"] == 6 and rows["with_mag"] >= 5  # ~2% of demo galaxies are unmatched by design


def test_ui_env_keeps_the_import_path_but_not_the_working_folder(tmp_path, monkeypatch):
    from service.commands.ui import ui_command, ui_env
    from warehouse import Warehouse

    monkeypatch.chdir(tmp_path)
    wh = Warehouse.open(tmp_path / "home")
    env = ui_env(wh, {"PYTHONPATH": f"src{os.pathsep}{os.pathsep}/abs/lib", "OTHER": "x"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "src"), "/abs/lib"]  # "" (= cwd) dropped
    assert env["PYTHONSAFEPATH"] == "1" and env["DAGSTER_HOME"] == str(wh.dagster_home)
    assert env["OTHER"] == "x" and "PYTHONPATH" not in ui_env(wh, {"PYTHONPATH": ""})
    assert ui_command(3000)[1:3] == ["-P", "-m"]


@pytest.mark.parametrize(("args", "needle"), [
    (("--n", "0"), "--n must be a positive integer (at least 1); got 0"),
    (("--n", "-3"), "--n must be a positive integer (at least 1); got -3"),
    (("--shard-size", "0"), "--shard-size must be a positive integer (at least 1); got 0"),
])
def test_demo_rejects_sizes_below_one_in_one_line(tmp_path, args, needle):
    home = tmp_path / "home"
    proc = cli(home, "demo", *args, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [f"astrovision: error: demo: {needle}"]
    assert not home.exists()  # nothing written, not even the warehouse root


def test_tiny_demo_finishes_and_says_why_no_model_trained(tmp_path):
    """Five galaxies cannot give two classes a galaxy in train, val and test: every model is skipped."""
    home = tmp_path / "home"
    proc = cli(home, "demo", "--n", "5", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Skipped (nothing trained):" in proc.stdout
    skipped = next(line for line in proc.stdout.splitlines() if line.startswith("  cnn, "))
    assert {"dinov2_probe", "efficientnet_b0", "dinov2_finetune"} <= set(skipped.split(":")[0].split(", ")[1:])
    assert "fewer than two classes have a galaxy in each of train, val and test" in skipped
    rows = json.loads(cli(home, "sql", "SELECT count(*) AS n FROM splits", "--format", "json").stdout)
    assert rows == [{"n": 5}]
    tables = {r["table"]: r["rows"] for r in json.loads(cli(home, "tables", "--format", "json").stdout)}
    assert tables["galaxies"] == 5 and tables.get("models", 0) == 0
