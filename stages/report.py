"""The static report: one self-contained HTML page of what the warehouse knows about its embeddings.

Maps (the ``embedding_maps`` figures), the correlation and R^2 tables (``representation_analysis``),
the classifiers (``models``: test balanced accuracy, gate verdict, weights), any calibration table,
and a contact sheet. Images are embedded as ``data:`` URIs and there is no script, so the file opens
in any browser with no server and can be mailed as is. Sections whose tables are absent say what
makes them.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from stages.analysis import figures_dir
from warehouse import Warehouse
from warehouse.provenance import code_version

__all__ = ["CONTACT_SHEET_N", "build_report", "write_report"]

CONTACT_SHEET_N = 48
"""Galaxies on the contact sheet made from stored images (when the demo's own sheet is absent)."""

_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:right}th{background:#f0f0f0}td.t{text-align:left}img{max-width:100%;border:1px solid #ddd;margin:4px}
.note{color:#666}h2{border-bottom:1px solid #ccc;margin-top:2em}"""


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _fmt(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if not np.isfinite(v) else f"{v:.3g}" if abs(v) < 1e-3 and v != 0 else f"{v:.3f}"
    return html.escape(str(v))


def _table(rows: list[dict], columns: list[str], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f'<td class="{"t" if isinstance(r.get(c), str) else ""}">{_fmt(r.get(c))}</td>'
                                    for c in columns) + "</tr>" for r in rows)
    return f'<table id="{table_id}"><tr>{head}</tr>{body}</table>'


def _contact_sheet(wh: Warehouse) -> bytes | None:
    sheet = Path(wh.local_root) / "demo_contact_sheet.png"
    if sheet.is_file():
        return sheet.read_bytes()
    if not wh.exists("images") or wh.count("images") == 0:
        return None
    from PIL import Image

    from features.pixels import model_input_uint8

    ids = wh.read("galaxies", columns=["galaxy_id"]).column("galaxy_id").to_pylist()[:CONTACT_SHEET_N]
    stamps = [Image.fromarray(model_input_uint8(im)).resize((96, 96)) for im in wh.read_images(ids)]
    cols = 8
    canvas = Image.new("RGB", (cols * 96, -(-len(stamps) // cols) * 96))
    for i, s in enumerate(stamps):
        canvas.paste(s, ((i % cols) * 96, (i // cols) * 96))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def _section_embeddings(wh: Warehouse) -> str:
    tables = [t for t in wh.tables() if t.startswith("embeddings_")]
    if not tables:
        return "<p class=note>No embeddings: run <code>astrovision embed</code>.</p>"
    rows = []
    for t in tables:
        rows += wh.sql(f"SELECT '{t}' AS \"table\", encoder, weights_origin, weights_sha256, count(*) AS galaxies "
                       f"FROM {t} GROUP BY ALL ORDER BY ALL", limit=None).to_dicts()
    return _table(rows, ["table", "encoder", "weights_origin", "weights_sha256", "galaxies"], "embeddings")


def _section_maps(wh: Warehouse) -> str:
    figs = sorted(figures_dir(wh).glob("*.png"))
    maps = [f for f in figs if f.stem.endswith(("_class", "_gini", "_g_r"))]
    if not maps:
        return "<p class=note>No maps: materialize <code>embedding_maps</code> " \
               "(<code>astrovision materialize --group analysis</code>).</p>"
    info = ""
    if wh.exists("embedding_pca") and wh.count("embedding_pca"):
        pca = wh.sql("SELECT encoder, component, explained_variance_ratio, weights_origin FROM embedding_pca "
                     "WHERE component <= 5 ORDER BY encoder, component", limit=None).to_dicts()
        info = "<h3>Explained variance of the first principal components</h3>" + _table(
            pca, ["encoder", "component", "explained_variance_ratio", "weights_origin"], "pca")
    return "".join(_img(f.read_bytes(), f.stem) for f in maps) + info


def _section_analysis(wh: Warehouse) -> str:
    if not wh.exists("representation_analysis") or wh.count("representation_analysis") == 0:
        return "<p class=note>No analysis: materialize <code>representation_analysis</code>.</p>"
    cols = ["quantity", "encoder", "statistic", "value", "ci_low", "ci_high", "p", "q", "n", "subset", "weights_origin"]
    figs = sorted(figures_dir(wh).glob("*_correlations.png")) + sorted(figures_dir(wh).glob("r2_cv.png"))
    r2 = wh.sql("SELECT * FROM representation_analysis WHERE statistic LIKE 'r2_cv%' ORDER BY quantity, statistic, "
                "value DESC", limit=None).to_dicts()
    rho = wh.sql("SELECT * FROM representation_analysis WHERE statistic LIKE 'spearman%' "
                 "ORDER BY quantity, encoder, statistic", limit=None).to_dicts()
    return ("".join(_img(f.read_bytes(), f.stem) for f in figs)
            + "<h3>Cross-validated R<sup>2</sup> (ridge, folds grouped by duplicate group; "
              "<code>pixels</code> = 16 px downsampled image baseline)</h3>" + _table(r2, cols, "r2")
            + "<h3>Spearman rho of the principal components (bootstrap 95% CI, permutation p, "
              "Benjamini-Hochberg q over the grid)</h3>" + _table(rho, cols, "correlations"))


def _section_models(wh: Warehouse) -> str:
    if not wh.exists("models") or wh.count("models") == 0:
        return "<p class=note>No classifiers: run <code>astrovision train</code>.</p>"
    rows = wh.read_polars("models").sort(["name", "version"]).to_dicts()
    for r in rows:
        r["gate"] = "passed" if r["gate_passed"] else "FAILED: " + str(json.loads(r["gate_json"]).get("reason", ""))
    return _table(rows, ["name", "version", "kind", "label_column", "test_balanced_accuracy", "gate",
                         "weights_origin"], "models")


def _section_calibration(wh: Warehouse) -> str:
    tables = [t for t in wh.tables() if t.startswith("calibration") and wh.count(t)]
    if not tables:
        return "<p class=note>No calibration tables in this warehouse.</p>"
    out = ""
    for t in tables:
        df = wh.read_polars(t)
        keep = [c for c, d in df.schema.items() if d.is_numeric() or d == pl.String]
        out += f"<h3>{html.escape(t)}</h3>" + _table(df.select(keep).head(200).to_dicts(), keep, t)
    return out


def build_report(wh: Warehouse) -> str:
    """The report page of ``wh`` as one HTML string (self-contained: images are ``data:`` URIs)."""
    sheet = _contact_sheet(wh)
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>AstroVision report</title>",
        f"<style>{_CSS}</style></head><body><h1>AstroVision report</h1>",
        f"<p class=note>Warehouse <code>{html.escape(str(wh.root))}</code>; code {html.escape(code_version())}; "
        f"written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.</p>",
        "<h2 id=weights>Embeddings and their weights</h2>", _section_embeddings(wh),
        "<h2 id=maps>Maps</h2>", _section_maps(wh),
        "<h2 id=analysis>What the embeddings encode</h2>", _section_analysis(wh),
        "<h2 id=classifiers>Classifiers</h2>", _section_models(wh),
        "<h2 id=calibration>Calibration</h2>", _section_calibration(wh),
        "<h2 id=contact>Contact sheet</h2>",
        _img(sheet, "contact sheet") if sheet else "<p class=note>No images stored.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(wh: Warehouse, out: str | os.PathLike) -> Path:
    """Write :func:`build_report` to ``out`` atomically (a temporary file renamed into place).

    Raises
    ------
    FileNotFoundError
        The folder of ``out`` does not exist (nothing is written).
    """
    path = Path(out)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"report: folder {path.parent} does not exist")
    page = build_report(wh)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".report-", suffix=".html")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)
    return path
