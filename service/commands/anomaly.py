"""``astrovision anomalies``, ``label``, ``rank`` and ``more-like``: what is strange, what people marked,
what to look at next.

- ``anomalies [--compute]``: the most anomalous galaxies of the ``anomalies`` view; ``--compute`` first
  runs the ``anomaly_scores`` asset (``embed_job``) with its options as run config.
- ``label ID NAME [--not | --value V] [--who W]`` and ``label --csv FILE [--name N]``: append people's
  labels (the ``labels`` table; all or nothing; unknown galaxies refused). A label is a person's input,
  not a derived asset: it is written directly, without a Dagster run.
- ``rank --label NAME``: retrain the active-learning ranking (the ``rankings`` asset, ``anomaly_job``)
  and print the first galaxies of its acquisition order.
- ``more-like ID [ID ...] [--not ID ...]``: several positives (and negatives) as one query.
"""

from __future__ import annotations

import argparse
import sys

from features.errors import InputError

from .home import warehouse_of

__all__ = ["register"]


def _print_table(table, columns: list[str]) -> None:
    rows = table.select([c for c in columns if c in table.column_names]).to_pylist()
    if not rows:
        print("(no rows)")
        return
    names = list(rows[0])
    print("  ".join(names))
    for r in rows:
        print("  ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values()))


def _run(wh, group: str, asset: str, config: dict) -> dict:
    from dagster_project.runner import run_pipeline
    from service.cli import USER_ERRORS

    failures: list[str] = []
    report = run_pipeline(wh, [], groups=[group], assets=[asset], progress=False, log=failures.append,
                          run_config={"ops": {asset: {"config": config}}})
    message = report.user_error(USER_ERRORS)
    if message:
        raise InputError(message)
    if not report.ok:
        for line in failures:
            print(line, file=sys.stderr)
        raise RuntimeError(f"{asset}: the run failed")
    return report.metadata.get(asset, {})


def _cmd_anomalies(args: argparse.Namespace) -> int:
    from stages.anomaly import top_anomalies

    wh = warehouse_of(args)
    if args.compute:
        config = {"methods": args.methods, "k": args.k, "with_morphometrics": args.with_morphometrics,
                  "encoders": [args.encoder] if args.encoder else []}
        meta = _run(wh, "embeddings", "anomaly_scores", config)
        for enc, info in (meta.get("scored") or {}).items():
            print(f"anomaly_scores: {enc}: {info['rows']} galaxies, {', '.join(info['methods'])} "
                  f"(embeddings v{info['embeddings_version']})")
        for enc, n in (meta.get("too_few") or {}).items():
            print(f"anomaly_scores: {enc}: {n} vectors, too few to score")
    top = top_anomalies(wh, encoder=args.encoder, method=args.method, limit=args.limit)
    _print_table(top, ["galaxy_id", "encoder", "method", "anomaly_rank", "anomaly_score", "label_name"])
    return 0


def _cmd_label(args: argparse.Namespace) -> int:
    from stages.labels import LabelIn, add_labels, label_value, read_label_csv

    wh = warehouse_of(args)
    if args.csv:
        if args.galaxy_id:
            raise InputError("give either --csv FILE or ID NAME, not both")
        labels = read_label_csv(args.csv, name=args.name or args.label_name, who=args.who)
        source = "import"
    else:
        name = args.label_name or args.name
        if not args.galaxy_id or not name:
            raise InputError("give ID NAME (e.g. astrovision label demo:000042 interesting) or --csv FILE")
        value = 0.0 if args.negative else label_value(args.value)
        labels = [LabelIn(args.galaxy_id, name, value, args.who)]
        source = "cli"
    add_labels(wh, labels, source)
    print(f"{len(labels)} label(s) stored ({source}); newest per galaxy, name and person in the latest_labels view")
    return 0


def _cmd_rank(args: argparse.Namespace) -> int:
    from stages.labels import latest_labels
    from stages.ranking import ranked

    wh = warehouse_of(args)
    if not latest_labels(wh, args.label, args.who):  # the asset would only skip: say it here, exit 2
        raise InputError(f"no labels named {args.label!r}{f' by {args.who}' if args.who else ''}: label some "
                         f"galaxies first (astrovision label ID {args.label})")
    config = {"label": args.label, "who": args.who or "", "encoder": args.encoder or "", "method": args.method,
              "model": args.model, "anomaly_weight": args.anomaly_weight, "explore_every": args.explore_every}
    meta = _run(wh, "anomaly", "rankings", config)
    print(f"rankings: {args.label!r} from {meta.get('n_labels')} labels ({meta.get('n_positive')} positive) on "
          f"{meta.get('encoder')}, labels v{meta.get('labels_version')}, embeddings v{meta.get('embeddings_version')}")
    if meta.get("labels_left_out"):
        print(f"  {meta['labels_left_out']} labelled galaxies have no {meta.get('encoder')} embedding (left out)")
    if meta.get("note"):
        print(f"  note: {meta['note']}")
    top = ranked(wh, args.label, who=args.who, encoder=meta.get("encoder"), limit=args.limit)
    _print_table(top, ["position", "galaxy_id", "score", "prediction", "uncertainty", "anomaly_rank", "label_name"])
    return 0


def _cmd_more_like(args: argparse.Namespace) -> int:
    from stages.ranking import more_like_these

    found = more_like_these(warehouse_of(args), args.galaxy_ids, args.negatives or [], k=args.k,
                            encoder=args.encoder, where=args.where)
    _print_table(found, ["rank", "galaxy_id", "distance", "label_name"])
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("anomalies", help="the most anomalous galaxies (isolation forest, k-th neighbour distance)")
    p.add_argument("--compute", action="store_true", help="(re)compute the scores first (the anomaly_scores asset)")
    p.add_argument("--encoder", default=None, help="encoder (default: the first scored)")
    p.add_argument("--method", default="knn", choices=["iforest", "knn"], help="which score to list")
    p.add_argument("--methods", nargs="+", default=["iforest", "knn"], help="with --compute: methods to compute")
    p.add_argument("-k", type=int, default=10, help="with --compute: the neighbour of the knn score")
    p.add_argument("--with-morphometrics", action="store_true", help="with --compute: add trusted morphometrics")
    p.add_argument("--limit", type=int, default=20, help="galaxies listed")
    p.set_defaults(func=_cmd_anomalies)

    p = sub.add_parser("label", help="label a galaxy (astrovision label ID interesting) or import a CSV of labels")
    p.add_argument("galaxy_id", nargs="?", help="the galaxy")
    p.add_argument("label_name", nargs="?", help="the label, e.g. interesting, artefact, merger")
    p.add_argument("--not", dest="negative", action="store_true", help="store value 0 (not NAME)")
    p.add_argument("--value", default="1", help="the value: 1/yes (default), 0/no, or a grade")
    p.add_argument("--who", default="anonymous", help="who labels")
    p.add_argument("--csv", default=None, help="import a CSV: galaxy_id[,name][,value][,who]")
    p.add_argument("--name", default=None, help="with --csv: the label name where the file has no name column")
    p.set_defaults(func=_cmd_label)

    p = sub.add_parser("rank", help="retrain the active-learning ranking of a label and list what to look at next")
    p.add_argument("--label", required=True, help="the label to learn, e.g. interesting")
    p.add_argument("--who", default=None, help="only this person's labels (default: everyone's, newest wins)")
    p.add_argument("--encoder", default=None, help="embeddings to learn on")
    # literals, not imports, to keep the CLI's start cheap; test_anomaly_cli checks them against the science code
    p.add_argument("--method", default="knn", choices=["iforest", "knn"], help="anomaly score combined with it")
    p.add_argument("--model", default="gp", choices=["gp", "rfc", "rf"],
                   help="gp: Gaussian process, rfc: random-forest classifier (balanced classes), rf: forest regressor")
    p.add_argument("--anomaly-weight", type=float, default=0.2, help="weight of the anomaly rank in the score")
    p.add_argument("--explore-every", type=int, default=5, help="every n-th galaxy shown is the most uncertain")
    p.add_argument("--limit", type=int, default=20, help="galaxies listed")
    p.set_defaults(func=_cmd_rank)

    p = sub.add_parser("more-like", help="galaxies like several positives (and unlike --not ones)")
    p.add_argument("galaxy_ids", nargs="+", help="positive galaxies")
    p.add_argument("--not", dest="negatives", nargs="+", default=None, help="negative galaxies")
    p.add_argument("-k", type=int, default=10, help="galaxies listed")
    p.add_argument("--where", default=None, help="SQL predicate over galaxy features")
    p.add_argument("--encoder", default=None, help="embeddings to search")
    p.set_defaults(func=_cmd_more_like)
