"""Train every classifier with the same seeds on the same toy warehouse and dump what users see.

Run it once with the baseline code and once with the changed code on ``PYTHONPATH`` and compare the two
JSON files (metrics, val metrics, gate, and every column of the predictions: probabilities, temperature,
conformal and marginal sets, MC dropout)::

    git archive integ | tar -x -C /tmp/base
    (cd /tmp/base && PYTHONPATH=/tmp/base python $OLDPWD/benchmarks/compare_training_toy.py /tmp/base.json)
    PYTHONPATH=$PWD python benchmarks/compare_training_toy.py /tmp/new.json

Minutes on a CPU, against hours for the demo comparison (``compare_warehouses.py``).
"""
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path.cwd() / "tests"))
from toy_warehouse import fill_toy_tabular, fill_toy_warehouse

from models.config import make_config
from stages.training import train_model
from warehouse import Warehouse

try:
    from stages.predict import predict_all
except ImportError:
    from models.predict import predict_all

wh = Warehouse.open(Path(tempfile.mkdtemp()) / "wh")
gal, y = fill_toy_warehouse(wh, n=96, size=32, separation=0.5)
fill_toy_tabular(wh, gal, y, separation=1.5)
out = {}
runs = [("dinov2_probe", {}), ("cnn", {"img_size": 32, "epochs": 2, "batch_size": 16}),
        ("fusion", {"epochs": 25, "patience": 8}),
        ("dinov2_finetune", {"img_size": 28, "max_steps": 2, "batch_size": 8, "encoder": "random_vits14"}),
        ("efficientnet_b0", {"img_size": 32, "max_steps": 2, "batch_size": 16})]
for name, kw in runs:
    o = train_model(wh, name, make_config(name, gate_resamples=300, **kw))
    out[name] = {"metrics": o.metrics, "val": o.val_metrics, "gate": o.gate.passed}
predict_all(wh, gated=False, mc_passes=2)
p = wh.read("predictions").to_pydict()
cols = [c for c in p if c not in ("run_id", "written_at", "code_version", "created_at", "updated_at")]
rows = sorted(zip(*[p[c] for c in cols]), key=lambda r: (r[cols.index("model_name")], r[cols.index("galaxy_id")]))
out["predictions"] = [dict(zip(cols, r)) for r in rows]
Path(sys.argv[1]).write_text(json.dumps(out, sort_keys=True, default=str))
print("written", len(rows), "prediction rows")
