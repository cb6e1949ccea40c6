"""``astrovision anomalies / label / rank / more-like`` end to end on a toy warehouse (real Dagster runs)."""

from __future__ import annotations

import numpy as np
from toy_warehouse import fill_toy_warehouse

from service.cli import main


def test_anomalies_label_rank_more_like(warehouse, capsys, tmp_path) -> None:
    gal, y = fill_toy_warehouse(warehouse, n=60, size=16, seed=2, separation=0.6)
    ids, y = gal["galaxy_id"], np.asarray(y)
    home = ["--home", str(warehouse.root)]
    assert main([*home, "anomalies"]) == 2
    assert "no anomaly scores stored" in capsys.readouterr().err
    assert main([*home, "anomalies", "--compute", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "random_vits14: 60 galaxies, iforest, knn" in out and len(out.strip().splitlines()) == 1 + 1 + 3
    assert main([*home, "rank", "--label", "interesting"]) == 2
    assert "no labels named 'interesting'" in capsys.readouterr().err
    assert main([*home, "label", "nope:1", "interesting"]) == 2
    assert "no galaxy 'nope:1'" in capsys.readouterr().err
    cls = int(np.bincount(y).argmax())
    pos = [g for g, c in zip(ids, y, strict=True) if c == cls][:3]
    neg = [g for g, c in zip(ids, y, strict=True) if c != cls][:3]
    for g in pos:
        assert main([*home, "label", g, "interesting", "--who", "ann"]) == 0
    csv = tmp_path / "neg.csv"
    csv.write_text("galaxy_id,value\n" + "".join(f"{g},no\n" for g in neg))
    assert main([*home, "label", "--csv", str(csv), "--name", "interesting", "--who", "ann"]) == 0
    assert warehouse.count("labels") == 6
    capsys.readouterr()
    assert main([*home, "rank", "--label", "interesting", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "from 6 labels (3 positive)" in out
    assert [line.split()[0] for line in out.strip().splitlines()[-5:]] == ["1", "2", "3", "4", "5"]
    assert warehouse.count("rankings") == 60
    assert main([*home, "more-like", *pos, "--not", neg[0], "-k", "4"]) == 0
    listed = [line.split()[1] for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert len(listed) == 4 and not set(listed) & {*pos, neg[0]}


def test_rank_defaults_match_the_science_code() -> None:
    # the CLI spells its defaults as literals (a cheap start); they must stay those of the measured product
    from features.anomaly import DEFAULT_METHOD, METHODS
    from models.ranking import MODELS, RankingParams
    from service.cli import build_parser

    args = build_parser().parse_args(["rank", "--label", "interesting"])
    want = RankingParams()
    assert (args.method, args.model, args.anomaly_weight, args.explore_every) == (
        DEFAULT_METHOD, want.model, want.anomaly_weight, want.explore_every)
    assert build_parser().parse_args(["anomalies"]).method == DEFAULT_METHOD
    for model in MODELS:
        assert build_parser().parse_args(["rank", "--label", "x", "--model", model]).model == model
    for method in METHODS:
        assert build_parser().parse_args(["rank", "--label", "x", "--method", method]).method == method
