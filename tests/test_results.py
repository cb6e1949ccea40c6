"""Typed stage results: the class that writes an asset's metadata reads it back, through Dagster."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.metadata import as_metadata
from stages.results import INTERNAL, Markdown, Skipped, StageResult


@dataclass(frozen=True)
class _Result(StageResult):
    rows: int
    rate: float
    table: Markdown
    where: Path
    tables: dict[str, int] = field(default_factory=dict)
    note: str | None = None
    threshold_only: int = field(default=0, metadata=INTERNAL)


def _through_dagster(result: StageResult) -> tuple[dict, dict]:
    """Materialize an asset returning ``result``'s metadata; the metadata as the runner reads it back."""

    @dg.asset
    def thing() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=as_metadata(result))

    run = dg.materialize([thing], instance=dg.DagsterInstance.ephemeral())
    meta = run.asset_materializations_for_node("thing")[0].metadata
    return {k: getattr(v, "value", v) for k, v in meta.items()}, meta


def test_round_trip_through_a_materialization(tmp_path):
    out = _Result(rows=3, rate=float("nan"), table=Markdown("| a |\n|---|"), where=tmp_path / "x.png",
                  tables={"galaxies": 2}, threshold_only=7)
    values, raw = _through_dagster(out)
    assert set(values) == {"rows", "rate", "table", "where", "tables", "note"}  # INTERNAL fields stay out
    assert isinstance(raw["table"], dg.MarkdownMetadataValue) and isinstance(raw["where"], dg.PathMetadataValue)
    assert isinstance(raw["tables"], dg.JsonMetadataValue) and isinstance(raw["rows"], dg.IntMetadataValue)
    back = _Result.from_metadata(values)
    assert back.rows == 3 and back.rate is None  # NaN is shown, and read back, as null
    assert back.tables == {"galaxies": 2} and back.table == out.table and back.where == str(out.where)
    assert back.threshold_only == 0 and back.note is None
    assert math.isnan(out.rate)


def test_missing_key_names_the_class_and_key():
    with pytest.raises(KeyError, match=r"_Result: metadata has no 'rate'"):
        _Result.from_metadata({"rows": 1, "table": "", "where": "x", "unknown": 1})


def test_skipped_is_read_from_any_assets_metadata():
    assert Skipped.of({"skipped": True, "reason": "one class"}) == Skipped(reason="one class")
    assert Skipped.of({"rows": 3}) is None and Skipped.of(None) is None
    assert Skipped(reason="r").to_metadata() == {"reason": "r", "skipped": True}


def test_ingested_shards_resolves_once_for_every_command(warehouse):
    from features.errors import InputError
    from stages.sources import ingested_shards
    from warehouse import schemas

    with pytest.raises(InputError, match=r"no galaxies in .*astrovision ingest"):
        ingested_shards(warehouse)
    ids = [f"demo:{i:06d}" for i in range(4)]
    warehouse.upsert("galaxies", schemas.rows_with_defaults(
        "galaxies", 4, galaxy_id=ids, source=["demo"] * 4, native_id=[i[5:] for i in ids],
        shard=["demo-00001", "demo-00000", "demo-00001", "demo-00000"]))
    assert ingested_shards(warehouse) == ["demo-00000", "demo-00001"]
    assert ingested_shards(warehouse, ["demo-00001"]) == ["demo-00001"]
    with pytest.raises(InputError, match=r"unknown shard\(s\) \['demo-00009'\]; known: \['demo-00000', 'demo-00001'\]"):
        ingested_shards(warehouse, ["demo-00001", "demo-00009"])


def test_faces_import_no_asset_module():
    """The CLI and the HTTP service read typed results from stages/, never an asset module (issue 22)."""
    import ast

    root = Path(__file__).resolve().parents[1] / "service"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(root.parent)}: {n}" for n in names if n.startswith("dagster_project.defs")]
    assert offenders == []


def test_training_run_config_fields_come_from_jobs():
    from dagster_project.jobs import run_config_fields

    assert {"epochs", "img_size", "preset"} <= run_config_fields("cnn")
    assert "encoder" in run_config_fields("dinov2_probe") and "epochs" not in run_config_fields("dinov2_probe")
