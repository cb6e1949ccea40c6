"""The one settings object: resolved once per face, passed down, never written into ``os.environ``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dagster_project.resources import WarehouseResource
from service.cli import main
from warehouse import Warehouse
from warehouse.settings import AstroSettings

LIBRARY_SET = {"_RJEM_MALLOC_CONF"}
"""Variables a library sets on import (polars configures its allocator): not ours to leave alone."""


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in LIBRARY_SET}



def test_two_settings_with_different_homes_side_by_side(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROVISION_HOME", str(tmp_path / "env"))
    a, b = AstroSettings.resolve(tmp_path / "a"), AstroSettings.resolve(tmp_path / "b")
    assert (a.home, b.home) == (str(tmp_path / "a"), str(tmp_path / "b"))
    assert AstroSettings.resolve().home == str(tmp_path / "env")
    wa, wb = a.open_warehouse(), b.open_warehouse()
    assert (wa.root, wb.root) == (tmp_path / "a", tmp_path / "b")
    assert os.environ["ASTROVISION_HOME"] == str(tmp_path / "env")


def test_relative_home_is_made_absolute_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = AstroSettings.resolve("wh")
    monkeypatch.chdir("/")
    assert settings.open_warehouse().root == tmp_path / "wh"


def test_settings_read_the_environment_and_are_frozen(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROVISION_WEIGHTS_DIR", "/w")
    monkeypatch.setenv("ASTROVISION_WANDB_PROJECT", "p")
    monkeypatch.setenv("ASTROVISION_LOCAL_HOME", str(tmp_path / "state"))
    settings = AstroSettings.resolve("s3://bucket/prefix/")
    assert (settings.home, settings.weights_dir, settings.wandb_project) == ("s3://bucket/prefix", "/w", "p")
    assert settings.local_root == tmp_path / "state"
    with pytest.raises(Exception, match="frozen"):
        settings.home = "elsewhere"  # type: ignore[misc]
    env = settings.child_env({"PATH": "/bin"})
    assert env == {"PATH": "/bin", "ASTROVISION_HOME": "s3://bucket/prefix",
                   "ASTROVISION_LOCAL_HOME": str(tmp_path / "state")}


def test_resource_config_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROVISION_HOME", str(tmp_path / "env"))
    assert WarehouseResource(root=str(tmp_path / "cfg")).open().root == tmp_path / "cfg"
    assert WarehouseResource().open().root == tmp_path / "env"


def test_cli_home_leaves_os_environ_unchanged_and_its_run_writes_there(tmp_path, monkeypatch, capsys):
    """``--home X`` is resolved once and handed down; the Dagster run it launches writes to X, not to
    ``$ASTROVISION_HOME``, and this process's environment is the same after as before."""
    other = tmp_path / "env-home"
    monkeypatch.setenv("ASTROVISION_HOME", str(other))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    home = tmp_path / "cli-home"
    before = _environ()
    assert main(["--home", str(home), "ingest", "--source", "demo", "--n", "3", "--shard-size", "3"]) == 0
    assert _environ() == before
    assert Warehouse.open(home).read("galaxies", columns=["galaxy_id"]).num_rows == 3
    assert not (other / "lance" / "galaxies.lance").exists()
    assert main(["--home", str(home), "show", "demo:000000"]) == 0
    assert "demo:000000" in capsys.readouterr().out
    assert _environ() == before


def test_cli_home_reaches_run_processes(tmp_path, monkeypatch):
    """With ``--workers 2`` each shard runs in a spawned run process: the home travels in the run's
    resource config, not through the parent's environment."""
    other = tmp_path / "env-home"
    monkeypatch.setenv("ASTROVISION_HOME", str(other))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    home = tmp_path / "cli-home"
    before = _environ()
    assert main(["--home", str(home), "ingest", "--source", "demo", "--n", "4", "--shard-size", "2",
                 "--workers", "2"]) == 0
    assert _environ() == before
    assert Warehouse.open(home).read("galaxies", columns=["galaxy_id"]).num_rows == 4
    assert not (other / "lance").exists()


def test_building_the_parser_loads_neither_lance_nor_polars_nor_settings():
    """Every command's parser is built for ``--help``: the command modules import their heavy libraries
    (and the settings' pydantic-settings) on use only."""
    code = ("import sys; from service.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('lance', 'polars', 'duckdb', 'torch', 'dagster', 'pydantic_settings') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}).stdout
    assert out.strip() == "[]"
