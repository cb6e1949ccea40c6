"""The runner's pure planner (:mod:`dagster_project.plan`) on hand-made asset graphs: no Dagster run.

The graph mirrors the project's shape: per-shard ingest and features, unpartitioned duplicates and
training, and a per-shard ``embeddings`` that reads the unpartitioned ``ssl_encoder``. Last, the
report that the launcher hands every outcome to (:mod:`dagster_project.report`), on one real run.
"""

from __future__ import annotations

import pytest

from dagster_project.plan import AssetNode, RunSpec, plan_runs, select_assets
from features.errors import InputError

GRAPH = {
    "galaxies": AssetNode(partitioned=True, group="ingest"),
    "morphometrics": AssetNode(partitioned=True, deps=("galaxies",), group="features"),
    "duplicate_groups": AssetNode(partitioned=False, deps=("galaxies",), group="ingest"),
    "ssl_encoder": AssetNode(partitioned=False, deps=("galaxies",), group="embeddings"),
    "embeddings": AssetNode(partitioned=True, deps=("galaxies", "ssl_encoder"), group="embeddings"),
    "embedding_index": AssetNode(partitioned=False, deps=("embeddings",), group="embeddings"),
    "cnn": AssetNode(partitioned=False, deps=("galaxies", "duplicate_groups"), group="training"),
}


def _shape(runs: list[RunSpec]) -> list[tuple[int, str, tuple[str, ...]]]:
    return [(r.phase, r.label, r.assets) for r in runs]


def test_shards_then_unpartitioned_then_the_shards_that_read_them_then_what_reads_those():
    runs = plan_runs(GRAPH, ["a", "b"])
    assert _shape(runs) == [
        (0, "shard a", ("galaxies", "morphometrics")),
        (0, "shard b", ("galaxies", "morphometrics")),
        (1, "unpartitioned assets", ("duplicate_groups", "ssl_encoder", "cnn")),
        (2, "shard a (phase 3)", ("embeddings",)),
        (2, "shard b (phase 3)", ("embeddings",)),
        (3, "unpartitioned assets (phase 4)", ("embedding_index",)),
    ]
    assert [r.partition for r in runs] == ["a", "b", None, "a", "b", None]


def test_a_dependency_outside_the_selection_orders_nothing():
    chosen = select_assets(GRAPH, names=["galaxies", "embeddings"])
    assert _shape(plan_runs(chosen, ["a"])) == [(0, "shard a", ("galaxies", "embeddings"))]


def test_without_unpartitioned_runs_the_later_shard_phase_keeps_its_place():
    runs = plan_runs(GRAPH, ["a"], include_unpartitioned=False)
    assert _shape(runs) == [(0, "shard a", ("galaxies", "morphometrics")),
                            (1, "shard a (phase 3)", ("embeddings",))]


def test_no_shards_leaves_only_the_unpartitioned_runs():
    runs = plan_runs(select_assets(GRAPH, groups=["ingest", "training"]), [])
    assert _shape(runs) == [(0, "unpartitioned assets", ("duplicate_groups", "cnn"))]


def test_selection_by_group_and_name_keeps_definition_order():
    assert list(select_assets(GRAPH, groups=["embeddings"])) == ["ssl_encoder", "embeddings", "embedding_index"]
    assert list(select_assets(GRAPH, groups=["embeddings"], names=["embeddings"])) == ["embeddings"]
    assert list(select_assets(GRAPH)) == list(GRAPH)


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"groups": ["ingset"]}, "unknown Dagster group(s) ['ingset']; known: ['embeddings', 'features', 'ingest', "
                             "'training']"),
    ({"names": ["huge"]}, "unknown asset(s) ['huge']; known: ['cnn', "),
])
def test_unknown_groups_and_assets_are_one_line_errors(kwargs, needle):
    with pytest.raises(InputError) as err:
        select_assets(GRAPH, **kwargs)
    assert str(err.value).startswith(needle) and "\n" not in str(err.value)


def test_a_failed_step_is_reported_by_the_users_error_and_a_failed_galaxies_stops_the_runs():
    """A real in-process run whose asset raises the project's InputError (chained on a ValueError)."""
    import dagster as dg

    from dagster_project.report import PipelineReport

    @dg.asset
    def galaxies() -> None:
        try:
            raise ValueError("low-level detail")
        except ValueError as exc:
            raise InputError("no column 'redshift' in the catalogue") from exc

    result = dg.materialize([galaxies], raise_on_error=False)
    part = PipelineReport.of_result(result, "shard a")
    assert part.failed == {"galaxies (shard a)": "no column 'redshift' in the catalogue"}
    assert part.failure_types["galaxies (shard a)"] == ("InputError", "ValueError")
    assert part.run_ids == [result.run_id] and part.succeeded == []

    report, lines = PipelineReport(), []
    assert report.absorb("shard a", part, lines.append)  # galaxies failed: stop launching
    assert not report.absorb("shard b", OSError("killed"), lines.append)
    assert lines == ["FAILED galaxies (shard a): no column 'redshift' in the catalogue",
                     "FAILED run (shard b): its run process failed: OSError: killed"]
    assert report.user_error((InputError,)) == "no column 'redshift' in the catalogue" and not report.ok
