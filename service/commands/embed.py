"""``astrovision embed`` (compute embeddings) and ``astrovision similar`` (lookalike search).

``embed`` resolves the encoder once (and says which, and why), then runs ``embed_job``: the
``embeddings`` asset per shard, then ``embedding_index``, as Dagster runs the UI lists with their checks.

Examples::

    astrovision embed                                  # Zoobot, else DINOv2 ViT-S/14, if weights resolve
    astrovision embed --encoder hf_hub:mwalmsley/zoobot-encoder-convnext_nano
    astrovision embed --encoder dinov2_vits14 --weights ~/weights/dinov2_vits14.safetensors
    astrovision similar demo:000042 -k 8 --montage lookalikes.png
    astrovision similar demo:000042 --where "label_name = 'Barred Spiral' AND g_r > 0.6"
    astrovision similar --image my_galaxy.png -k 5
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.errors import InputError

from .home import warehouse_of

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from warehouse import Warehouse

__all__ = ["embed_query_image", "register", "save_montage"]


def embed_query_image(*args: Any, **kwargs: Any) -> Any:
    """:func:`stages.embeddings.embed_query_image` (torch and the encoder imported only when called)."""
    from stages.embeddings import embed_query_image as embed

    return embed(*args, **kwargs)

_SHOW = ("rank", "galaxy_id", "distance", "label_name", "ra", "dec", "redshift", "g_r", "gini", "m20")


# ------------------------------------------------------------------------------------ embed
def _cmd_embed(args: argparse.Namespace) -> int:
    from dagster_project.runner import run_pipeline
    from features.embeddings import ENCODERS
    from service.cli import USER_ERRORS
    from stages.embedding_results import IndexResult, ShardEmbeddings
    from stages.embeddings import get_encoder
    from stages.sources import ingested_shards
    from warehouse import search

    wh = warehouse_of(args)
    shards = ingested_shards(wh, args.shard)
    spec = ENCODERS.get(args.encoder)
    trained_here = spec is not None and spec.trained_here and not args.weights
    if trained_here:  # trained on this warehouse first (ssl_encoder reuses weights that are up to date)
        name = args.encoder
        print(f"encoder {name}: self-supervised on this warehouse's images by the ssl_encoder asset first")
    else:
        enc, note = get_encoder(args.encoder, args.weights or "", not args.no_download)  # fails fast, offline
        name = enc.name
        print(note)
    min_rows = search.INDEX_MIN_ROWS if args.index_min_rows is None else args.index_min_rows
    run_config = {"ops": {  # the resolved encoder, so every shard's run uses the same one
        "embeddings": {"config": {"encoder": args.encoder if ":" in args.encoder else name,  # hf_hub:/timm: as given
                                  "weights_path": args.weights or "",
                                  "batch_size": args.batch_size, "allow_download": not args.no_download}},
        "embedding_index": {"config": {"min_rows": min_rows, "encoder": name}},
        "anomaly_scores": {"config": {"encoders": [name]}},  # recomputed whenever the vectors change (issue 26)
        **({"ssl_encoder": {"config": {"encoder": name, "train": "always"}}} if trained_here else {}),
    }}
    failures: list[str] = []
    assets = ["ssl_encoder"] * trained_here + ["embeddings", "embedding_index", "anomaly_scores"]
    report = run_pipeline(wh, shards, groups=["embeddings"], assets=assets, run_config=run_config,
                          progress=not args.quiet, log=failures.append)
    message = report.user_error(USER_ERRORS)
    if message:
        raise InputError(message)
    if trained_here:
        enc, _ = get_encoder(name, "", not args.no_download, wh)
    total = 0
    for shard in shards:
        if f"embeddings[{shard}]" not in report.metadata:
            continue
        out = ShardEmbeddings.from_metadata(report.metadata[f"embeddings[{shard}]"])
        total += out.rows
        flagged = f", {out.flagged_images} flagged images" if out.flagged_images else ""
        print(f"{shard}: {out.rows} vectors -> {out.table} ({out.galaxies_per_second:.1f} galaxies/s{flagged})")
    for line in failures:
        print(line, file=sys.stderr)
    index = report.metadata.get("embedding_index")
    search_note = (IndexResult.from_metadata(index).search_note(f"embeddings_{enc.name}") if index is not None
                   else "no index run")
    print(f"{total} galaxies embedded with {enc.name} (weights {enc.weights_origin}, sha256 "
          f"{enc.weights_sha256[:12]}); search: {search_note}")
    for check in report.checks_failed:
        print(f"  check failed: {check}")
    return 0 if report.ok else 1


# ------------------------------------------------------------------------------------ similar
def save_montage(wh: Warehouse, result: pl.DataFrame, out: str | Path, *, query_image: np.ndarray | None = None,
                 query_label: str = "query", cols: int = 6) -> Path:
    """A PNG grid: the query, then each neighbour with its id and distance, drawn as the encoder sees them."""
    import matplotlib

    from features.pixels import model_input_uint8

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = result["galaxy_id"].to_list()
    dists = result["distance"].to_list()
    images = wh.read_images(ids) if ids else []
    panels = ([(query_image, query_label)] if query_image is not None else [])
    panels += [(im, f"{gid}\nd={d:.4f}") for im, gid, d in zip(images, ids, dists)]
    if not panels:
        raise InputError("nothing to draw: the search returned no galaxies")
    cols = min(cols, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (im, title) in zip(axes.ravel(), panels):
        ax.imshow(model_input_uint8(im))  # what the encoder saw
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _cmd_similar(args: argparse.Namespace) -> int:
    import polars as pl

    from warehouse import search

    if (args.galaxy_id is None) == (args.image is None):
        raise InputError("give either a GALAXY_ID or --image PATH (not both)")
    wh = warehouse_of(args)
    query_image = None
    if args.image:
        vec, encoder = embed_query_image(wh, args.image, args.encoder, args.weights)
        query, label = vec, Path(args.image).name
        from features.embeddings import load_image_file  # only a query by image reads one

        query_image = load_image_file(args.image)
    else:
        query, label, encoder = args.galaxy_id, args.galaxy_id, args.encoder
    found = search.similar_plan(wh, query, k=args.k, where=args.where, encoder=encoder,
                                exclude_query=args.exclude_self, exact=True if args.exact else None)
    result = found.neighbours
    if result.height == 0:
        print("no galaxy matches" + (f" where {args.where}" if args.where else ""), file=sys.stderr)
        print(found.plan.describe(), file=sys.stderr)
        return 1
    cols = [c for c in _SHOW if c in result.columns]
    if args.format == "table":
        with pl.Config(tbl_rows=max(args.k, 10), tbl_hide_dataframe_shape=True, tbl_width_chars=140):
            print(result.select(cols))
        print(found.plan.describe())
    elif args.format == "json":  # the same shape as the HTTP answer: the plan beside the neighbours
        rows = result.select(cols).to_dicts()
        sys.stdout.write(json.dumps({"plan": found.plan.as_dict(), "neighbours": rows}, default=str) + "\n")
    else:
        from service.commands.query import format_frame

        sys.stdout.write(format_frame(result.select(cols), args.format))
        print(found.plan.describe(), file=sys.stderr)
    if args.montage:
        if query_image is None and result["galaxy_id"][0] != args.galaxy_id:
            query_image = wh.read_image(args.galaxy_id)  # excluded, or filtered out by --where
        path = save_montage(wh, result, args.montage, query_image=query_image, query_label=f"query: {label}")
        print(f"montage: {path}", file=sys.stdout if args.format == "table" else sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``embed`` and ``similar`` to the CLI."""
    p = sub.add_parser("embed", help="compute DINOv2 embeddings of every galaxy (or of some shards)")
    p.add_argument("--encoder", default="auto",
                   help="a registered encoder (dinov2_vits14, dinov2_vitb14, zoobot_convnext_nano and the other "
                        "zoobot_* encoders, random_vits14, ssl_resnet18: trained here first), hf_hub:<owner>/<repo>, "
                        "timm:<model>, or auto (Zoobot, else DINOv2, when its weights resolve, else the warehouse's "
                        "own encoder; the output says which)")
    p.add_argument("--weights", help="local .safetensors/.pth weights in timm's layout")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--shard", action="append", help="only this shard (repeatable); default all")
    p.add_argument("--no-download", action="store_true", help="never download weights")
    p.add_argument("--index-min-rows", type=int, default=None,
                   help="build the ANN index from this many rows (default: the benchmarked threshold)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_embed)

    s = sub.add_parser("similar", help="lookalike galaxies by embedding similarity (cosine distance)")
    s.add_argument("galaxy_id", nargs="?", help="the query galaxy, e.g. demo:000042")
    s.add_argument("--image", help="query with an image file (PNG/JPEG/FITS) instead of a stored galaxy")
    s.add_argument("-k", type=int, default=10, help="number of neighbours (default 10)")
    s.add_argument("--where", help="SQL predicate over galaxy features, applied before the k nearest are chosen")
    s.add_argument("--encoder", help="which embeddings table (default: the only one, else DINOv2)")
    s.add_argument("--weights", help="weights file for embedding --image (must match the table's)")
    s.add_argument("--exclude-self", action="store_true", help="leave the query galaxy out")
    s.add_argument("--exact", action="store_true", help="exact search even when an ANN index exists")
    s.add_argument("--montage", help="write a PNG grid of the query and its neighbours")
    s.add_argument("--format", choices=["table", "csv", "json"], default="table",
                   help="table (aligned text, then the route taken), csv (route on stderr), or json: "
                        "{\"plan\": route, selectivity, candidates, ..., \"neighbours\": records}")
    s.set_defaults(func=_cmd_similar)
